"""raw_keys: the controller's key store, its engine as plain functions, the action as a task runs it."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest.mock import MagicMock

import pytest
import yaml
from ansible.errors import AnsibleActionFail
from ansible_collections.thorfleet.llm.plugins.action import raw_keys
from ansible_collections.thorfleet.llm.plugins.modules import raw_keys as raw_keys_doc

from ..docs import assert_documented

KEY = re.compile(r"sk-[A-Za-z0-9]{40}")
REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "keys" / "raw-keys.yml")


def stored(path):
    return yaml.safe_load(Path(path).read_text())


def mode(path):
    return oct(os.stat(path).st_mode & 0o777)


def test_documentation_matches_the_argument_spec():
    assert_documented(raw_keys_doc.DOCUMENTATION, raw_keys.ARGUMENT_SPEC)
    yaml.safe_load(raw_keys_doc.EXAMPLES)
    yaml.safe_load(raw_keys_doc.RETURN)


def test_a_key_is_sk_and_40_letters_or_digits_and_never_the_same():
    keys = {raw_keys.make_key() for _key in range(200)}
    assert len(keys) == 200
    assert all(KEY.fullmatch(key) for key in keys)


def test_keys_are_made_once_and_kept(store):
    first = raw_keys.keep_keys(store, ["alice", "bob"])
    assert first.changed
    assert set(first.keys) == {"alice", "bob"} and all(KEY.fullmatch(key) for key in first.keys.values())
    assert stored(store) == first.keys

    again = raw_keys.keep_keys(store, ["bob", "alice"])
    assert not again.changed
    assert again.keys == first.keys
    assert stored(store) == first.keys


def test_every_other_name_in_the_store_is_kept(store):
    raw_keys.keep_keys(store, ["open-webui@thor-01"])
    before = stored(store)

    result = raw_keys.keep_keys(store, ["alice", "open-webui@thor-01", "alice"])

    assert result.changed
    assert list(result.keys) == ["alice", "open-webui@thor-01"]
    assert result.keys["open-webui@thor-01"] == before["open-webui@thor-01"]
    assert stored(store) == {**before, "alice": result.keys["alice"]}
    assert (result.before, result.after) == (["open-webui@thor-01"], ["alice", "open-webui@thor-01"])


def test_a_failed_write_leaves_the_old_store_whole_and_no_temporary_file(store, monkeypatch):
    raw_keys.keep_keys(store, ["alice"])
    before = Path(store).read_bytes()

    def half_a_dump(data, stream, **_):
        stream.write("alice: sk-")
        raise OSError("disk full")

    monkeypatch.setattr(raw_keys.yaml, "safe_dump", half_a_dump)
    with pytest.raises(OSError, match="disk full"):
        raw_keys.keep_keys(store, ["bob"])

    assert Path(store).read_bytes() == before
    assert sorted(os.listdir(os.path.dirname(store))) == [".raw-keys.yml.lock", "raw-keys.yml"]


def test_the_folder_is_0700_and_the_store_and_its_lock_0600_whatever_the_umask(store):
    old = os.umask(0)
    try:
        raw_keys.keep_keys(store, ["alice"])
    finally:
        os.umask(old)
    folder = os.path.dirname(store)
    assert (mode(folder), mode(store), mode(os.path.join(folder, ".raw-keys.yml.lock"))) == ("0o700", "0o600", "0o600")


def test_the_folder_is_made_even_with_nothing_to_keep(store):
    assert raw_keys.keep_keys(store, [], check=True).changed
    assert not os.path.exists(os.path.dirname(store))
    assert raw_keys.keep_keys(store, []).changed
    assert mode(os.path.dirname(store)) == "0o700" and not os.path.exists(store)
    assert not raw_keys.keep_keys(store, []).changed


def test_looser_modes_are_set_back_as_a_change(store):
    raw_keys.keep_keys(store, ["alice"])
    folder = os.path.dirname(store)
    os.chmod(folder, 0o755)
    os.chmod(store, 0o644)

    assert raw_keys.keep_keys(store, ["alice"], check=True).changed
    assert (mode(folder), mode(store)) == ("0o755", "0o644")  # check mode sets nothing

    assert raw_keys.keep_keys(store, ["alice"]).changed
    assert (mode(folder), mode(store)) == ("0o700", "0o600")
    assert not raw_keys.keep_keys(store, ["alice"]).changed


def test_check_mode_writes_nothing_and_says_what_it_would_add(store, tmp_path):
    result = raw_keys.keep_keys(store, ["alice"], check=True)
    assert result.changed and KEY.fullmatch(result.keys["alice"])
    assert (result.before, result.after) == ([], ["alice"])
    assert not (tmp_path / "keys").exists()

    kept = raw_keys.keep_keys(store, ["alice"]).keys["alice"]
    before = Path(store).read_bytes()
    result = raw_keys.keep_keys(store, ["alice", "bob"], check=True)
    assert result.changed and result.keys["alice"] == kept
    assert (result.before, result.after) == (["alice"], ["alice", "bob"])
    assert Path(store).read_bytes() == before
    assert not raw_keys.keep_keys(store, ["alice"], check=True).changed


BAD_STORES = {
    "a list": "- alice\n- bob\n",
    "a string": "sk-abc\n",
    "a key that is not a string": "alice: 12345\n",
    "a name that is not a string": "1: sk-abc\n",
    "not YAML": "alice: [sk-abc\n",
}


@pytest.mark.parametrize("case", BAD_STORES)
def test_a_store_that_is_not_a_mapping_of_names_to_keys_is_refused_naming_it(store, case):
    os.makedirs(os.path.dirname(store))
    Path(store).write_text(BAD_STORES[case])
    with pytest.raises(raw_keys.StoreError) as refused:
        raw_keys.keep_keys(store, ["alice"])
    assert store in str(refused.value) and "restore it from a backup" in str(refused.value)
    assert Path(store).read_text() == BAD_STORES[case]


def test_an_empty_store_is_an_empty_mapping(store):
    os.makedirs(os.path.dirname(store))
    Path(store).write_text("")
    assert set(raw_keys.keep_keys(store, ["alice"]).keys) == {"alice"}


def test_without_a_store_every_key_is_new_and_kept_nowhere():
    first, second = raw_keys.fresh_keys(["smoke"]), raw_keys.fresh_keys(["smoke"])
    assert not first.changed and KEY.fullmatch(first.keys["smoke"])
    assert first.keys != second.keys


def test_reading_only_leaves_out_what_the_store_lacks_and_writes_nothing(store, tmp_path):
    assert raw_keys.stored_keys(store, ["open-webui@thor-01"]).keys == {}
    assert not (tmp_path / "keys").exists()
    kept = raw_keys.keep_keys(store, ["open-webui@thor-01"]).keys
    result = raw_keys.stored_keys(store, ["open-webui@thor-01", "open-webui@thor-02"])
    assert (result.keys, result.changed) == (kept, False)


def _caller(store, index, rounds, results):
    for round_ in range(rounds):
        results.put(raw_keys.keep_keys(store, ["shared", f"caller-{index}-{round_}"]).keys)


def test_callers_at_the_same_time_lose_no_key_and_share_one_key_per_name(store):
    """As the forks of one play: processes, each adding its own names and one that all of them want."""
    callers, rounds = 6, 15
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [context.Process(target=_caller, args=(store, i, rounds, results)) for i in range(callers)]
    for process in processes:
        process.start()
    answers = [results.get(timeout=60) for _answer in range(callers * rounds)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    kept = stored(store)
    assert set(kept) == {"shared"} | {f"caller-{i}-{r}" for i in range(callers) for r in range(rounds)}
    for answer in answers:
        assert answer == {name: kept[name] for name in answer}


def run_action(task_args, check=False, diff=False):
    """The action as a task runs it, on a task with these arguments."""
    task = MagicMock(args=task_args, async_val=0, check_mode=check, diff=diff)
    connection = MagicMock()
    connection._shell.tmpdir = None
    action = raw_keys.ActionModule(task, connection, MagicMock(), MagicMock(), MagicMock())
    return action.run(task_vars={})


def test_the_action_diff_shows_names_and_never_a_key(store):
    raw_keys.keep_keys(store, ["alice"])
    for check in (True, False):
        result = run_action({"path": store, "names": ["alice", "bob"]}, check=check, diff=True)
        assert result["changed"]
        assert (result["diff"]["before"], result["diff"]["after"]) == ("alice\n", "alice\nbob\n")
        assert result["diff"]["before_header"] == store
        assert not any(key in str(result["diff"]) for key in result["keys"].values())
    assert "diff" not in run_action({"path": store, "names": ["alice", "bob"]}, diff=True)


def test_the_action_keeps_makes_and_reads_as_asked(store):
    assert run_action({"path": store, "names": ["alice"], "create": False}) == {"changed": False, "keys": {}}
    made = run_action({"path": store, "names": ["alice"]})
    assert made["changed"] and "diff" not in made
    assert run_action({"path": store, "names": ["alice", "bob"], "create": False})["keys"] == made["keys"]
    fresh = run_action({"names": ["smoke"]})
    assert not fresh["changed"] and KEY.fullmatch(fresh["keys"]["smoke"])
    assert "smoke" not in stored(store)


def test_the_action_refuses_a_bad_store_and_reading_without_one(store):
    os.makedirs(os.path.dirname(store))
    Path(store).write_text("[]\n")
    with pytest.raises(AnsibleActionFail, match=re.escape(store)):
        run_action({"path": store, "names": ["alice"]})
    with pytest.raises(AnsibleActionFail, match=r"create is False.*path"):
        run_action({"names": ["alice"], "create": False})


PLAY = """
- hosts: all
  gather_facts: false
  vars:
    organisers: [{alias: organiser}]
  tasks:
    - name: Make the keys once, for every host of the play
      thorfleet.llm.raw_keys:
        path: "{{ store }}"
        names: "{{ ansible_play_hosts | map('regex_replace', '^', 'open-webui@') | list }}"
      register: made
      run_once: true
      no_log: true

    # Names straight from YAML carry Ansible's data tags, which a YAML dump cannot represent.
    - name: Make the organisers' keys
      thorfleet.llm.raw_keys:
        path: "{{ store }}"
        names: "{{ organisers | map(attribute='alias') | list }}"
      run_once: true
      no_log: true

    - name: Every host has its key
      ansible.builtin.assert:
        that: made['keys']['open-webui@' ~ inventory_hostname] is match('sk-')
        quiet: true
"""


def test_a_play_makes_the_keys_once_for_every_host_on_the_controller(tmp_path, store):
    """The units' addresses are unreachable (TEST-NET-1): anything run on them would fail the play."""
    units = {f"thor-0{n}": {"ansible_host": f"192.0.2.{n}", "ansible_ssh_timeout": 2} for n in (1, 2, 3)}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": units}}))
    (tmp_path / "play.yml").write_text(PLAY)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1"}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(Path(raw_keys.__file__).parents[5])  # the root the tests import from
    run = subprocess.run(
        [
            Path(sys.executable).with_name("ansible-playbook"),
            "-i",
            tmp_path / "inventory.yml",
            tmp_path / "play.yml",
            "-e",
            f"store={store}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,  # the assertion below shows the play's output
    )
    assert run.returncode == 0, run.stdout + run.stderr
    kept = stored(store)
    assert set(kept) == {"open-webui@thor-01", "open-webui@thor-02", "open-webui@thor-03", "organiser"}
    assert not any(key in run.stdout for key in kept.values())

"""A hosts pattern that matches no host fails every playbook, naming the pattern, instead of ending green."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHECK = "_hosts.yml"
PLAYBOOKS = sorted(path for path in (REPO / "playbooks").glob("*.yml") if path.name != CHECK)
# The units' addresses are unreachable (TEST-NET-1): the check must not need them.
INVENTORY = {
    "all": {
        "hosts": {"cache_source": {"ansible_host": "192.0.2.100"}},
        "children": {"thor": {"hosts": {f"thor-0{n}": {"ansible_host": f"192.0.2.{n}"} for n in (1, 2, 3)}}},
    }
}


@pytest.mark.parametrize("path", PLAYBOOKS, ids=[path.stem for path in PLAYBOOKS])
def test_every_playbook_checks_its_hosts_first(path):
    first = yaml.safe_load(path.read_text())[0]
    assert first.get("ansible.builtin.import_playbook") == CHECK


def check(tmp_path, *args, inventory=None):
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(INVENTORY if inventory is None else inventory))
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "NO_COLOR": "1", "ANSIBLE_NOCOLOR": "1"}
    playbook = Path(sys.executable).with_name("ansible-playbook")
    run = subprocess.run(
        [playbook, "-i", tmp_path / "inventory.yml", REPO / "playbooks" / CHECK, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    return run.returncode, run.stdout + run.stderr


@pytest.mark.parametrize(
    "args",
    [[], ["-e", "thorfleet_hosts=thor-02"], ["-e", "thorfleet_hosts=thor:!thor-02"], ["-l", "thor-01"]],
    ids=["the default group", "one unit", "a group but one", "a limit (localhost not in it)"],
)
def test_a_pattern_that_matches_units_passes(tmp_path, args):
    rc, output = check(tmp_path, *args)
    assert rc == 0, output
    assert "ok: [" in output, "the check did not run"


def test_the_check_runs_on_the_controller_and_no_unit_shows_in_the_recap(tmp_path):
    rc, output = check(tmp_path)
    assert rc == 0, output
    assert "ok: [localhost]" in output
    assert "thor-0" not in output.split("PLAY RECAP")[-1], output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-e", "thorfleet_hosts=thor-99"], "thorfleet_hosts 'thor-99' matches no host"),
        (["-e", "thorfleet_hosts=thor-02", "-l", "thor-01"], "'thor-02' with --limit 'thor-01' matches no host"),
        (["-e", "thorfleet_hosts=thor:!thor-0*"], "thorfleet_hosts 'thor:!thor-0*' matches no"),
        # Ansible itself refuses a limit that matches no host, before any play.
        (["-l", "thor-99"], "--limit leaves us with no hosts"),
    ],
    ids=["an unknown unit", "outside the limit", "a pattern that excludes everything", "a limit typo"],
)
def test_a_pattern_that_matches_no_unit_fails_naming_it(tmp_path, args, message):
    rc, output = check(tmp_path, *args)
    assert rc != 0, output
    assert message in output, output


def test_an_inventory_without_units_fails(tmp_path):
    rc, output = check(tmp_path, inventory={"all": {"hosts": {}}})
    assert rc != 0, output
    assert "thorfleet_hosts 'thor' matches no host" in output, output

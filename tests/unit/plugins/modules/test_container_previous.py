"""container_previous: a service's container kept, stopped, under NAME-previous with its config, put back or dropped;
check mode and the diff, over a fake Docker engine that keeps its containers by name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.module_utils._container_previous import plan, read
from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import DockerError
from ansible_collections.thorfleet.llm.plugins.modules import container_previous

from ..docs import assert_documented


class FakeEngine:
    """Containers by name ({id, running}), changed only as the Engine API's calls would; records each call."""

    def __init__(self, **containers):
        self.containers = {name: dict(info) for name, info in containers.items()}
        self.calls = []

    def inspect(self, kind, name):
        assert kind == "containers"
        info = self.containers.get(name)
        return None if info is None else {"Id": info["id"], "State": {"Running": info["running"]}}

    def request(self, method, path, body=None):
        self.calls.append(f"{method} {path}")
        match = re.fullmatch(r"/containers/([^/?]+)(/\w+)?(?:\?(.*))?", path)
        name, action, query = match.groups()
        if name not in self.containers:
            raise DockerError(f"No such container: {name}")
        if (method, action) == ("POST", "/stop"):
            self.containers[name]["running"] = False
        elif (method, action) == ("POST", "/start"):
            self.containers[name]["running"] = True
        elif (method, action) == ("POST", "/rename"):
            new = query.removeprefix("name=")
            assert new not in self.containers, f"{new} exists"
            self.containers[new] = self.containers.pop(name)
        elif (method, action) == ("DELETE", None):
            del self.containers[name]
        return 204, None


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("old\n")
    return str(path)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "postgres"
    path.mkdir(mode=0o700)
    (path / "PG_VERSION").write_text("15\n")
    return str(path)


@pytest.fixture
def run(capsys, monkeypatch):
    """The module's main() on an engine; returns its result."""
    monkeypatch.setattr(module_utils_internal, "is_controller", False)

    def run(engine, check=False, **args):
        monkeypatch.setattr(container_previous, "Engine", lambda *_a, **_k: engine)
        args = {**args, "_ansible_check_mode": check, "_ansible_diff": True}
        with patch_module_args(args), pytest.raises(SystemExit):
            container_previous.main()
        return json.loads(capsys.readouterr().out)

    return run


def test_kept_stops_renames_and_copies_the_config(run, config):
    engine = FakeEngine(**{"ai-litellm": {"id": "old", "running": True}})
    result = run(engine, name="ai-litellm", state="kept", files=[config], stop_timeout=30)
    assert result["steps"] == [
        "stop ai-litellm",
        "rename ai-litellm ai-litellm-previous",
        f"keep {config}",
    ]
    assert engine.calls[0] == "POST /containers/ai-litellm/stop?t=30"
    assert engine.containers == {"ai-litellm-previous": {"id": "old", "running": False}}
    assert Path(config + "-previous").read_text() == "old\n"
    assert result["changed"] and result["previous"]
    assert result["diff"] == {
        "before": f"ai-litellm: running\nai-litellm-previous: absent\n{config}-previous: absent\n",
        "after": f"ai-litellm: absent\nai-litellm-previous: stopped\n{config}-previous: present\n",
    }


def test_kept_replaces_a_stale_kept_one_and_keeps_nothing_where_nothing_runs(run, config):
    engine = FakeEngine(
        **{"ai-vllm": {"id": "new", "running": False}, "ai-vllm-previous": {"id": "stale", "running": False}}
    )
    result = run(engine, name="ai-vllm", state="kept")
    assert result["steps"] == ["remove ai-vllm-previous", "rename ai-vllm ai-vllm-previous"]
    assert engine.containers == {"ai-vllm-previous": {"id": "new", "running": False}}
    # A run cut off after keeping: the kept one stays the record of what served.
    again = run(engine, name="ai-vllm", state="kept")
    assert (again["changed"], again["steps"], again["previous"]) == (False, [], True)
    assert run(FakeEngine(), name="ai-vllm", state="kept")["previous"] is False


def test_restored_removes_the_replacement_and_starts_the_kept_one_on_its_config(run, config):
    engine = FakeEngine(**{"ai-litellm": {"id": "old", "running": True}})
    run(engine, name="ai-litellm", state="kept", files=[config])
    Path(config).write_text("new\n")
    engine.containers["ai-litellm"] = {"id": "new", "running": True}
    result = run(engine, name="ai-litellm", state="restored", files=[config])
    assert result["steps"] == [
        "remove ai-litellm",
        "rename ai-litellm-previous ai-litellm",
        f"restore {config}",
        "start ai-litellm",
    ]
    assert engine.containers == {"ai-litellm": {"id": "old", "running": True}}
    assert Path(config).read_text() == "old\n"
    assert (result["previous"], result["diff"]["after"]) == (
        False,
        f"ai-litellm: running\nai-litellm-previous: absent\n{config}-previous: absent\n",
    )
    # Nothing kept (a first start): nothing to put back, and the caller says so.
    assert run(engine, name="ai-litellm", state="restored", files=[config])["steps"] == []


def test_dropped_removes_the_kept_one_its_config_and_its_folders(run, config, data):
    engine = FakeEngine(**{"ai-litellm": {"id": "old", "running": True}})
    run(engine, name="ai-litellm", state="kept", files=[config], folders=[data])
    engine.containers["ai-litellm"] = {"id": "new", "running": True}
    result = run(engine, name="ai-litellm", state="dropped", files=[config], folders=[data])
    # The container first: a run cut off after it leaves the old data, never a kept container without it.
    assert result["steps"] == ["remove ai-litellm-previous", f"drop {config}", f"clear {data}"]
    assert engine.containers == {"ai-litellm": {"id": "new", "running": True}}
    assert Path(config).read_text() == "old\n"
    assert not Path(config + "-previous").exists()
    assert not Path(data + "-previous").exists() and Path(data).is_dir()
    assert run(engine, name="ai-litellm", state="dropped", files=[config], folders=[data])["changed"] is False


def test_check_mode_changes_nothing_and_shows_the_change(run, config):
    engine = FakeEngine(**{"ai-litellm": {"id": "old", "running": True}})
    result = run(engine, check=True, name="ai-litellm", state="kept", files=[config])
    assert result["changed"] and engine.calls == []
    assert engine.containers == {"ai-litellm": {"id": "old", "running": True}}
    assert "ai-litellm-previous: stopped" in result["diff"]["after"]
    assert plan(read(engine, "ai-litellm", [config]), "ai-litellm", "kept", [config])[0] == ("stop", "ai-litellm")


def test_an_engine_error_names_the_container(run):
    engine = FakeEngine(**{"ai-vllm": {"id": "old", "running": True}})

    def trouble(*_args, **_kwargs):
        raise DockerError("engine trouble")

    engine.request = trouble
    result = run(engine, name="ai-vllm", state="kept")
    assert result["failed"] and result["msg"] == "ai-vllm: engine trouble"


def test_documented_as_specified():
    assert_documented(container_previous.DOCUMENTATION, container_previous.argument_spec())


def test_a_folder_is_set_aside_for_an_empty_one_and_put_back_in_place_of_what_the_replacement_wrote(run, data):
    engine = FakeEngine(**{"ai-postgres": {"id": "old", "running": True}})
    result = run(engine, name="ai-postgres", state="kept", folders=[data])
    assert result["steps"] == ["stop ai-postgres", "rename ai-postgres ai-postgres-previous", f"set-aside {data}"]
    assert Path(data + "-previous", "PG_VERSION").read_text() == "15\n"
    assert list(Path(data).iterdir()) == [] and Path(data).stat().st_mode & 0o777 == 0o700
    assert f"{data}-previous: present" in result["diff"]["after"]
    # The replacement writes its own cluster, then fails its gate: what it wrote goes, the kept data comes back.
    Path(data, "PG_VERSION").write_text("17\n")
    engine.containers["ai-postgres"] = {"id": "new", "running": True}
    result = run(engine, name="ai-postgres", state="restored", folders=[data])
    assert result["steps"] == [
        "remove ai-postgres",
        f"put-back {data}",
        "rename ai-postgres-previous ai-postgres",
        "start ai-postgres",
    ]
    assert Path(data, "PG_VERSION").read_text() == "15\n" and not Path(data + "-previous").exists()
    assert engine.containers == {"ai-postgres": {"id": "old", "running": True}}


def test_a_folder_set_aside_earlier_is_never_removed_by_another_keep(run, data):
    Path(data + "-previous").mkdir()
    Path(data + "-previous", "PG_VERSION").write_text("14\n")
    engine = FakeEngine(**{"ai-postgres": {"id": "old", "running": True}})
    result = run(engine, name="ai-postgres", state="kept", folders=[data])
    assert result["failed"] and f"{data}-previous exists already" in result["msg"]
    assert Path(data + "-previous", "PG_VERSION").read_text() == "14\n"
    assert Path(data, "PG_VERSION").read_text() == "15\n"
    assert engine.containers == {"ai-postgres": {"id": "old", "running": True}} and engine.calls == []

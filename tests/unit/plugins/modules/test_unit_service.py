"""unit_service: the folders and the network made only when missing, the container's standing with the network, the
image looked for, in check mode too, over a fake Docker engine on a Unix socket."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import DockerError, Engine
from ansible_collections.thorfleet.llm.plugins.module_utils._unit_service import (
    FolderError,
    converge,
    files,
    folders,
    ports_held,
)
from ansible_collections.thorfleet.llm.plugins.modules import unit_service

from ..docs import assert_documented

NET = "infra-thor"


class FakeEngine:
    """Networks and containers by name; records what was created."""

    def __init__(self, networks=None, containers=None, images=None, running=None):
        self.running = list(running or [])
        self.networks = dict(networks or {})
        self.containers = dict(containers or {})
        self.images = dict(images or {})
        self.created = []

    def inspect(self, kind, name):
        return {"networks": self.networks, "containers": self.containers, "images": self.images}[kind].get(name)

    def request(self, method, path, body=None):
        if (method, path) == ("GET", "/containers/json"):
            return 200, self.running
        assert (method, path) == ("POST", "/networks/create")
        self.created.append(body)
        self.networks[body["Name"]] = {"Name": body["Name"], "Id": "new-id"}
        return 201, {"Id": "new-id"}


def on(network_id):
    return {"NetworkSettings": {"Networks": {NET: {"NetworkID": network_id}}}, "State": {"Running": True}}


def test_a_healthy_unit_changes_nothing():
    engine = FakeEngine({NET: {"Name": NET, "Id": "n1"}}, {"ai-vllm": on("n1")})
    result = converge(engine, NET, "ai-vllm", None, check_mode=False)
    assert result == dict(
        changed=False,
        network_id="n1",
        exists=True,
        container=on("n1"),
        previous=False,
        network_new=False,
        network_stale=False,
        image_present=None,
    )
    assert engine.created == []


def test_a_missing_network_is_made_and_its_old_containers_are_stale():
    engine = FakeEngine(containers={"ai-vllm": on("gone")})
    result = converge(engine, NET, "ai-vllm", None, check_mode=False)
    assert engine.created == [{"Name": NET, "Driver": "bridge", "CheckDuplicate": True}]
    assert (result["changed"], result["network_id"], result["network_new"], result["network_stale"]) == (
        True,
        "new-id",
        False,
        True,
    )


def test_check_mode_makes_nothing_and_says_the_network_is_new():
    engine = FakeEngine(containers={"ai-vllm": on("gone")})
    result = converge(engine, NET, "ai-vllm", None, check_mode=True)
    assert engine.created == []
    assert (result["changed"], result["network_id"], result["network_new"], result["network_stale"]) == (
        True,
        "",
        True,
        True,
    )


def test_the_environment_is_reported_by_names_only():
    secret = {**on("n1"), "Config": {"Env": ["POSTGRES_PASSWORD=hunter2hunter2", "PATH=/usr/bin"], "Labels": {}}}
    engine = FakeEngine({NET: {"Name": NET, "Id": "n1"}}, {"ai-postgres": secret})
    result = converge(engine, NET, "ai-postgres", None, check_mode=False)
    assert result["container"]["Config"] == {"Env": ["POSTGRES_PASSWORD", "PATH"], "Labels": {}}
    assert "hunter2" not in json.dumps(result)


def test_a_missing_container_is_not_stale():
    result = converge(FakeEngine({NET: {"Name": NET, "Id": "n1"}}), NET, "ai-vllm", None, check_mode=False)
    assert (result["exists"], result["container"], result["network_stale"]) == (False, None, False)


def test_a_detached_container_is_stale():
    detached = {"NetworkSettings": {"Networks": {"bridge": {"NetworkID": "b"}}}}
    engine = FakeEngine({NET: {"Name": NET, "Id": "n1"}}, {"ai-vllm": detached})
    assert converge(engine, NET, "ai-vllm", None, check_mode=False)["network_stale"] is True


def test_the_image_is_looked_for_when_asked():
    engine = FakeEngine({NET: {"Name": NET, "Id": "n1"}}, images={"vllm:1": {"Id": "sha256:1"}})
    assert converge(engine, NET, "ai-vllm", "vllm:1", check_mode=False)["image_present"] is True
    assert converge(engine, NET, "ai-vllm", "vllm:2", check_mode=True)["image_present"] is False


def test_folders_are_made_with_their_parents_and_their_mode_set(tmp_path):
    data, kept = tmp_path / "srv" / "data", tmp_path / "kept"
    kept.mkdir(mode=0o700)
    os.chmod(kept, 0o700)
    assert folders([str(data), str(kept)], "0700", check_mode=False) == {str(data): ("absent", "0700")}
    assert (data.stat().st_mode & 0o7777, kept.stat().st_mode & 0o7777) == (0o700, 0o700)
    # A mode changed by hand is set back; a second run changes nothing.
    os.chmod(data, 0o755)
    assert folders([str(data)], "0700", check_mode=False) == {str(data): ("0755", "0700")}
    assert folders([str(data), str(kept)], "0700", check_mode=False) == {}


def test_check_mode_makes_no_folder(tmp_path):
    data = tmp_path / "data"
    assert folders([str(data)], "0755", check_mode=True) == {str(data): ("absent", "0755")}
    assert not data.exists()


def test_a_file_in_a_folders_place_or_a_bad_mode_is_refused(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(FolderError, match="exists and is not a folder"):
        folders([str(tmp_path / "data")], "0700", check_mode=False)
    with pytest.raises(FolderError, match="octal string"):
        folders([str(tmp_path / "other")], "448", check_mode=False)


def test_files_are_reported_for_the_caller_to_compare(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\n")
    os.chmod(config, 0o600)
    found = files([str(config), str(tmp_path / "none.yaml"), str(tmp_path)])
    assert found == {
        str(config): dict(
            sha256=hashlib.sha256(b"model_list: []\n").hexdigest(), mode="0600", uid=os.getuid(), gid=os.getgid()
        ),
        str(tmp_path / "none.yaml"): None,
        str(tmp_path): None,
    }


def test_a_network_found_by_id_prefix_only_is_not_the_network():
    engine = FakeEngine({NET: {"Name": "infra-thor-old", "Id": "n0"}})
    assert converge(engine, NET, "ai-vllm", None, check_mode=False)["changed"] is True
    assert engine.created


def publishing(name, port, *addresses):
    """A running container as GET /containers/json lists it, publishing `port` on each of `addresses`."""
    ports = [{"IP": address, "PrivatePort": 80, "PublicPort": port, "Type": "tcp"} for address in addresses]
    return {"Names": [f"/{name}"], "Ports": ports}


def test_a_port_another_container_publishes_is_held_by_it():
    engine = FakeEngine(running=[publishing("squatter", 12434, "0.0.0.0", "::")])
    assert ports_held(engine, "ai-litellm", [12434], "0.0.0.0") == [
        {"port": 12434, "container": "squatter", "address": "0.0.0.0:12434"}
    ]
    # Every address collides with a single one, either way round.
    assert ports_held(engine, "ai-litellm", [12434], "127.0.0.1")[0]["container"] == "squatter"
    engine = FakeEngine(running=[publishing("squatter", 12434, "127.0.0.1")])
    assert ports_held(engine, "ai-litellm", [12434], "0.0.0.0")[0]["address"] == "127.0.0.1:12434"


def test_no_ports_ask_the_engine_nothing():
    engine = FakeEngine(running=[publishing("squatter", 12434, "0.0.0.0")])
    engine.request = None  # any call would fail
    assert ports_held(engine, "ai-vllm", [], "0.0.0.0") == []


def test_the_containers_own_port_and_other_addresses_are_free():
    engine = FakeEngine(running=[publishing("ai-litellm", 12434, "0.0.0.0"), publishing("other", 3000, "10.0.0.5")])
    assert ports_held(engine, "ai-litellm", [12434], "0.0.0.0") == []
    assert ports_held(engine, "ai-open-webui", [3000], "127.0.0.1") == []


def test_a_port_a_process_listens_on_is_held_by_no_container():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert ports_held(FakeEngine(), "ai-litellm", [port], "127.0.0.1") == [
            {"port": port, "container": None, "address": f"127.0.0.1:{port}"}
        ]
    # Closed: free again, and an address this host does not have is left to Docker's own message.
    assert ports_held(FakeEngine(), "ai-litellm", [port], "127.0.0.1") == []
    assert ports_held(FakeEngine(), "ai-litellm", [port], "203.0.113.7") == []


ROUTES = {
    ("GET", "/containers/json"): (200, [publishing("squatter", 12500, "0.0.0.0")]),
    ("GET", f"/networks/{NET}"): (200, {"Name": NET, "Id": "n1"}),
    ("GET", "/containers/ai-vllm/json"): (200, on("n1")),
    ("GET", "/containers/ai-vllm-previous/json"): (200, on("n1")),
    ("GET", "/containers/ai-litellm-previous/json"): (404, {"message": "No such container: ai-litellm-previous"}),
    ("GET", "/containers/ai-litellm/json"): (404, {"message": "No such container: ai-litellm"}),
    ("GET", "/containers/ai-broken/json"): (500, {"message": "engine trouble"}),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = ROUTES[("GET", self.path)]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    def get_request(self):
        request, _address = super().get_request()
        return request, ("local", 0)


@pytest.fixture
def docker_socket(tmp_path):
    path = str(tmp_path / "docker.sock")
    server = UnixHTTPServer(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path
    server.shutdown()
    server.server_close()


def test_the_engine_over_a_unix_socket(docker_socket):
    engine = Engine(docker_socket)
    assert engine.inspect("networks", NET) == {"Name": NET, "Id": "n1"}
    assert engine.inspect("containers", "ai-vllm") == on("n1")
    assert engine.inspect("containers", "ai-litellm") is None
    with pytest.raises(DockerError, match="HTTP 500: engine trouble"):
        engine.inspect("containers", "ai-broken")


def test_no_engine_is_an_error(tmp_path):
    with pytest.raises(DockerError, match="cannot talk to the Docker engine"):
        Engine(str(tmp_path / "none.sock")).inspect("networks", NET)


@pytest.fixture
def run(capsys, monkeypatch):
    monkeypatch.setattr(module_utils_internal, "is_controller", False)

    def run(check=False, **args):
        with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit) as exited:
            unit_service.main()
        result = json.loads(capsys.readouterr().out)
        assert bool(result.get("failed")) == (exited.value.code != 0), result
        return result

    return run


def test_the_module_reports_and_fails_as_documented(run, docker_socket, tmp_path):
    result = run(network=NET, container="ai-vllm", docker_socket=docker_socket)
    assert (result["changed"], result["exists"], result["network_stale"], result["folders"]) == (False, True, False, [])
    # A kept one left by a run cut off before its gate.
    assert result["previous"] is True
    folder = str(tmp_path / "data")
    made = run(network=NET, container="ai-vllm", folders=[folder], folders_mode="0700", docker_socket=docker_socket)
    assert (made["changed"], made["folders"], made["diff"]) == (
        True,
        [folder],
        {"before": f"{folder}: absent\n", "after": f"{folder}: 0700\n"},
    )
    held = run(network=NET, container="ai-litellm", ports=[12500, 12434], docker_socket=docker_socket)
    assert held["ports_held"] == [{"port": 12500, "container": "squatter", "address": "0.0.0.0:12500"}]
    assert (held["exists"], held["previous"]) == (False, False)
    failed = run(network=NET, container="ai-vllm", docker_socket=str(tmp_path / "none.sock"))
    assert failed["failed"] and "cannot talk to the Docker engine" in failed["msg"]


def test_documented_as_specified():
    assert_documented(unit_service.DOCUMENTATION, unit_service.argument_spec())

"""unit_network: the network made only when missing, the container's standing with it, in check mode too, over a
fake Docker engine on a Unix socket."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.module_utils._docker_engine import DockerError, Engine
from ansible_collections.thorfleet.llm.plugins.module_utils._unit_network import converge
from ansible_collections.thorfleet.llm.plugins.modules import unit_network

from ..docs import assert_documented

NET = "infra-thor"


class FakeEngine:
    """Networks and containers by name; records what was created."""

    def __init__(self, networks=None, containers=None):
        self.networks = dict(networks or {})
        self.containers = dict(containers or {})
        self.created = []

    def inspect(self, kind, name):
        return (self.networks if kind == "networks" else self.containers).get(name)

    def request(self, method, path, body=None):
        assert (method, path) == ("POST", "/networks/create")
        self.created.append(body)
        self.networks[body["Name"]] = {"Name": body["Name"], "Id": "new-id"}
        return 201, {"Id": "new-id"}


def on(network_id):
    return {"NetworkSettings": {"Networks": {NET: {"NetworkID": network_id}}}, "State": {"Running": True}}


def test_a_healthy_unit_changes_nothing():
    engine = FakeEngine({NET: {"Name": NET, "Id": "n1"}}, {"ai-vllm": on("n1")})
    result = converge(engine, NET, "ai-vllm", check_mode=False)
    assert result == dict(
        changed=False, network_id="n1", exists=True, container=on("n1"), network_new=False, network_stale=False
    )
    assert engine.created == []


def test_a_missing_network_is_made_and_its_old_containers_are_stale():
    engine = FakeEngine(containers={"ai-vllm": on("gone")})
    result = converge(engine, NET, "ai-vllm", check_mode=False)
    assert engine.created == [{"Name": NET, "Driver": "bridge", "CheckDuplicate": True}]
    assert (result["changed"], result["network_id"], result["network_new"], result["network_stale"]) == (
        True,
        "new-id",
        False,
        True,
    )


def test_check_mode_makes_nothing_and_says_the_network_is_new():
    engine = FakeEngine(containers={"ai-vllm": on("gone")})
    result = converge(engine, NET, "ai-vllm", check_mode=True)
    assert engine.created == []
    assert (result["changed"], result["network_id"], result["network_new"], result["network_stale"]) == (
        True,
        "",
        True,
        True,
    )


def test_a_missing_container_is_not_stale():
    result = converge(FakeEngine({NET: {"Name": NET, "Id": "n1"}}), NET, "ai-vllm", check_mode=False)
    assert (result["exists"], result["container"], result["network_stale"]) == (False, None, False)


def test_a_detached_container_is_stale():
    detached = {"NetworkSettings": {"Networks": {"bridge": {"NetworkID": "b"}}}}
    engine = FakeEngine({NET: {"Name": NET, "Id": "n1"}}, {"ai-vllm": detached})
    assert converge(engine, NET, "ai-vllm", check_mode=False)["network_stale"] is True


def test_a_network_found_by_id_prefix_only_is_not_the_network():
    engine = FakeEngine({NET: {"Name": "infra-thor-old", "Id": "n0"}})
    assert converge(engine, NET, "ai-vllm", check_mode=False)["changed"] is True
    assert engine.created


ROUTES = {
    ("GET", f"/networks/{NET}"): (200, {"Name": NET, "Id": "n1"}),
    ("GET", "/containers/ai-vllm/json"): (200, on("n1")),
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
            unit_network.main()
        result = json.loads(capsys.readouterr().out)
        assert bool(result.get("failed")) == (exited.value.code != 0), result
        return result

    return run


def test_the_module_reports_and_fails_as_documented(run, docker_socket, tmp_path):
    result = run(network=NET, container="ai-vllm", docker_socket=docker_socket)
    assert (result["changed"], result["exists"], result["network_stale"]) == (False, True, False)
    failed = run(network=NET, container="ai-vllm", docker_socket=str(tmp_path / "none.sock"))
    assert failed["failed"] and "cannot talk to the Docker engine" in failed["msg"]


def test_documented_as_specified():
    assert_documented(unit_network.DOCUMENTATION, unit_network.argument_spec())

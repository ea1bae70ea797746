"""roles/litellm_proxy/files/litellm_check.py over real HTTP: a backend that answers with the model passes; one that is
down, answers without the model, or wants another key fails, each named."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

CHECK = Path(__file__).resolve().parents[2] / "roles" / "litellm_proxy" / "files" / "litellm_check.py"


class Backend(BaseHTTPRequestHandler):
    """vLLM's /v1/models, serving `served`, behind the key `key` when it has one."""

    served, key = "Qwen3-VL-30B-A3B", ""

    def do_GET(self):
        if self.key and self.headers.get("Authorization") != f"Bearer {self.key}":
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps({"object": "list", "data": [{"id": self.served, "object": "model"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def backend():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def check(models: list[tuple[str, str, str]], key: str = "EMPTY") -> subprocess.CompletedProcess:
    config = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {"model": f"openai/{served}", "api_base": base, "api_key": "os.environ/VLLM_API_KEY"},
            }
            for name, served, base in models
        ],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }
    return subprocess.run(
        [sys.executable, CHECK, yaml.safe_dump(config)],
        capture_output=True,
        text=True,
        env={"VLLM_API_KEY": key},
        check=False,
        timeout=60,
    )


def test_a_backend_serving_the_model_passes_silently(backend):
    run = check([("Qwen3-VL-30B-A3B", "Qwen3-VL-30B-A3B", backend)])
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_each_backend_that_is_down_or_lacks_the_model_is_named(backend):
    run = check(
        [("a", "Qwen3-VL-30B-A3B", backend), ("b", "gpt-oss-120b", backend), ("c", "x", "http://127.0.0.1:9/v1")]
    )
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert lines[0] == f"model b: its backend {backend} serves ['Qwen3-VL-30B-A3B'], not gpt-oss-120b"
    assert lines[1].startswith("model c: its backend http://127.0.0.1:9/v1 does not answer (")
    assert len(lines) == 2


def test_a_name_served_by_one_of_its_deployments_passes_naming_the_others(backend):
    """The gateway's model list: one deployment per unit under one name. One that answers serves the name; a name
    whose every deployment fails is refused."""
    down = "http://127.0.0.1:9/v1"
    run = check(
        [("a", "Qwen3-VL-30B-A3B", down), ("a", "Qwen3-VL-30B-A3B", backend), ("b", "x", down), ("b", "x", down)]
    )
    assert run.returncode == 1
    assert run.stdout.startswith(f"model a: its backend {down} does not answer (") and len(run.stdout.splitlines()) == 1
    assert [line.split(" does not")[0] for line in run.stderr.splitlines()] == [f"model b: its backend {down}"] * 2
    assert check([("a", "Qwen3-VL-30B-A3B", down), ("a", "Qwen3-VL-30B-A3B", backend)]).returncode == 0


def test_the_key_comes_from_the_environment_the_config_names(backend, monkeypatch):
    monkeypatch.setattr(Backend, "key", "fleet-token-0123456789")
    assert check([("a", "Qwen3-VL-30B-A3B", backend)], key="fleet-token-0123456789").returncode == 0
    refused = check([("a", "Qwen3-VL-30B-A3B", backend)], key="EMPTY")
    assert refused.returncode == 1 and "does not answer (HTTP Error 401" in refused.stderr


def test_a_config_that_is_not_yaml_or_has_no_models_is_refused():
    for text, message in (("model_list: [", "the config is not YAML"), ("general_settings: {}", "has no model_list")):
        run = subprocess.run([sys.executable, CHECK, text], capture_output=True, text=True, check=False)
        assert run.returncode == 1 and message in run.stderr

"""vLLM's --api-key, as a fleet gateway reaches the units' vLLM with it: vLLM 0.31.0's own AuthenticationMiddleware
(in its venv, in front of a route that answers every path) and vllm-sim, given the same requests, refuse the same ones
with the same answer and let the same ones through."""

from __future__ import annotations

import json
import subprocess

import pytest
from litellm_harness import free_port, http, serving, vllm_server

KEY = "sk-fleet-token-0123456789"
# (method, path, Authorization header)
CASES = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/models", f"Bearer {KEY}"),
    ("GET", "/v1/models", f"bearer {KEY}"),
    ("GET", "/v1/models", "Bearer wrong"),
    ("GET", "/v1/models", f"Basic {KEY}"),
    ("GET", "/v1/models", f"Bearer {KEY} "),
    ("POST", "/v1/chat/completions", None),
    ("GET", "/v1/nonexistent", None),
    ("GET", "/health", None),
    ("GET", "/metrics", None),
]
# Runs in vLLM's venv: its middleware over an app that answers 200 wherever it is let through.
REAL = """
import json, sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

async def through(request):
    return JSONResponse({"through": True})

app = Starlette(routes=[Route("/{path:path}", through, methods=["GET", "POST"])])
app.add_middleware(AuthenticationMiddleware, tokens=[sys.argv[1]])
client = TestClient(app)
out = []
for method, path, authorization in json.load(sys.stdin):
    headers = {"Authorization": authorization} if authorization else {}
    r = client.request(method, path, headers=headers, json={} if method == "POST" else None)
    out.append([r.status_code, r.json() if r.status_code == 401 else None])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vllm-key")
    cmd, env, base = vllm_server(workdir, free_port())
    url = base.removesuffix("/v1")
    with serving([*cmd, "--api-key", KEY], env, workdir / "vllm-sim.log", f"{url}/health", 30):
        yield url


def test_vllm_sim_lets_through_and_refuses_what_vllm_does(vllm_parser, sim_url):
    real = json.loads(
        subprocess.run(
            [vllm_parser.python, "-c", REAL, KEY], input=json.dumps(CASES), capture_output=True, text=True, check=True
        ).stdout
    )
    sim = []
    for method, path, authorization in CASES:
        headers = {"Authorization": authorization} if authorization else {}
        r = http().request(method, sim_url + path, headers=headers, json={} if method == "POST" else None, timeout=30)
        sim.append([r.status_code, r.json() if r.status_code == 401 else None])
    assert refusals(sim) == refusals(real)
    assert refusals(real) == [REFUSED, 200, 200, REFUSED, REFUSED, REFUSED, REFUSED, REFUSED, 200, 200]


REFUSED = [401, {"error": "Unauthorized"}]


def refusals(answers: list) -> list:
    """Each answer as it is where it refused the request, else 200: a route behind let it through (the stand-in
    answers 404 or 405 where no route is, vLLM's own would too)."""
    return [answer if answer[0] == 401 else 200 for answer in answers]

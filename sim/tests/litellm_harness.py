"""How litellm-sim is run and spoken to by its tests, the contract tests and bench-keys: a real
PostgreSQL (the simulator's image), vllm-sim as the backend, and the config the litellm_proxy role
renders; helpers that read its answers as the collection and its users do.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import psycopg2
import pytest
import requests
from rendering import render
from thorsim import LABEL, LABEL_EPHEMERAL, SIM_DIR
from thorsim.hfcache import make_model

# litellm-sim as its image runs it: the package on PYTHONPATH (see sim_env), `python3 -m litellm_sim`
# and then only the proxy's arguments.
LITELLM_SIM_DIR = SIM_DIR / "images" / "litellm-sim"
LITELLM_SIM = [sys.executable, "-m", "litellm_sim"]
VLLM_SIM = SIM_DIR / "images" / "vllm-sim" / "vllm_sim.py"
POSTGRES_IMAGE = "thorfleet-sim/postgres:0.1.0"
HF_REPO = "thorsim/tiny-chat"
SERVED = "tiny-served"
MODEL = "tiny-chat"
DEAD_MODEL = "dead-chat"
MASTER_KEY = "sk-master-" + secrets.token_hex(12)
VLLM_API_KEY = "sk-vllm-" + secrets.token_hex(8)
INPUT_COST = 0.0000002
OUTPUT_COST = 0.000001
# As the role takes them: per 1M tokens.
PRICES_PER_MILLION = {"input_cost_per_million": 0.20, "output_cost_per_million": 1.00}
START_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Nothing listens here: the backend of DEAD_MODEL, the same in every config of a test run.
DEAD_API_BASE = f"http://127.0.0.1:{free_port()}/v1"


def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # an HTTP(S)_PROXY must not take test traffic off 127.0.0.1
    return session


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def serving(
    cmd: list[str], env: dict[str, str], log: Path, ready_url: str, timeout: float
) -> Iterator[subprocess.Popen]:
    """Run a server until the block ends; ready once `ready_url` answers 200."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{cmd[0]} exited {proc.returncode} while starting:\n{log.read_text()[-3000:]}")
            try:
                if http().get(ready_url, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{ready_url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def vllm_server(workdir: Path, port: int) -> tuple[list[str], dict[str, str], str]:
    """The command and environment of vllm-sim serving HF_REPO as SERVED on `port`, and its OpenAI base URL."""
    if not (workdir / "hub").exists():
        make_model(workdir / "hub", HF_REPO)
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(workdir / "hub"),
        "VLLM_CACHE_ROOT": str(workdir / "vllm-cache"),
        "THORSIM_VLLM_LOAD_SECONDS": "0",
        "THORSIM_VLLM_WARM_LOAD_SECONDS": "0",
        # Slow enough that a stream relayed in one piece, instead of as it comes, shows.
        "THORSIM_VLLM_TOKENS_PER_SECOND": "40",
    }
    cmd = [sys.executable, str(VLLM_SIM), "serve", HF_REPO, "--served-model-name", SERVED]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    return cmd, env, f"http://127.0.0.1:{port}/v1"


@contextmanager
def vllm_backend(workdir: Path) -> Iterator[str]:
    """vllm-sim serving HF_REPO as SERVED; yields its OpenAI base URL (…/v1)."""
    cmd, env, base = vllm_server(workdir, free_port())
    with serving(cmd, env, workdir / "vllm-sim.log", f"{base}/models", START_TIMEOUT):
        yield base


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL container published on 127.0.0.1 only; yields the URL of its `litellm` database."""
    client = docker.from_env()
    try:
        client.images.get(POSTGRES_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{POSTGRES_IMAGE} is missing: build the simulator's images with `sim/fleet build`")
    password = secrets.token_hex(12)
    container = client.containers.run(
        POSTGRES_IMAGE,
        detach=True,
        environment={"POSTGRES_USER": "litellm", "POSTGRES_PASSWORD": password, "POSTGRES_DB": "litellm"},
        ports={"5432/tcp": ("127.0.0.1", None)},
        labels={LABEL: "1", LABEL_EPHEMERAL: "1"},
    )
    try:
        container.reload()
        port = container.ports["5432/tcp"][0]["HostPort"]
        url = f"postgresql://litellm:{password}@127.0.0.1:{port}/litellm"
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg2.connect(url, connect_timeout=2).close()
                break
            except psycopg2.OperationalError:
                container.reload()
                if container.status == "exited" or time.monotonic() > deadline:
                    pytest.fail(f"PostgreSQL did not come up:\n{container.logs().decode()[-3000:]}")
                time.sleep(0.3)
        yield url
    finally:
        container.remove(force=True, v=True)


@contextmanager
def database(server_url: str) -> Iterator[str]:
    """A fresh database on the server; yields its URL."""
    name = "t_" + secrets.token_hex(6)
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        try:
            yield server_url.rsplit("/", 1)[0] + "/" + name
        finally:
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        admin.close()


@functools.cache
def rendered_config(backend: str) -> str:
    """config.yaml exactly as the litellm_proxy role renders it, with a second model whose backend is down."""
    models = [
        {"model_name": name, "backend_model": served, "api_base": api_base, **PRICES_PER_MILLION}
        for name, served, api_base in ((MODEL, SERVED, backend), (DEAD_MODEL, "dead", DEAD_API_BASE))
    ]
    return render(litellm_proxy_models=models)["litellm_config"]


def write_config(path: Path, backend: str) -> Path:
    path.write_text(rendered_config(backend))
    return path


def proxy_env(**extra: str) -> dict[str, str]:
    """The environment without any LiteLLM setting of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_") and k != "DATABASE_URL"}
    return {**env, "VLLM_API_KEY": VLLM_API_KEY, **extra}


def sim_env(**extra: str) -> dict[str, str]:
    """proxy_env for litellm-sim, whose package is found as in its image (PYTHONPATH)."""
    return proxy_env(PYTHONPATH=str(LITELLM_SIM_DIR), **extra)


@dataclass
class Sim:
    url: str
    database_url: str
    log: Path
    proc: subprocess.Popen

    def query(self, sql: str, params: tuple = ()) -> list[dict]:
        # closing(): psycopg2's own context manager ends the transaction but keeps the connection.
        with closing(psycopg2.connect(self.database_url)) as conn, conn, conn.cursor() as cur:
            cur.execute(sql, params)
            if cur.description is None:
                return []
            names = [column.name for column in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


@contextmanager
def litellm_sim(workdir: Path, backend: str, database_url: str, **extra_env: str) -> Iterator[Sim]:
    config = write_config(workdir / "litellm-config.yaml", backend)
    port = free_port()
    cmd = [*LITELLM_SIM, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    env = sim_env(LITELLM_MASTER_KEY=MASTER_KEY, DATABASE_URL=database_url, **extra_env)
    url = f"http://127.0.0.1:{port}"
    log = workdir / "litellm-sim.log"
    with serving(cmd, env, log, f"{url}/health/liveliness", START_TIMEOUT) as proc:
        yield Sim(url, database_url, log, proc)


def stream_events(response: requests.Response) -> Iterator[str]:
    """The data of each server-sent event, as it arrives."""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            yield line[len("data: ") :]


def completion_view(body: dict) -> dict:
    """What the collection and its users read from a completion."""
    choice = body["choices"][0]
    return {
        "object": body["object"],
        "model": body["model"],
        "id_prefix": body["id"].split("-")[0],
        "index": choice["index"],
        "role": choice["message"]["role"] if "message" in choice else None,
        "text": choice["message"]["content"] if "message" in choice else choice["text"],
        "finish_reason": choice["finish_reason"],
        "usage": {k: body["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }


def stream_view(events: list[str]) -> dict:
    """What a client reads from a stream: its chunks' kind and model, the text, the end, the usage."""
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    pieces = [
        choice.get("delta", {}).get("content") or choice.get("text") or "" for c in chunks for choice in c["choices"]
    ]
    usage = [c for c in chunks if c.get("usage")]
    return {
        "objects": sorted({c["object"] for c in chunks}),
        "models": sorted({c["model"] for c in chunks}),
        "ids": len({c["id"] for c in chunks}),
        "text": "".join(pieces),
        "finish_reasons": [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")],
        # Only the last chunk may carry the usage, and then no choices.
        "usage": {k: usage[0]["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        if usage
        else None,
        "usage_last": not usage or (usage == chunks[-1:] and chunks[-1]["choices"] == []),
    }


def chat_body(stream: bool = False, include_usage: bool | None = None, **extra) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "tell me"}], "max_tokens": 5, **extra}
    if stream:
        body["stream"] = True
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    return body


def error(status: int, message: str, err_type: str, param: str | None = None) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": err_type, "param": param, "code": str(status)}}


def expected_spend(usage: dict) -> float:
    return usage["prompt_tokens"] * INPUT_COST + usage["completion_tokens"] * OUTPUT_COST

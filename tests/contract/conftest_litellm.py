"""Fixtures for the LiteLLM contract tests: the real proxy 1.109.1 without a database, and litellm-sim
with PostgreSQL, both in front of one vllm-sim. Loaded by test_litellm_real.py and
test_litellm_keys_real.py as a plugin.

litellm-sim is run with the harness of its own tests (sim/tests/litellm_harness.py), so that both test
suites drive it the same way.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import litellm_harness as sim_harness  # on pytest's pythonpath (pyproject.toml)
import pytest

CONTRACT_DIR = Path(__file__).resolve().parent

SKIP_ENV = "THORFLEET_SKIP_LITELLM_CONTRACT"
BUILD_TIMEOUT = 30 * 60  # a cold build takes about 75 s here
# The real proxy imports a lot before it listens: about 15 s here.
REAL_START_TIMEOUT = 180
REFUSAL_TIMEOUT = 180
WEAK_MASTER_KEYS = {"unset": None, "empty": "", "sk-1234": "sk-1234"}


@pytest.fixture(scope="session")
def litellm_harness():
    """litellm-sim's test harness: its requests, views of answers and constants."""
    return sim_harness


@pytest.fixture(scope="session")
def litellm_python() -> Path:
    """The venv's python with litellm[proxy]==1.109.1, made once per machine by litellm_venv.sh."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: not running the real LiteLLM proxy")
    try:
        result = subprocess.run(
            ["bash", str(CONTRACT_DIR / "litellm_venv.sh")],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"litellm_venv.sh did not finish in {BUILD_TIMEOUT} s", pytrace=False)
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(
            f"litellm_venv.sh failed ({result.returncode}); set {SKIP_ENV}=1 to skip.\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def litellm_backend(tmp_path_factory) -> Iterator[str]:
    with sim_harness.vllm_backend(tmp_path_factory.mktemp("vllm")) as url:
        yield url


def real_proxy_cmd(litellm_python: Path, config: Path, port: int) -> list[str]:
    return [str(litellm_python.parent / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


def real_proxy_env(**extra: str) -> dict[str, str]:
    # No cost map fetched from the internet, as on an air-gapped unit.
    return sim_harness.proxy_env(LITELLM_LOCAL_MODEL_COST_MAP="True", **extra)


@pytest.fixture(scope="session")
def real_proxy(litellm_python):
    """real_proxy(config, log): a context manager that runs the real proxy without a database on `config` and
    yields its URL."""

    @contextmanager
    def run(config: Path, log: Path) -> Iterator[str]:
        port = sim_harness.free_port()
        url = f"http://127.0.0.1:{port}"
        env = real_proxy_env(LITELLM_MASTER_KEY=sim_harness.MASTER_KEY)
        cmd = real_proxy_cmd(litellm_python, config, port)
        with sim_harness.serving(cmd, env, log, f"{url}/health/liveliness", REAL_START_TIMEOUT):
            yield url

    return run


@pytest.fixture(scope="session")
def litellm_real(real_proxy, litellm_backend, tmp_path_factory) -> Iterator[str]:
    """The real proxy, started without a database; yields its URL."""
    workdir = tmp_path_factory.mktemp("litellm-real")
    config = sim_harness.write_config(workdir / "litellm-config.yaml", litellm_backend)
    with real_proxy(config, workdir / "litellm.log") as url:
        yield url


@pytest.fixture(scope="session")
def litellm_sim_server(litellm_backend, tmp_path_factory) -> Iterator[sim_harness.Sim]:
    """litellm-sim with its database (one for the session: tests use their own key aliases)."""
    workdir = tmp_path_factory.mktemp("litellm-sim")
    with (
        sim_harness.postgres_server() as server,
        sim_harness.database(server) as url,
        sim_harness.litellm_sim(workdir, litellm_backend, url) as running,
    ):
        yield running


@pytest.fixture(scope="session")
def litellm_sim_url(litellm_sim_server) -> str:
    """litellm-sim's URL."""
    return litellm_sim_server.url


@pytest.fixture
def ask(litellm_real, litellm_sim_url):
    """Send one request to both proxies (with the master key unless told); returns {"real": ..., "sim": ...}."""

    def send(method: str, path: str, key: str | None = None, headers: dict | None = None, **kwargs):
        if headers is None:
            headers = sim_harness.auth(key or sim_harness.MASTER_KEY)
        return {
            name: sim_harness.http().request(method, url + path, headers=headers, timeout=120, **kwargs)
            for name, url in (("real", litellm_real), ("sim", litellm_sim_url))
        }

    return send


@dataclass(frozen=True)
class Refusal:
    returncode: int
    stderr: str

    def message(self) -> list[str]:
        """The refusal's headline and the line saying where the key came from."""
        lines = self.stderr.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("LiteLLM proxy refused to start:")]
        assert starts, f"no refusal in:\n{self.stderr[-3000:]}"
        return lines[starts[-1] : starts[-1] + 2]


@pytest.fixture(scope="session")
def litellm_refusals(litellm_python, tmp_path_factory) -> dict[str, dict[str, Refusal]]:
    """How the real proxy and litellm-sim end when started with each weak master key, run side by side."""
    workdir = tmp_path_factory.mktemp("refusals")
    config = sim_harness.write_config(workdir / "litellm-config.yaml", "http://127.0.0.1:9/v1")
    runs = {}
    for name, key in WEAK_MASTER_KEYS.items():
        key_env = {} if key is None else {"LITELLM_MASTER_KEY": key}
        sim_cmd = [*sim_harness.LITELLM_SIM, "--config", str(config), "--port", str(sim_harness.free_port())]
        real_cmd = real_proxy_cmd(litellm_python, config, sim_harness.free_port())
        for proxy, cmd, env in (
            ("real", real_cmd, real_proxy_env(**key_env)),
            ("sim", sim_cmd, sim_harness.sim_env(**key_env)),
        ):
            err = open(workdir / f"{proxy}-{name}.err", "w+b")  # noqa: SIM115 - read back after the process ends
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
            runs[name, proxy] = (proc, err)
    deadline = time.monotonic() + REFUSAL_TIMEOUT
    results: dict[str, dict[str, Refusal]] = {name: {} for name in WEAK_MASTER_KEYS}
    for (name, proxy), (proc, err) in runs.items():
        try:
            proc.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.seek(0)
        results[name][proxy] = Refusal(proc.returncode, err.read().decode(errors="replace"))
        err.close()
    return results

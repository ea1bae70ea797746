"""The router a fleet gateway relies on, side by side: the real LiteLLM proxy 1.109.1 and litellm-sim, each routing one
model name over the same three vllm-sim backends (one per unit), given the same request sequence: requests spread over
every deployment; a backend killed, then back; a backend killed mid-stream; every backend down.

Both run without a database and with one worker, the gateway's router settings (simple-shuffle, retries, allowed_fails
0, a short cooldown, background health checks that steer routing). The tests run in order, on one pair of proxies.
Skipped only with THORFLEET_SKIP_LITELLM_CONTRACT=1.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import time
from pathlib import Path

import pytest
import requests
import yaml

pytest_plugins = ["conftest_litellm"]

GROUP = "fleet-chat"
UNITS = ["thor-01", "thor-02", "thor-03"]
COOLDOWN = 3
HEALTH_INTERVAL = 2


class Backend:
    """One unit's vllm-sim, which a test can kill (SIGKILL, as a crashed vLLM) and start again on its port."""

    def __init__(self, harness, workdir: Path) -> None:
        self.harness = harness
        self.workdir = workdir
        self.command = harness.vllm_server(workdir, harness.free_port())
        self.api_base = self.command[2]
        self.stack: contextlib.ExitStack | None = None
        self.proc = None

    def start(self) -> None:
        cmd, env, base = self.command
        self.stack = contextlib.ExitStack()
        log = self.workdir / "vllm-sim.log"
        self.proc = self.stack.enter_context(self.harness.serving(cmd, env, log, f"{base}/models", 30))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.stack.close()
        self.stack = None

    def close(self) -> None:
        if self.stack is not None:
            self.stack.close()


def router_config(backends: dict[str, Backend]) -> dict:
    """The gateway's model list and router settings, as the collection writes them (one deployment per unit)."""
    return {
        "model_list": [
            {
                "model_name": GROUP,
                "litellm_params": {
                    "model": "openai/tiny-served",
                    "api_base": backend.api_base,
                    "api_key": "os.environ/VLLM_API_KEY",
                },
                "model_info": {"id": unit},
            }
            for unit, backend in backends.items()
        ],
        "router_settings": {
            "routing_strategy": "simple-shuffle",
            "num_retries": 3,
            "allowed_fails": 0,
            "cooldown_time": COOLDOWN,
        },
        "general_settings": {
            "master_key": "os.environ/LITELLM_MASTER_KEY",
            "background_health_checks": True,
            "health_check_interval": HEALTH_INTERVAL,
            "enable_health_check_routing": True,
        },
    }


@pytest.fixture(scope="module")
def backends(litellm_harness, tmp_path_factory):
    started = {unit: Backend(litellm_harness, tmp_path_factory.mktemp(unit)) for unit in UNITS}
    try:
        for backend in started.values():
            backend.start()
        yield started
    finally:
        for backend in started.values():
            backend.close()


@pytest.fixture(scope="module")
def proxies(litellm_harness, real_proxy, backends, tmp_path_factory):
    """{"real": url, "sim": url}, both routing over `backends`."""
    h = litellm_harness
    workdir = tmp_path_factory.mktemp("router")
    config = workdir / "router-config.yaml"
    config.write_text(yaml.safe_dump(router_config(backends)))
    sim_port = h.free_port()
    sim_cmd = [*h.LITELLM_SIM, "--config", str(config), "--host", "127.0.0.1", "--port", str(sim_port)]
    sim_url = f"http://127.0.0.1:{sim_port}"
    with (
        real_proxy(config, workdir / "real.log") as real_url,
        h.serving(
            sim_cmd, h.sim_env(LITELLM_MASTER_KEY=h.MASTER_KEY), workdir / "sim.log", f"{sim_url}/health/liveliness", 30
        ),
    ):
        urls = {"real": real_url, "sim": sim_url}
        for url in urls.values():
            wait_for_health(h, url, set(UNITS), set())
        yield urls


def health(harness, url: str) -> dict:
    return harness.http().get(f"{url}/health", headers=harness.auth(harness.MASTER_KEY), timeout=30).json()


def wait_for_health(harness, url: str, healthy: set[str], unhealthy: set[str], timeout: float = 30) -> dict:
    """The proxy's /health once its background checks see `healthy` and `unhealthy` as such."""
    deadline = time.monotonic() + timeout
    while True:
        found = health(harness, url)
        ids = ({e["model_id"] for e in found.get(k, [])} for k in ("healthy_endpoints", "unhealthy_endpoints"))
        if (set(next(ids)), set(next(ids))) == (healthy, unhealthy):
            return found
        assert time.monotonic() < deadline, f"{url}/health is not {healthy} healthy, {unhealthy} unhealthy: {found}"
        time.sleep(0.5)


def chat(harness, url: str) -> requests.Response:
    body = harness.chat_body(model=GROUP, max_tokens=2)
    return harness.http().post(
        f"{url}/v1/chat/completions", headers=harness.auth(harness.MASTER_KEY), json=body, timeout=60
    )


def served_by(responses: list[requests.Response]) -> collections.Counter:
    return collections.Counter(r.headers.get("x-litellm-model-id") for r in responses)


def test_requests_spread_over_every_deployment(litellm_harness, proxies, backends):
    seen = {}
    for name, url in proxies.items():
        responses = [chat(litellm_harness, url) for _request in range(90)]
        assert [r.status_code for r in responses] == [200] * 90, name
        seen[name] = served_by(responses)
        # Each response names the deployment that answered, and its backend.
        bases = {r.headers["x-litellm-model-id"]: r.headers["x-litellm-model-api-base"] for r in responses}
        assert bases == {unit: backend.api_base for unit, backend in backends.items()}, name
        assert {r.headers["x-litellm-attempted-retries"] for r in responses} == {"0"}, name
    # Each unit takes a fair share (a third of 90 is 30; under 12 is four standard deviations off).
    assert {name: set(counts) for name, counts in seen.items()} == {"real": set(UNITS), "sim": set(UNITS)}
    assert all(count >= 12 for counts in seen.values() for count in counts.values()), seen


def test_a_killed_backend_costs_no_client_an_error_and_is_reported_unhealthy(litellm_harness, proxies, backends):
    backends["thor-02"].kill()
    seen = {}
    for name, url in proxies.items():
        responses = [chat(litellm_harness, url) for _request in range(30)]
        assert [r.status_code for r in responses] == [200] * 30, (name, [r.text for r in responses])
        seen[name] = served_by(responses)
    assert {name: set(counts) for name, counts in seen.items()} == {"real": {"thor-01", "thor-03"}} | {
        "sim": {"thor-01", "thor-03"}
    }
    reports = {
        name: wait_for_health(litellm_harness, url, {"thor-01", "thor-03"}, {"thor-02"})
        for name, url in proxies.items()
    }
    (real,), (sim,) = (report["unhealthy_endpoints"] for report in reports.values())
    assert {k: real[k] for k in ("model_id", "api_base", "model", "exception_status")} == {
        k: sim[k] for k in ("model_id", "api_base", "model", "exception_status")
    }
    assert [set(r["healthy_endpoints"][0]) for r in reports.values()] == [{"model_id", "api_base", "model"}] * 2


def test_a_backend_back_in_service_takes_traffic_again(litellm_harness, proxies, backends):
    backends["thor-02"].start()
    seen = {}
    for name, url in proxies.items():
        wait_for_health(litellm_harness, url, set(UNITS), set())
        time.sleep(COOLDOWN)
        responses = [chat(litellm_harness, url) for _request in range(60)]
        assert [r.status_code for r in responses] == [200] * 60, name
        seen[name] = served_by(responses)
    assert all(counts["thor-02"] >= 6 for counts in seen.values()), seen


def test_a_backend_killed_mid_stream_ends_that_stream_with_an_error_event(litellm_harness, proxies, backends):
    h = litellm_harness
    ends = {}
    for name, url in proxies.items():
        body = h.chat_body(True, model=GROUP, max_tokens=40)
        with h.http().post(
            f"{url}/v1/chat/completions", headers=h.auth(h.MASTER_KEY), json=body, stream=True, timeout=60
        ) as response:
            assert response.status_code == 200
            unit = response.headers["x-litellm-model-id"]
            events = h.stream_events(response)
            first = list(itertools.islice(events, 3))
            backends[unit].kill()
            rest = list(events)
        backends[unit].start()
        assert all(json.loads(e)["choices"] for e in first), first
        assert len(rest) >= 2, (name, first, rest)
        ends[name] = (json.loads(rest[-2]), rest[-1])
    assert ends["real"] == ends["sim"], ends
    assert ends["sim"][0]["error"]["code"] == "500" and ends["sim"][1] == "[DONE]", ends
    for url in proxies.values():
        wait_for_health(h, url, set(UNITS), set())


def test_with_every_backend_down_every_deployment_cools_and_the_answer_is_429(litellm_harness, proxies, backends):
    """The health checks fail too, and cool each deployment at each cycle (allowed_fails 0): whether a request
    meets a dead backend first (500) or finds them all cooling (429) is timing, but a 429 comes within a few."""
    for backend in backends.values():
        backend.kill()
    answers = {}
    for name, url in proxies.items():
        answers[name] = []
        while len(answers[name]) < 5 and not (answers[name] and answers[name][-1].status_code == 429):
            answers[name].append(chat(litellm_harness, url))
    views = {name: {(r.status_code, r.json()["error"]["type"]) for r in found} for name, found in answers.items()}
    assert all(
        view <= {(500, "internal_server_error"), (429, "all_deployments_in_cooldown")} for view in views.values()
    )
    last = {name: found[-1] for name, found in answers.items()}
    assert {name: (r.status_code, r.headers.get("retry-after")) for name, r in last.items()} == {
        "real": (429, str(COOLDOWN)),
        "sim": (429, str(COOLDOWN)),
    }, {name: r.text for name, r in last.items()}
    messages = {name: r.json()["error"]["message"].split(" cooldown_list=")[0] for name, r in last.items()}
    assert messages["real"] == messages["sim"], messages
    for backend in backends.values():
        backend.start()

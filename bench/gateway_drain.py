"""A drain by the router's retries alone, measured (work in progress toward `make bench-gateway`, issue 17).

`python bench/gateway_drain.py real|sim`: the real LiteLLM 1.109.1 proxy (the contract tests' venv) or litellm-sim,
over three vllm-sim backends with the gateway's router settings; four clients send 20-token streams back to back; one
backend gets SIGTERM (vLLM's own drain) after 8 s and is started again 5 s later. Prints, before, during and after the
drain: requests, client errors, retried requests, median and longest time, and which unit served them.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "sim" / "tests"), str(ROOT / "sim"), str(ROOT / "tests")]
import litellm_harness as h  # noqa: E402 - the simulator's test harness, found through the path above

UNITS = ["thor-01", "thor-02", "thor-03"]
REAL = Path.home() / ".cache" / "thorfleet" / "venv-litellm-1.109.1" / "bin" / "litellm"
ROUTER = {"routing_strategy": "simple-shuffle", "num_retries": 3, "allowed_fails": 0, "cooldown_time": 10}
HEALTH = {"background_health_checks": True, "health_check_interval": 5, "enable_health_check_routing": True}


def started(stack: contextlib.ExitStack, cmd: list[str], env: dict, log: Path, ready: str) -> subprocess.Popen:
    return stack.enter_context(h.serving(cmd, env, log, ready, 180))


def main(which: str) -> None:
    work = Path(f"/tmp/thorfleet-gateway-drain/{which}")
    work.mkdir(parents=True, exist_ok=True)
    servers = {}
    for unit in UNITS:
        (work / unit).mkdir(exist_ok=True)
        servers[unit] = h.vllm_server(work / unit, h.free_port())
    config = {
        "model_list": [
            {
                "model_name": "g",
                "litellm_params": {
                    "model": "openai/tiny-served",
                    "api_base": base,
                    "api_key": "os.environ/VLLM_API_KEY",
                },
                "model_info": {"id": unit},
            }
            for unit, (_cmd, _env, base) in servers.items()
        ],
        "router_settings": ROUTER,
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY", **HEALTH},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    port = h.free_port()
    url = f"http://127.0.0.1:{port}"
    proxy = [str(REAL)] if which == "real" else list(h.LITELLM_SIM)
    proxy += ["--config", str(work / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    if which == "real":
        env = h.proxy_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MASTER_KEY=h.MASTER_KEY)
    else:
        env = h.sim_env(LITELLM_MASTER_KEY=h.MASTER_KEY)
    with contextlib.ExitStack() as stack:
        backends = {}

        def start(unit: str) -> None:
            cmd, backend_env, base = servers[unit]
            backend_env = {**backend_env, "THORSIM_VLLM_TOKENS_PER_SECOND": "50"}
            cmd = [*cmd, "--shutdown-timeout", "20"]
            backends[unit] = started(stack, cmd, backend_env, work / f"{unit}.log", f"{base}/models")

        for unit in UNITS:
            start(unit)
        started(stack, proxy, env, work / "proxy.log", f"{url}/health/liveliness")
        time.sleep(6)  # the first health check cycle
        records, stop = [], threading.Event()

        def client() -> None:
            session = h.http()
            body = {"model": "g", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "stream": True}
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    with session.post(
                        f"{url}/v1/chat/completions", headers=h.auth(h.MASTER_KEY), json=body, stream=True, timeout=60
                    ) as r:
                        events = list(h.stream_events(r))
                        ok = (
                            r.status_code == 200
                            and events[-1:] == ["[DONE]"]
                            and not any('"error"' in e for e in events)
                        )
                        served, retried = (
                            r.headers.get("x-litellm-model-id"),
                            r.headers.get("x-litellm-attempted-retries"),
                        )
                except OSError:
                    ok, served, retried = False, None, None
                records.append((t0, time.monotonic() - t0, ok, served, retried))

        clients = [threading.Thread(target=client) for _ in range(4)]
        begun = time.monotonic()
        for thread in clients:
            thread.start()
        time.sleep(8)
        drained = time.monotonic()
        backends["thor-02"].send_signal(signal.SIGTERM)
        backends["thor-02"].wait()
        down = time.monotonic()
        time.sleep(5)
        start("thor-02")
        back = time.monotonic()
        time.sleep(15)
        stop.set()
        for thread in clients:
            thread.join()
    for name, (a, b) in {"before": (begun, drained), "drain": (drained, back), "after": (back, back + 100)}.items():
        found = [r for r in records if a <= r[0] < b]
        times = sorted(r[1] for r in found if r[2])
        served = {unit: sum(1 for r in found if r[3] == unit) for unit in UNITS}
        print(
            f"{which} {name:6} requests {len(found)}, errors {sum(not r[2] for r in found)}, "
            f"retried {sum(1 for r in found if r[4] not in (None, '0'))}, median {statistics.median(times):.3f} s, "
            f"longest {max(times):.3f} s, served by {served}"
            + (f" (vLLM drained in {down - drained:.1f} s)" if name == "drain" else "")
        )


if __name__ == "__main__":
    main(sys.argv[1])

"""make bench-gateway: what the fleet gateway costs a client and what it gives the fleet, side by side in one run.

A fleet of its own (`bench-gateway`): three simulated units, the gateway on thor-01 beside its unit (as the molecule
scenario has it), provisioned by cache.yml and site.yml. Each unit's vLLM runs max_num_seqs 4 (BENCH_SEQS), so that
eight streams fill one unit as a real Thor fills at its batch limit, and the gateway caps each unit at it. Measured
from this machine, each case with 1 and with 8 concurrent clients, every client sending streams of 200 tokens
(vllm-sim decodes 200 tokens/s per sequence) back to back for BENCH_SECONDS:

- direct: the unit's own LiteLLM (plain HTTP, port 12434), as a per-unit client calls it;
- gateway, 1 unit: nginx (HTTPS, verified with the collection's CA), the gateway's LiteLLM, one unit's vLLM
  (site.yml run with -e thorfleet_gateway_units=thor-01);
- gateway, 3 units: the same over all three units (site.yml again, the default).

Prints the median time to first token and the tokens per second each case delivered; the gateway's added latency
(gateway, 1 unit minus direct, 1 client) and the fleet's throughput ratio (gateway 3 units / 1 unit, 8 clients), with
the physical bound: one unit delivers at most max_num_seqs x 200 tokens/s, and 8 clients at most 8 x 200.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import playbook
import yaml

REPO = Path(__file__).resolve().parents[1]
FLEET = REPO / "sim" / "fleet"
NAME = "bench-gateway"
SEQS = int(os.environ.get("BENCH_SEQS", "4"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
TOKENS = 200
RATE = 200  # vllm-sim's tokens/s per sequence
MODEL = "Qwen3-VL-30B-A3B"
SECRETS = yaml.safe_load((REPO / "inventories/sim/group_vars/thor/generated.yml").read_text())


def stream(connect, key: str) -> tuple[float, int] | None:
    """One stream of TOKENS tokens: (seconds to its first token, tokens received), or None when it failed."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "bench"}], "max_tokens": TOKENS, "stream": True}
    conn = connect()
    try:
        started = time.perf_counter()
        conn.request(
            "POST",
            "/v1/chat/completions",
            json.dumps(body),
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        response = conn.getresponse()
        if response.status != 200:
            return None
        first, tokens = None, 0
        for line in response:
            if line.startswith(b"data: {"):
                delta = [c["delta"].get("content") for c in json.loads(line[6:]).get("choices", [])]
                if any(delta):
                    first = first if first is not None else time.perf_counter() - started
                    tokens += 1
        return (first, tokens) if tokens == TOKENS else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def load(connect, key: str, clients: int) -> dict:
    """`clients` threads, each sending streams back to back for SECONDS: TTFT median, tokens/s, failures."""
    results, lock = [], threading.Lock()
    deadline = time.monotonic() + SECONDS

    def client() -> None:
        while time.monotonic() < deadline:
            outcome = stream(connect, key)
            with lock:
                results.append(outcome)

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    done = [r for r in results if r is not None]
    return {
        "streams": len(done),
        "failed": len(results) - len(done),
        "ttft_ms": 1000 * statistics.median(r[0] for r in done),
        "tokens_s": sum(r[1] for r in done) / wall,
    }


def fleet_up(folder: Path) -> dict[str, str]:
    """The fleet, its inventory in `folder` (the sim's group variables, the gateway on thor-01); {unit: address}."""
    (folder / "group_vars").symlink_to(REPO / "inventories" / "sim" / "group_vars")
    up = [str(FLEET), "up", "3", "--fleet", NAME, "--prefix", f"{NAME}-thor", "--ephemeral"]
    subprocess.run([*up, "--inventory", str(folder / "hosts.yml")], check=True, cwd=REPO)
    (folder / "gateway.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"vllm_server_settings": {"max_num_seqs": SEQS}},
                    "children": {"gateway": {"hosts": {"thor-01": None}}},
                }
            }
        )
    )
    hosts = yaml.safe_load((folder / "hosts.yml").read_text())["all"]["children"]["thor"]["hosts"]
    return {unit: values["ansible_host"] for unit, values in hosts.items()}


def main() -> None:
    key = SECRETS["litellm_proxy_master_key"]
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as tmp:
        folder = Path(tmp)
        addresses = fleet_up(folder)
        try:
            inventory = ("-i", str(folder))
            seconds, _ = playbook.timed(*inventory, str(REPO / "playbooks" / "cache.yml"))
            print(f"cache.yml {seconds:.1f} s", flush=True)
            site = str(REPO / "playbooks" / "site.yml")
            seconds, _ = playbook.timed(*inventory, site, "-e", "thorfleet_gateway_units=thor-01")
            print(f"site.yml, the gateway routing to thor-01 alone: {seconds:.1f} s", flush=True)
            ca = ssl.create_default_context(cafile=str(Path(f"{tmp}.artifacts") / "ca" / "ca.crt"))
            gateway = partial(http.client.HTTPSConnection, addresses["thor-01"], 443, timeout=120, context=ca)
            direct = partial(http.client.HTTPConnection, addresses["thor-01"], 12434, timeout=120)
            rows = []
            for clients in (1, 8):
                rows.append(("direct to thor-01", clients, load(direct, key, clients)))
                rows.append(("gateway -> 1 unit", clients, load(gateway, key, clients)))
            seconds, _ = playbook.timed(*inventory, site)
            print(f"site.yml, the gateway routing to all three units: {seconds:.1f} s", flush=True)
            for clients in (1, 8):
                rows.append(("gateway -> 3 units", clients, load(gateway, key, clients)))
        finally:
            subprocess.run([str(FLEET), "down", "--fleet", NAME], check=True, cwd=REPO, capture_output=True)
            subprocess.run(["rm", "-rf", f"{tmp}.artifacts"], check=True)
    print(f"\nStreams of {TOKENS} tokens for {SECONDS:.0f} s per case; vLLM max_num_seqs {SEQS} per unit,")
    print(f"{RATE} tokens/s per sequence: one unit delivers at most {SEQS * RATE} tokens/s, 8 clients {8 * RATE}.")
    header = ("case", "clients", "streams", "failed", "TTFT median ms", "tokens/s")
    print("  ".join(f"{h:>18}" for h in header))
    for case, clients, r in rows:
        cells = (case, clients, r["streams"], r["failed"], f"{r['ttft_ms']:.1f}", f"{r['tokens_s']:.0f}")
        print("  ".join(f"{c!s:>18}" for c in cells))
    by = {(case, clients): r for case, clients, r in rows}
    added = by[("gateway -> 1 unit", 1)]["ttft_ms"] - by[("direct to thor-01", 1)]["ttft_ms"]
    ratio = by[("gateway -> 3 units", 8)]["tokens_s"] / by[("gateway -> 1 unit", 8)]["tokens_s"]
    bound = min(8, 3 * SEQS) / min(8, SEQS)
    print(f"\nthe gateway's added latency (TTFT, 1 client, through nginx and the gateway's LiteLLM): {added:+.1f} ms")
    print(f"the fleet's throughput, 8 clients, 3 units / 1 unit: {ratio:.2f}")
    filled = min(8, 3 * SEQS)
    print(f"  (bound {bound:.2f}: 8 clients fill 1 unit's {SEQS} sequences and {filled} of 3 units' {3 * SEQS})")


if __name__ == "__main__":
    sys.exit(main())

"""make bench-cache: the model cache's three strategies against one copy's time, on 8 and 16 simulated units whose
links are all shaped to the same rate in both directions.

Every unit's eth0 and the cache source's are limited by tc to the same rate: egress by tbf, ingress by tbf on an ifb
device that eth0's ingress is redirected to (a swarm downloads from many peers at once; shaped on egress only, a
unit would receive from each at the full rate). A check first: one unit pulling from two hosts at once stays at the
rate. The same cache (sharded weights in the hub layout plus a compile cache) is copied:

- T1: one unit from the source, the floor for one link (bytes x 8 / rate is the physical floor);
- star: every unit from the source at once (`model_cache_strategy=star`, concurrency = units);
- tree: the cascade (`model_cache_strategy=tree`, concurrency 1);
- torrent: the private swarm (`model_cache_strategy=torrent`).

Between runs the units' copies are removed and their page caches dropped. Times are the role's own (`seconds` of its
JSON report: from the copy's first task to the last unit verified, so that every strategy's verification counts);
the playbook's wall time is printed beside them. The 60-unit projection scales the measured ratios to 122 GB on 1
and 10 GbE. Settings: BENCH_UNITS ("8 16"), BENCH_STAR ("8": the sizes star runs at; elsewhere it is N x T1, one
source link carrying every copy), BENCH_MB (400: T1 about 55 s against a floor of 44; at 800 Ansible's fixed
costs fall to about a tenth of T1, and the run takes twice as long), BENCH_RATE (80mbit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import playbook

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "sim"), str(REPO / ".collections")]

from ansible_collections.thorfleet.llm.plugins.filter.cascade import cascade_rounds  # noqa: E402
from thorsim import fleet as fleet_mod  # noqa: E402

FLEET = fleet_mod.Fleet("bench-cache", "bench-cache-thor", ephemeral=True)
SIZES = sorted(int(n) for n in os.environ.get("BENCH_UNITS", "8 16").split())
STAR_SIZES = {int(n) for n in os.environ.get("BENCH_STAR", "8").split()}
MB = int(os.environ.get("BENCH_MB", "400"))
RATE = os.environ.get("BENCH_RATE", "80mbit")
PROJECT_UNITS, PROJECT_BYTES = 60, 122e9
TBF = ["tbf", "rate", RATE, "burst", "64kb", "latency", "50ms"]
SHAPE = [
    ["tc", "qdisc", "replace", "dev", "eth0", "root", *TBF],
    ["sh", "-c", "ip link show ifb0 >/dev/null 2>&1 || ip link add ifb0 type ifb"],
    ["ip", "link", "set", "ifb0", "up"],
    ["tc", "qdisc", "replace", "dev", "eth0", "handle", "ffff:", "ingress"],
    ["sh", "-c", "tc filter del dev eth0 parent ffff: 2>/dev/null; true"],
    ["tc", "filter", "add", "dev", "eth0", "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
     "action", "mirred", "egress", "redirect", "dev", "ifb0"],
    ["tc", "qdisc", "replace", "dev", "ifb0", "root", *TBF],
]  # fmt: skip
CLEAR = "rm -rf /opt/thorfleet/data /var/lib/thorfleet/model_cache && sync && sysctl -qw vm.drop_caches=3"
# Run in a unit: fetch each URL at once for a while; print the bytes all of them brought, and the seconds.
PULLS = """
import sys, threading, time, urllib.request
urls, got = sys.argv[1:-1], []
end = time.monotonic() + float(sys.argv[-1])
def pull(url):
    with urllib.request.urlopen(url) as r:
        while time.monotonic() < end and (chunk := r.read(65536)):
            got.append(len(chunk))
started = time.monotonic()
threads = [threading.Thread(target=pull, args=(url,)) for url in urls]
[t.start() for t in threads]
[t.join() for t in threads]
print(sum(got), time.monotonic() - started)
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, cwd=REPO)


def exec_in(container, command: list[str], **kwargs) -> str:
    code, out = container.exec_run(command, **kwargs)
    if code not in (0, None):
        raise SystemExit(f"{container.name}: {' '.join(command)} failed: {out.decode()[-300:]}")
    return out.decode() if out else ""


def rate_bytes() -> float:
    value = RATE.lower().removesuffix("bit")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(value[-1], 1)
    return float(value.rstrip("kmg")) * scale / 8


def copy(client, inventory: Path, units: int, *extra: str) -> tuple[dict, float]:
    """Clear the first `units` units' copies, run cache.yml on them; return its report and wall time."""
    for name in FLEET.unit_names(units):
        exec_in(client.containers.get(name), ["sh", "-c", CLEAR])
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        wall, _ = playbook.timed(
            "-i",
            str(inventory),
            "playbooks/cache.yml",
            "-e",
            f"model_cache_report_file={report}",
            "-e",
            f"thorfleet_hosts=thor[0:{units - 1}]",
            *extra,
            env={"ANSIBLE_FORKS": str(units + 4)},
        )
        result = json.loads(report.read_text())
    if result["unfilled"] or result["units"] != units:
        raise SystemExit(f"{units} units asked, {result['units']} in the play, unfilled: {result['unfilled']}")
    return result, wall


def two_sources(client) -> tuple[float, float]:
    """thor-02 pulls a large file from the source and another from thor-01 at once: (MB/s of both, MB/s of one)."""
    server = ["python3", "-m", "http.server", "8099", "--directory"]
    pairs = [(FLEET.source, fleet_mod.SOURCE_MOUNT), (FLEET.unit_names(1)[0], "/opt/thorfleet")]
    urls = []
    for name, root in pairs:
        container = client.containers.get(name)
        big = exec_in(container, ["sh", "-c", f"cd {root} && find . -type f -size +20M | sort | head -2"]).split()
        exec_in(container, [*server, root], detach=True)
        address = container.attrs["NetworkSettings"]["Networks"][FLEET.network]["IPAddress"]
        urls.append(f"http://{address}:8099/{big[len(urls)]}")
    time.sleep(1)
    puller = client.containers.get(FLEET.unit_names(2)[1])
    rates = []
    for pulled in (urls, urls[:1]):
        got, seconds = exec_in(puller, ["python3", "-c", PULLS, *pulled, "10"]).split()
        rates.append(float(got) / float(seconds) / 1e6)
    for name, _root in pairs:
        exec_in(client.containers.get(name), ["pkill", "-f", "http.server 8099"])
    return rates[0], rates[1]


def main() -> int:
    client = docker.from_env(timeout=300)
    inventory = FLEET.default_inventory
    largest = SIZES[-1]
    sh("sim/fleet", "up", str(largest), "--fleet", FLEET.name, "--prefix", FLEET.prefix, "--ephemeral")
    sh("sim/fleet", "cache", "--fleet", FLEET.name, "--weights-mb", str(MB))
    for name in [*FLEET.unit_names(largest), FLEET.source]:
        for command in SHAPE:
            exec_in(client.containers.get(name), command)

    one, one_wall = copy(client, inventory, 1)
    t1 = one["seconds"]
    both, single = two_sources(client)
    floor = one["bytes"] / rate_bytes()
    rows, walls = {}, {}
    for units in SIZES:
        runs = {}
        if units in STAR_SIZES:
            runs["star"] = copy(client, inventory, units, "-e", "model_cache_strategy=star", "-e",
                                f"model_cache_concurrency={units}")  # fmt: skip
        runs["tree"] = copy(client, inventory, units, "-e", "model_cache_strategy=tree")
        runs["torrent"] = copy(client, inventory, units, "-e", "model_cache_strategy=torrent")
        rows[units] = {label: report for label, (report, _wall) in runs.items()}
        walls[units] = {label: wall for label, (_report, wall) in runs.items()}

    mb_s = rate_bytes() / 1e6
    print(
        f"\nmodel cache: {one['bytes']:,} bytes in {one['files']} files; every link shaped to {RATE} ({mb_s:.1f} MB/s)"
    )
    print(f"both directions: one unit pulling from two hosts at once took {both:.1f} MB/s, from one {single:.1f} MB/s")
    print(
        f"T1 (one unit from the source) {t1:.1f} s, playbook {one_wall:.1f} s; physical floor bytes/rate {floor:.1f} s"
    )
    print(f"{'N':>3} {'T1 s':>7} {'star s':>8} {'tree s':>8} {'rounds':>6} {'torrent s':>9}"
          f" {'star/torrent':>12} {'tree/torrent':>12} {'torrent/T1':>10} {'tree/(rounds x T1)':>18}")  # fmt: skip
    for units, runs in rows.items():
        star = runs["star"]["seconds"] if "star" in runs else units * t1
        tree, torrent = runs["tree"]["seconds"], runs["torrent"]["seconds"]
        rounds = len(runs["tree"]["rounds"])
        star_text = f"{star:8.1f}" if "star" in runs else f"{'(' + format(star, '.0f') + ')':>8}"
        print(f"{units:3d} {t1:7.1f} {star_text} {tree:8.1f} {rounds:6d} {torrent:9.1f} {star / torrent:12.2f}"
              f" {tree / torrent:12.2f} {torrent / t1:10.2f} {tree / (rounds * t1):18.2f}")  # fmt: skip
    print("  (star in brackets: not run at that size; N x T1, the source's one link carrying every copy)")
    for units, runs in rows.items():
        swarm = runs["torrent"]["swarm"].values()
        source = sum(u["from_source"] for u in swarm) / 1e6
        peers = sum(u["from_peers"] for u in swarm) / 1e6
        # The download alone (first poll to the last unit complete), beside the role's whole copy: the rest is the
        # tasks around it (aria2's settings and service, stop, links, verification), each run on every unit at once.
        download = max(u["seconds"] for u in swarm)
        print(
            f"  torrent N={units}: the download alone {download:.1f} s ({download / t1:.2f} x T1), the tasks around it"
            f" {runs['torrent']['seconds'] - download:.1f} s; {source:.0f} MB from the source, {peers:.0f} MB between"
            f" units; playbook s: " + ", ".join(f"{k} {v:.1f}" for k, v in walls[units].items())
        )
        for r in runs["tree"]["rounds"]:
            print(f"  tree N={units} {r['text']}")

    eight, top = rows[SIZES[0]], rows[SIZES[-1]]
    goals = [
        (f"torrent <= 1.5 x T1 at {SIZES[0]} units", eight["torrent"]["seconds"] / t1, 1.5, "<="),
        (f"tree/torrent >= 2.5 at {SIZES[0]} units", eight["tree"]["seconds"] / eight["torrent"]["seconds"], 2.5, ">="),
        (f"tree <= 1.3 x rounds x T1 at {SIZES[0]} units",
         eight["tree"]["seconds"] / (len(eight["tree"]["rounds"]) * t1), 1.3, "<="),
    ]  # fmt: skip
    if len(SIZES) > 1:
        scale = top["torrent"]["seconds"] / eight["torrent"]["seconds"]
        goals.append((f"torrent({SIZES[-1]})/torrent({SIZES[0]}) <= 1.2", scale, 1.2, "<="))
    for text, value, bound, sense in goals:
        met = value <= bound if sense == "<=" else value >= bound
        print(f"goal {text}: {value:.2f} {'met' if met else 'NOT met'}")

    # 60 units x 122 GB: one copy's time at the link rate, scaled by how far the measured T1 was from its floor; the
    # swarm at its largest measured torrent/T1, the tree at its measured time per round, star at N x T1.
    torrent_ratio = top["torrent"]["seconds"] / t1
    per_round = top["tree"]["seconds"] / len(top["tree"]["rounds"]) / t1
    rounds_60 = cascade_rounds(PROJECT_UNITS)
    for label, link in (("1 GbE", 1e9 / 8), ("10 GbE", 1e10 / 8)):
        t1_60 = PROJECT_BYTES / link * (t1 / floor)
        star_h, tree_h = PROJECT_UNITS * t1_60 / 3600, rounds_60 * per_round * t1_60 / 3600
        print(
            f"projection {PROJECT_UNITS} units x 122 GB on {label}: T1 {t1_60 / 60:.0f} min; star {star_h:.1f} h;"
            f" tree {rounds_60} rounds {tree_h:.1f} h; torrent {torrent_ratio * t1_60 / 60:.0f} min"
        )
    print("  (10 GbE assumes the disks and the hashing keep up with 1.25 GB/s, which the simulator cannot show)")
    print(f"remove the bench fleet: sim/fleet down --fleet {FLEET.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""make bench-cache: the model cache cascade against one source, on eight simulated units with shaped links.

Every unit's eth0 and the cache source's are limited by tc tbf to the same rate (egress, so each sender's
link is the bottleneck). The same cache (sharded weights in the hub layout plus a compile cache) is copied:

- T1: one unit from the source (`thorfleet_hosts` = one unit), the floor for one link;
- star: every unit from the source at once (`model_cache_strategy=star`, concurrency = units);
- tree: the cascade (`model_cache_strategy=tree`, concurrency 1).

Between runs the units' copies are removed. Times are the role's own round times (plan to report: the copy,
its verification and Ansible's scheduling of it) from its JSON report; the playbook's wall time is printed
beside them. The 60-unit projection takes the measured mean tree round time times the rounds a 60-unit
tree needs, and T1 x 60 for star, whose one source link carries every copy.
Settings: BENCH_UNITS (8), BENCH_MB (96), BENCH_RATE (80mbit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import playbook

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "sim"), str(REPO / ".collections")]

from ansible_collections.thorfleet.llm.plugins.filter.cascade import cascade_rounds  # noqa: E402
from thorsim import fleet as fleet_mod  # noqa: E402

FLEET = fleet_mod.Fleet("bench-cache", "bench-cache-thor", ephemeral=True)
UNITS = int(os.environ.get("BENCH_UNITS", "8"))
MB = int(os.environ.get("BENCH_MB", "96"))
RATE = os.environ.get("BENCH_RATE", "80mbit")
PROJECT_UNITS = 60
SHAPE = ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", RATE, "burst", "64kb", "latency", "50ms"]
CLEAR = "rm -rf /opt/thorfleet/data /var/lib/thorfleet/model_cache && sync && sysctl -qw vm.drop_caches=3"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, cwd=REPO)


def exec_in(container, command: list[str]) -> None:
    code, out = container.exec_run(command)
    if code != 0:
        raise SystemExit(f"{container.name}: {' '.join(command)} failed: {out.decode()[-300:]}")


def copy(client, inventory: Path, *extra: str) -> tuple[dict, float]:
    """Clear every unit's copy, run cache.yml; return its report and wall time."""
    for name in FLEET.unit_names(UNITS):
        exec_in(client.containers.get(name), ["sh", "-c", CLEAR])
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        wall, _ = playbook.timed(
            "-i",
            str(inventory),
            "playbooks/cache.yml",
            "-e",
            f"model_cache_report_file={report}",
            *extra,
            env={"ANSIBLE_FORKS": str(UNITS + 4)},
        )
        result = json.loads(report.read_text())
    if result["unfilled"]:
        raise SystemExit(f"unfilled units: {result['unfilled']}")
    return result, wall


def copy_seconds(report: dict) -> float:
    return sum(r["seconds"] for r in report["rounds"])


def main() -> int:
    client = docker.from_env(timeout=300)
    inventory = FLEET.default_inventory
    sh("sim/fleet", "up", str(UNITS), "--fleet", FLEET.name, "--prefix", FLEET.prefix, "--ephemeral")
    sh("sim/fleet", "cache", "--fleet", FLEET.name, "--weights-mb", str(MB))
    for name in [*FLEET.unit_names(UNITS), FLEET.source]:
        exec_in(client.containers.get(name), SHAPE)
    one, one_wall = copy(client, inventory, "-e", "thorfleet_hosts=thor-01")
    star, star_wall = copy(
        client, inventory, "-e", "model_cache_strategy=star", "-e", f"model_cache_concurrency={UNITS}"
    )
    tree, tree_wall = copy(client, inventory, "-e", "model_cache_strategy=tree")
    t1, t_star, t_tree = copy_seconds(one), copy_seconds(star), copy_seconds(tree)
    per_round = t_tree / len(tree["rounds"])
    rounds_60 = cascade_rounds(PROJECT_UNITS)

    print(f"\nmodel cache: N={UNITS} units, {tree['bytes']:,} bytes in {tree['files']} files, every link tbf {RATE}")
    print(f"{'':8}{'copy s':>9}{'rounds':>8}{'playbook s':>12}{'moved MB':>10}")
    for label, report, seconds, wall in (
        ("T1", one, t1, one_wall),
        ("star", star, t_star, star_wall),
        ("tree", tree, t_tree, tree_wall),
    ):
        moved = sum(r["bytes"] for r in report["rounds"]) / 1e6
        print(f"{label:8}{seconds:9.1f}{len(report['rounds']):8d}{wall:12.1f}{moved:10.1f}")
    print(f"star/tree = {t_star / t_tree:.2f}    tree/T1 = {t_tree / t1:.2f}")
    for r in tree["rounds"]:
        print(f"  tree {r['text']}")
    tree_60, star_60 = rounds_60 * per_round, PROJECT_UNITS * t1
    print(
        f"projection for {PROJECT_UNITS} units: tree {rounds_60} rounds x {per_round:.1f} s = {tree_60:.0f} s;"
        f" star {PROJECT_UNITS} x T1 = {star_60:.0f} s; star/tree = {star_60 / tree_60:.1f}"
    )
    print(f"remove the bench fleet: sim/fleet down --fleet {FLEET.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

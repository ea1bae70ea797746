"""make bench-converge: wall time of a no-op site.yml on 1, 2, 4 and 8 simulated units.

For each size: a fleet of its own (`bench-converge-N`), one full converge, then BENCH_RUNS timed no-op runs
of site.yml (nothing to change: what a drift-healing re-run costs on a healthy fleet). The fleet is removed
before the next size, so that sizes do not share the machine. Prints every run, the best per size, and the
ratio of each size's best to one unit's; the goal is 8 units within 1.5 times one unit.

BENCH_UNITS="1 2 4 8" and BENCH_RUNS=2 override the sizes and runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import playbook

REPO = Path(__file__).resolve().parents[1]
FLEET = REPO / "sim" / "fleet"
SIZES = [int(n) for n in os.environ.get("BENCH_UNITS", "1 2 4 8").split()]
RUNS = int(os.environ.get("BENCH_RUNS", "2"))
GOAL = 1.5
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def site(inventory: Path) -> tuple[float, str]:
    """Run site.yml; return (seconds, output). Fails the benchmark when the run fails."""
    return playbook.timed("-i", str(inventory), str(REPO / "playbooks" / "site.yml"))


def changed(output: str) -> int:
    return sum(int(m[2]) for m in RECAP.finditer(output))


def measure(units: int) -> dict:
    fleet = f"bench-converge-{units}"
    with tempfile.TemporaryDirectory(prefix=f"{fleet}-") as tmp:
        inventory = Path(tmp) / "hosts.yml"
        # The simulated fleet's variables, as every sim inventory has them.
        (Path(tmp) / "group_vars").symlink_to(REPO / "inventories" / "sim" / "group_vars")
        up = [str(FLEET), "up", str(units), "--fleet", fleet, "--prefix", f"{fleet}-thor", "--ephemeral"]
        subprocess.run([*up, "--inventory", str(inventory)], check=True, cwd=REPO)
        try:
            full, _ = site(inventory)
            print(f"  {units} unit(s): full converge {full:.1f} s", flush=True)
            noop = []
            for _ in range(RUNS):
                seconds, output = site(inventory)
                if changed(output):
                    sys.exit(f"a no-op site.yml changed something on {fleet}:\n{output[-3000:]}")
                noop.append(seconds)
                print(f"  {units} unit(s): no-op run {seconds:.1f} s", flush=True)
        finally:
            subprocess.run([str(FLEET), "down", "--fleet", fleet], check=True, cwd=REPO, capture_output=True)
    return {"units": units, "full": full, "noop": noop}


def main() -> None:
    sizes = ", ".join(map(str, SIZES))
    print(f"No-op site.yml on {sizes} simulated units ({RUNS} timed runs each), {os.cpu_count()} CPUs")
    results = [measure(units) for units in SIZES]
    base = min(results[0]["noop"])
    print()
    print(f"{'units':>5}  {'full converge s':>15}  {'no-op runs s':>20}  {'best no-op s':>12}  {'x 1st size':>10}")
    for r in results:
        best = min(r["noop"])
        runs = " ".join(f"{s:.1f}" for s in r["noop"])
        print(f"{r['units']:>5}  {r['full']:>15.1f}  {runs:>20}  {best:>12.1f}  {best / base:>10.2f}")
    last = results[-1]
    ratio = min(last["noop"]) / base
    verdict = "within" if ratio <= GOAL else "OVER"
    print(f"\n{last['units']} units / {results[0]['units']} unit(s): {ratio:.2f} ({verdict} the goal of {GOAL})")


if __name__ == "__main__":
    main()

"""make bench-converge: wall time of a no-op site.yml on 1, 2, 4 and 8 simulated units.

For each size: a fleet of its own (`bench-converge-N`), one full converge, then BENCH_RUNS timed no-op runs
of site.yml (nothing to change: what a drift-healing re-run costs on a healthy fleet). The fleet is removed
before the next size, so that sizes do not share the machine. Prints every run, the best per size, and the
ratio of each size's best to one unit's; the goal is 8 units within 1.5 times one unit.

Every simulated unit runs its modules on this machine's CPUs, where real units have CPUs of their own. So
each run also reports the CPU seconds the controller (ansible-playbook and its workers) and the units (their
containers' cgroups) spent, the controller's per unit (what each unit of a fleet costs it), and the floor
those set on this machine: (controller + units) / CPUs. Where the floor is above one unit's wall time, the
machine, not the playbooks, bounds the ratio.

BENCH_UNITS="1 2 4 8" and BENCH_RUNS=2 override the sizes and runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import playbook

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "sim")]
from thorsim import LABEL_FLEET  # noqa: E402 - found through the path set just above

FLEET = REPO / "sim" / "fleet"
SIZES = [int(n) for n in os.environ.get("BENCH_UNITS", "1 2 4 8").split()]
RUNS = int(os.environ.get("BENCH_RUNS", "2"))
GOAL = 1.5
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


# cgroup v1 (this machine's Docker) and v2 places of a container's CPU time.
CGROUP_CPU = (
    ("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage", 1e-9),
    ("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat", 1e-6),
)


def units_cpu(fleet: str) -> float:
    """CPU seconds the fleet's containers (units and cache source) have used so far."""
    total = 0.0
    for container in docker.from_env().containers.list(filters={"label": f"{LABEL_FLEET}={fleet}"}):
        for template, scale in CGROUP_CPU:
            path = Path(template.format(id=container.id))
            if path.exists():
                text = path.read_text()
                # v2's cpu.stat starts with "usage_usec N"; v1's cpuacct.usage is the number alone.
                total += int(text.split()[1] if text.startswith("usage_usec") else text) * scale
                break
    return total


def site(inventory: Path, fleet: str) -> tuple[float, str, float, float]:
    """Run site.yml: (seconds, output, controller CPU s, units' CPU s). Fails the benchmark when the run fails."""
    before, units_before = os.times(), units_cpu(fleet)
    seconds, output = playbook.timed("-i", str(inventory), str(REPO / "playbooks" / "site.yml"))
    after = os.times()
    controller = after.children_user + after.children_system - before.children_user - before.children_system
    return seconds, output, controller, units_cpu(fleet) - units_before


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
            full = site(inventory, fleet)[0]
            print(f"  {units} unit(s): full converge {full:.1f} s", flush=True)
            noop, cpu = [], []
            for _ in range(RUNS):
                seconds, output, controller, unit_cpu = site(inventory, fleet)
                if changed(output):
                    sys.exit(f"a no-op site.yml changed something on {fleet}:\n{output[-3000:]}")
                noop.append(seconds)
                cpu.append((controller, unit_cpu))
                print(
                    f"  {units} unit(s): no-op run {seconds:.1f} s; CPU s: controller {controller:.1f}, "
                    f"units {unit_cpu:.1f}",
                    flush=True,
                )
        finally:
            subprocess.run([str(FLEET), "down", "--fleet", fleet], check=True, cwd=REPO, capture_output=True)
    best = noop.index(min(noop))
    return {"units": units, "full": full, "noop": noop, "cpu": cpu[best]}


def main() -> None:
    sizes = ", ".join(map(str, SIZES))
    print(f"No-op site.yml on {sizes} simulated units ({RUNS} timed runs each), {os.cpu_count()} CPUs")
    results = [measure(units) for units in SIZES]
    base = min(results[0]["noop"])
    cpus = os.cpu_count() or 1
    print()
    header = ("units", "full converge s", "no-op runs s", "best no-op s", "x 1st size", "controller CPU s")
    header += ("controller CPU s / unit", "units CPU s", f"CPU floor s ({cpus} CPUs)")
    print("  ".join(f"{h:>{max(len(h), 10)}}" for h in header))
    for r in results:
        best = min(r["noop"])
        runs = " ".join(f"{s:.1f}" for s in r["noop"])
        controller, unit_cpu = r["cpu"]
        cells = (r["units"], f"{r['full']:.1f}", runs, f"{best:.1f}", f"{best / base:.2f}", f"{controller:.1f}")
        cells += (f"{controller / r['units']:.1f}", f"{unit_cpu:.1f}", f"{(controller + unit_cpu) / cpus:.1f}")
        print("  ".join(f"{c:>{max(len(h), 10)}}" for c, h in zip(cells, header, strict=True)))
    last = results[-1]
    ratio = min(last["noop"]) / base
    floor = sum(last["cpu"]) / cpus
    verdict = "within" if ratio <= GOAL else "OVER"
    print(f"\n{last['units']} units / {results[0]['units']} unit(s): {ratio:.2f} ({verdict} the goal of {GOAL})")
    print(
        f"This machine's CPUs alone need {floor:.1f} s for the {last['units']}-unit run's work "
        f"({floor / base:.2f} x one unit's wall time): the ratio cannot be below that here."
    )


if __name__ == "__main__":
    main()

"""Run every molecule scenario (or those named) and scan all each one printed for the scenario's secrets.

What is scanned: molecule's own output (create, converge, idempotence, verify, destroy) and every playbook run that
a verifier makes through tests/scenario.py (bad-input cases included), whose output pytest captures and would
otherwise never show. The secrets: the simulated fleet's generated ones (master and salt keys, database password,
metrics token, Open WebUI secret) and every raw key issued, read from the scenario's key stores before its fleet is
destroyed. A hit names the secret, the log and the line, never the value. Prints a table of times at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "inventories/sim/group_vars/thor/generated.yml"
ARTEFACTS = REPO / "tests/artefacts/scenarios"
# What sim/fleet generates that is no secret.
NOT_SECRET = {"container_images_archive_dir"}
# Secrets shorter than this are no real secrets and would match by chance.
SHORTEST = 16


def scenarios() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def secrets(ephemeral: Path) -> dict[str, str]:
    """{name: value} of every secret the scenario had: the generated ones and each raw key in its key stores."""
    found = {}
    generated = yaml.safe_load(GENERATED.read_text(encoding="utf-8")) if GENERATED.exists() else {}
    for name, value in (generated or {}).items():
        if name not in NOT_SECRET:
            found[name] = str(value)
    for store in sorted(ephemeral.rglob("raw-keys.yml")):
        for alias, key in (yaml.safe_load(store.read_text(encoding="utf-8")) or {}).items():
            found[f"raw key {alias} ({store.relative_to(ephemeral)})"] = str(key)
    short = [name for name, value in found.items() if len(value) < SHORTEST]
    if short:
        raise SystemExit(f"secrets too short to scan for without false hits: {', '.join(short)}")
    return found


def scan(logs: list[Path], found: dict[str, str]) -> list[str]:
    """Where each secret appears: 'NAME in LOG line N', never the value."""
    hits = []
    for log in logs:
        if not log.exists():
            continue
        for number, line in enumerate(log.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            hits += [
                f"{name} in {log.relative_to(REPO)} line {number}" for name, value in found.items() if value in line
            ]
    return hits


def run(argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Run `argv`, its output both shown and written to `log`."""
    with log.open("a", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        for line in proc.stdout:
            sys.stdout.write(line)
            out.write(line)
        sys.stdout.flush()
        return proc.wait()


def one(scenario: str) -> tuple[int, dict[str, str], list[str]]:
    """molecule test of `scenario`, destroyed only after its key stores have been read (`--destroy never` skips the
    sequence's first destroy too, so it runs here first); (exit code, the secrets scanned for, where they appear)."""
    folder = ARTEFACTS / scenario
    ephemeral = folder / "ephemeral"
    folder.mkdir(parents=True, exist_ok=True)
    logs = [folder / "molecule.log", folder / "playbooks.log"]
    for log in logs:
        log.unlink(missing_ok=True)
    env = {**os.environ, "MOLECULE_EPHEMERAL_DIRECTORY": str(ephemeral), "THORFLEET_PLAYBOOK_LOG": str(logs[1])}
    # Each test's time in molecule.log: where a scenario's minutes go, for keeping the suite in its budget.
    env["PYTEST_ADDOPTS"] = f"{env.get('PYTEST_ADDOPTS', '')} --durations=0".strip()
    try:
        rc = run(["molecule", "destroy", "-s", scenario], logs[0], env)
        rc = rc or run(["molecule", "test", "-s", scenario, "--destroy", "never"], logs[0], env)
        found = secrets(ephemeral)
    finally:
        destroyed = run(["molecule", "destroy", "-s", scenario], logs[0], env)
    return rc or destroyed, found, scan(logs, found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="*", help="scenarios to run (default: all, in name order)")
    parser.add_argument("--keep-going", action="store_true", help="run the next scenarios after one fails")
    args = parser.parse_args()
    names = args.scenario or scenarios()
    rows, failed = [], False
    for scenario in names:
        start = time.monotonic()
        rc, found, hits = one(scenario)
        seconds = time.monotonic() - start
        verdict = "secret printed" if hits else ("passed" if rc == 0 else f"failed (exit {rc})")
        issued = sum(name.startswith("raw key ") for name in found)
        rows.append((scenario, verdict, seconds, f"{len(found) - issued} + {issued} raw keys", len(hits)))
        for hit in hits:
            print(f"SECRET PRINTED: scenario {scenario}: {hit}", file=sys.stderr)
        if rc or hits:
            failed = True
            if not args.keep_going:
                break
    print("\n| scenario | result | seconds | secrets scanned for | secrets printed |")
    print("| --- | --- | ---: | --- | ---: |")
    for scenario, verdict, seconds, scanned, count in rows:
        print(f"| {scenario} | {verdict} | {seconds:.0f} | {scanned} | {count} |")
    total = sum(row[2] for row in rows)
    print(f"| total | {'failed' if failed else 'passed'} | {total:.0f} | | {sum(row[4] for row in rows)} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

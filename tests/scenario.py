"""For molecule verifiers: run the collection's playbooks against the scenario's own inventory."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import docker

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[1]))
# Terminal colour and style sequences (CSI ... m) and hyperlinks (OSC 8).
ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b\x07]*(?:\x1b\\|\x07)")


def plain(text: str) -> str:
    """`text` without colour codes: molecule forces colour on everything it starts unless told otherwise."""
    return ANSI.sub("", text)


def _run(name: str, args, env) -> tuple[list[str], dict[str, str], str]:
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / ".collections"),
        # molecule exports ANSIBLE_FORCE_COLOR, which outranks ANSIBLE_NOCOLOR.
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        **(env or {}),
    }
    target = name if name.endswith(".yml") else f"thorfleet.llm.{name}"
    return ["ansible-playbook", target, "-i", str(inventory), *args], env, target


def playbook(name: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run thorfleet.llm.<name> (or a playbook file, when `name` ends in .yml) with `args` and extra `env`;
    return (exit code, stdout and stderr together, without colour)."""
    argv, env, target = _run(name, args, env)
    run = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=PROJECT)
    output = plain(run.stdout + run.stderr)
    # tests/scenarios.py scans this for the scenario's secrets.
    _log(f"$ ansible-playbook {target} {shlex.join(args)}\n{output}\n")
    return run.returncode, output


def playbook_cut(name: str, *args: str, when, timeout: float = 300) -> str:
    """Run as playbook() does, and kill the controller's whole run (SIGKILL, as a lost laptop) as soon as `when()`
    is true; return what it printed. Fails when the run ends, or `timeout` passes, first."""
    argv, env, target = _run(name, args, None)
    with tempfile.TemporaryFile("w+") as out:
        run = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=PROJECT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        try:
            while not when():
                assert run.poll() is None, "the run ended before it could be cut"
                assert time.monotonic() < deadline, f"not cut within {timeout} s"
                time.sleep(0.5)
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            out.seek(0)
            output = plain(out.read())
            _log(f"$ ansible-playbook {target} {shlex.join(args)}  (cut)\n{output}\n")
    return output


def _log(text: str) -> None:
    """Append to the scenario's playbooks.log ($THORFLEET_PLAYBOOK_LOG): pytest shows a passing test's output to
    nobody."""
    if os.environ.get("THORFLEET_PLAYBOOK_LOG"):
        with open(os.environ["THORFLEET_PLAYBOOK_LOG"], "a", encoding="utf-8") as log:
            log.write(text)


def note(text: str) -> None:
    """Keep a measurement beside the scenario's playbook runs, where a run's reader finds it."""
    _log(f"# {text}\n")


class Secrets(dict):
    """Secrets by name that print as their names only: pytest shows a failing test's arguments in its report."""

    def __repr__(self) -> str:
        return f"<secrets: {', '.join(map(str, self))}>"


def http(host, method: str, url: str, body=None, key: str | None = None) -> tuple[int, object]:
    """An HTTP request made on the unit (testinfra `host`); returns (status, parsed JSON body)."""
    script = f"""
import json, sys, urllib.request, urllib.error
req = urllib.request.Request({url!r}, method={method!r}, data={json.dumps(body).encode() if body else None!r},
                             headers={{"Content-Type": "application/json"}})
if {key!r}:
    req.add_header("Authorization", "Bearer " + {key!r})
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        print(json.dumps([r.status, json.load(r)]))
except urllib.error.HTTPError as e:
    print(json.dumps([e.code, json.loads(e.read() or b"null")]))
"""
    status, payload = json.loads(host.check_output(f"python3 -c {shlex.quote(script)}"))
    return status, payload


def unit_containers(units) -> dict:
    """thor-NN -> the unit's container, named as the scenario's create step has sim/fleet name it."""
    client = docker.from_env()
    return {unit: client.containers.get(f"{os.environ['MOLECULE_SCENARIO_NAME']}-{unit}") for unit in units}


def fleet_address(container) -> str:
    """A unit's address on the fleet's network, which this machine reaches."""
    return next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]

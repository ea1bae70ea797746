"""For molecule verifiers: run the collection's playbooks against the scenario's own inventory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[1]))


def playbook(name: str, *args: str) -> tuple[int, str]:
    """Run thorfleet.llm.<name> with `args`; return (exit code, stdout and stderr together)."""
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(PROJECT / ".collections"), "ANSIBLE_NOCOLOR": "1"}
    run = subprocess.run(
        ["ansible-playbook", f"thorfleet.llm.{name}", "-i", str(inventory), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=PROJECT,
    )
    return run.returncode, run.stdout + run.stderr

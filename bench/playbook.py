"""The one way the benchmarks run a playbook: timed, from the checkout, ending the benchmark if it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(*args: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    """ansible-playbook `args` with the checkout's ansible.cfg; (wall seconds, stdout). Exits on failure."""
    full_env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **(env or {})}
    started = time.monotonic()
    run = subprocess.run(
        ["ansible-playbook", *args], env=full_env, capture_output=True, text=True, check=False, cwd=REPO
    )
    seconds = time.monotonic() - started
    if run.returncode != 0:
        sys.exit(f"ansible-playbook {' '.join(args)} failed:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
    return seconds, run.stdout

"""Run tests/render.yml: what the roles render, for tests that hand it to real vLLM and LiteLLM."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def render(**extra_vars) -> dict:
    """{'vllm_commands': {profile: argv}, 'litellm_config': text}, with `extra_vars` over the defaults."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rendered.json"
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        run = subprocess.run(
            [
                "ansible-playbook",
                str(REPO / "tests" / "render.yml"),
                "-i",
                "localhost,",
                "-e",
                json.dumps({**extra_vars, "render_out": str(out)}),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=False,
        )
        if run.returncode != 0:
            raise RuntimeError(f"render.yml failed:\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
        return json.loads(out.read_text())

"""Contract fixtures: the pinned vLLM's own `vllm serve` argument parser.

`vllm_parser` builds (once per machine, see vllm_venv.sh) a venv with the
pinned vLLM on CPU torch and returns `parse(argvs) -> results`:

    def test_profiles(vllm_parser):
        argvs = [render(p) for p in profiles]          # [MODEL, "--flag", "value", ...]
        results = vllm_parser(argvs)
        bad = {" ".join(a): r["error"] for a, r in zip(argvs, results) if not r["ok"]}
        assert not bad

Each result is {"ok": bool, "error": str, "stage": str, "warnings": [str]}
(see vllm_parse.py). `vllm_parser.version` is the vLLM version in the venv,
`vllm_parser.python` its interpreter, `vllm_parser.options()` every option
string `vllm serve` takes. `vllm_sim_parser` is the same over vllm-sim's
`vllm` package, for comparing the two.

Set THORFLEET_SKIP_VLLM_CONTRACT=1 to skip these tests; without it, a venv
that cannot be built is a test error, not a skip.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
VLLM_SIM_PACKAGE = HERE.parents[1] / "sim" / "images" / "vllm-sim"
VENV_SH = HERE / "vllm_venv.sh"
PARSE_PY = HERE / "vllm_parse.py"

BUILD_TIMEOUT = 40 * 60  # a cold build takes ~2.5 min here; pip may be slow elsewhere
PARSE_TIMEOUT = 10 * 60


class VllmParser:
    """Callable: parse(list of argv lists) -> list of result dicts.

    `python` imports the `vllm` it checks with: the pinned vLLM's venv, or any python with
    `pythonpath` leading to a stand-in (vllm-sim's package).
    """

    def __init__(self, python: str, pythonpath: Path | None = None) -> None:
        self.python = python
        self.env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
        if pythonpath is not None:
            self.env["PYTHONPATH"] = str(pythonpath)

    @functools.cached_property
    def version(self) -> str:
        # From the installed metadata: importing vLLM (vllm_parse.py --info) costs ~10 s.
        return subprocess.run(
            [self.python, "-c", "import importlib.metadata as m; print(m.version('vllm'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def options(self) -> list[str]:
        """Every option string `vllm serve` takes."""
        return self._run(["--info"], "")["options"]

    def _run(self, extra: list[str], stdin: str):
        proc = subprocess.run(
            [self.python, str(PARSE_PY), *extra],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=PARSE_TIMEOUT,
            env=self.env,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"vllm_parse.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout)

    def __call__(self, argvs: list[list[str]]) -> list[dict]:
        if not argvs:
            return []
        results = self._run([], json.dumps(argvs))
        assert len(results) == len(argvs)
        return results


@pytest.fixture(scope="session")
def vllm_parser() -> Callable[[list[list[str]]], list[dict]]:
    if os.environ.get("THORFLEET_SKIP_VLLM_CONTRACT") == "1":
        pytest.skip("THORFLEET_SKIP_VLLM_CONTRACT=1: vLLM argument-parser contract tests skipped")
    try:
        proc = subprocess.run(
            ["bash", str(VENV_SH)], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"vllm_venv.sh did not finish in {BUILD_TIMEOUT} s", pytrace=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"vllm_venv.sh failed ({proc.returncode}); set THORFLEET_SKIP_VLLM_CONTRACT=1 to skip.\n"
            f"{proc.stderr[-6000:]}",
            pytrace=False,
        )
    return VllmParser(lines[-1])


@pytest.fixture(scope="session")
def vllm_sim_parser(vllm_parser) -> VllmParser:
    """The same checks over vllm-sim's `vllm` package, under this python (skipped along with `vllm_parser`)."""
    return VllmParser(sys.executable, pythonpath=VLLM_SIM_PACKAGE)

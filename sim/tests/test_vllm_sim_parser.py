"""The check the collection runs in the image (roles/vllm_server/files/vllm_check.py), on vllm-sim's `vllm` package.

As on a unit: the script under python3 with vllm-sim's package importable, one command line per run. Each case of
the corpus (tests/vllm_corpus.py) gets vLLM 0.31.0's verdict, a refusal with vLLM's words; tests/contract compares
the two parsers case by case.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rendering import REPO, render
from thorsim import SIM_DIR
from vllm_corpus import ACCEPTED, REJECTED

VLLM_CHECK = REPO / "roles" / "vllm_server" / "files" / "vllm_check.py"


def vllm_check(argv: list[str], package: Path = SIM_DIR / "images" / "vllm-sim") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, str(VLLM_CHECK), *argv], capture_output=True, text=True, env=env, timeout=30, check=False
    )


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted_silently(name):
    run = vllm_check(ACCEPTED[name])
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


@pytest.mark.parametrize("name", list(REJECTED))
def test_refused_with_vllms_words(name):
    argv, _stage, fragment = REJECTED[name]
    run = vllm_check(argv)
    assert (run.returncode, run.stdout) == (1, "")
    assert fragment in run.stderr
    assert not run.stderr.startswith("usage:")


def test_every_profile_the_role_renders_is_accepted():
    refused = {}
    for name, argv in render()["vllm_commands"].items():
        run = vllm_check(argv[2:])
        if run.returncode:
            refused[name] = run.stderr
    assert not refused


def test_a_python_without_vllm_gives_no_verdict(tmp_path):
    run = vllm_check(ACCEPTED["shutdown-timeout"], package=tmp_path)
    assert run.returncode == 2
    assert "cannot import vLLM's parser" in run.stderr

"""The harness itself: the pinned vLLM's parser gives each case of the corpus (tests/vllm_corpus.py) its verdict.

All argvs go to vllm_parse.py in one batch (importing vLLM takes ~10 s), and
each case is then its own test.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from vllm_corpus import ACCEPTED, REJECTED

VENV_SH = Path(__file__).resolve().parent / "vllm_venv.sh"
PINNED = re.search(r"^VLLM_VERSION=(\S+)", VENV_SH.read_text(), re.MULTILINE).group(1)


@pytest.fixture(scope="module")
def results(vllm_parser) -> dict[str, dict]:
    names = [*ACCEPTED, *REJECTED]
    argvs = [*ACCEPTED.values(), *(argv for argv, _stage, _message in REJECTED.values())]
    return dict(zip(names, vllm_parser(argvs), strict=True))


def test_pinned_version(vllm_parser):
    assert vllm_parser.version == PINNED


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted(results, name):
    result = results[name]
    assert result["ok"], f"vLLM {PINNED} rejects {shlex.join(ACCEPTED[name])}:\n{result['error']}"


@pytest.mark.parametrize("name", list(REJECTED))
def test_rejected(results, name):
    argv, stage, fragment = REJECTED[name]
    result = results[name]
    assert not result["ok"], f"vLLM {PINNED} accepts {shlex.join(argv)}"
    assert result["stage"] == stage, result
    assert fragment in result["error"], result["error"]


def test_empty_batch(vllm_parser):
    assert vllm_parser([]) == []

"""The harness itself: the pinned vLLM's parser accepts what vLLM accepts and rejects what it rejects.

All argvs go to vllm_parse.py in one batch (importing vLLM takes ~10 s), and
each case is then its own test.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

VENV_SH = Path(__file__).resolve().parent / "vllm_venv.sh"
PINNED = re.search(r"^VLLM_VERSION=(\S+)", VENV_SH.read_text(), re.MULTILINE).group(1)

# The seed's command (docs/seeds.md, seed 000), as a shell would split it.
SEED_QWEN3_VL = shlex.split(
    "cyankiwi/Qwen3-VL-30B-A3B-Instruct-AWQ-4bit --served-model-name Qwen3-VL-30B-A3B "
    "--max-model-len 32768 --tensor-parallel-size 1 --gpu-memory-utilization 0.85 --dtype bfloat16 "
    "--kv-cache-dtype fp8 --max-num-seqs 32 --max-num-batched-tokens 32768 "
    """--limit-mm-per-prompt '{"image": 32, "video": 0}' --mm-processor-kwargs '{"max_pixels": 262144}' """
    """--compilation-config '{"compile_mm_encoder": true}' --enable-chunked-prefill --enable-prefix-caching """
    "--async-scheduling --enable-auto-tool-choice --tool-call-parser qwen3_xml --generation-config vllm"
)
EAGLE3 = [
    "nvidia/Llama-3.1-8B-Instruct-FP4",
    "--trust-remote-code",
    "--speculative-config",
    '{"method":"eagle3","model":"yuhuili/EAGLE3-LLaMA3.1-Instruct-8B","num_speculative_tokens":5}',
]
M = "Qwen/Qwen3-0.6B"

ACCEPTED = {
    "seed-qwen3-vl": SEED_QWEN3_VL,
    "eagle3-speculative": EAGLE3,
    "shutdown-timeout": [M, "--shutdown-timeout", "30"],
    "gpu-memory-utilization-0.8": [M, "--gpu-memory-utilization", "0.8"],
    "generation-config-vllm": [M, "--generation-config", "vllm"],
    "async-scheduling": [M, "--async-scheduling"],
    "compilation-config-mode": [M, "--compilation-config", '{"mode": 3}'],
    "compilation-config-dotted-mode": [M, "--compilation-config.mode", "3"],
    "model-flag-instead-of-positional": ["--model", M, "--max-model-len", "4096"],
    "reasoning-parser-qwen3": [M, "--reasoning-parser", "qwen3"],
    # vLLM 0.31.0 checks the tool parser's name only with --enable-auto-tool-choice.
    "tool-call-parser-unknown-without-auto-tool-choice": [M, "--tool-call-parser", "no_such_parser"],
}

# name -> (argv, the step of `vllm serve` that rejects it, a fragment of its message)
REJECTED = {
    "unknown-flag": ([M, "--no-such-flag"], "parse", "unrecognized arguments: --no-such-flag"),
    "max-model-len-not-a-number": ([M, "--max-model-len", "abc"], "parse", "argument --max-model-len"),
    "tool-call-parser-unknown": (
        [M, "--enable-auto-tool-choice", "--tool-call-parser", "no_such_parser"],
        "validate_api_server_args",
        "invalid tool call parser: no_such_parser",
    ),
    "auto-tool-choice-without-parser": (
        [M, "--enable-auto-tool-choice"],
        "validate_parsed_serve_args",
        "--enable-auto-tool-choice requires --tool-call-parser",
    ),
    "reasoning-parser-unknown": (
        [M, "--reasoning-parser", "no_such_parser"],
        "reasoning_parser",
        "Reasoning parser 'no_such_parser' not found",
    ),
    "compilation-config-bad-json": ([M, "--compilation-config", "{bad"], "parse", "json_invalid"),
    "compilation-config-level-0": ([M, "--compilation-config", '{"level": 0}'], "parse", "level"),
    "compilation-config-level-3": ([M, "--compilation-config", '{"level": 3}'], "parse", "level"),
    "kv-cache-dtype-unknown": ([M, "--kv-cache-dtype", "fp9"], "parse", "argument --kv-cache-dtype"),
    "served-model-name-without-model": (
        ["--served-model-name", "x", "--max-model-len", "4096"],
        "parse",
        "model` should be provided as the first positional argument",
    ),
    "help-does-not-serve": ([M, "--help"], "parse", "status 0"),
}


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

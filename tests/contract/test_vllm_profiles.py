"""Every vllm_server profile, rendered by the role itself, is accepted by the pinned vLLM's own parser."""

import shlex

import pytest
from rendering import render

# The seed's hand-written command (docs/seeds.md, seed 000), flag by flag: the Qwen3-VL profile must carry all of it.
SEED_QWEN_FLAGS = shlex.split(
    """--served-model-name Qwen3-VL-30B-A3B --max-model-len 32768 --tensor-parallel-size 1 --dtype bfloat16
    --kv-cache-dtype fp8 --max-num-seqs 32 --max-num-batched-tokens 32768
    --limit-mm-per-prompt '{"image":32,"video":0}' --mm-processor-kwargs '{"max_pixels":262144}'
    --compilation-config '{"compile_mm_encoder":true}' --enable-chunked-prefill --enable-prefix-caching
    --async-scheduling --enable-auto-tool-choice --tool-call-parser qwen3_xml --generation-config vllm"""
)


@pytest.fixture(scope="module")
def commands():
    return render()["vllm_commands"]


def pairs(argv):
    """Flags with their values ({--flag: value or None}), from a command line after the model."""
    out, i = {}, 0
    while i < len(argv):
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        out[argv[i]] = argv[i + 1] if has_value else None
        i += 2 if has_value else 1
    return out


def test_every_profile_parses_with_the_pinned_vllm(vllm_parser, commands):
    assert vllm_parser.version == "0.31.0"
    prefix = ["vllm", "serve"]
    assert all(argv[:2] == prefix for argv in commands.values())
    argvs = [argv[2:] for argv in commands.values()]
    results = vllm_parser(argvs)
    rejected = {name: r["error"] for name, r in zip(commands, results, strict=True) if not r["ok"]}
    assert not rejected


def test_the_qwen_profile_is_the_seed_command(commands):
    argv = commands["qwen3-vl-30b-a3b-awq"]
    assert argv[2] == "cyankiwi/Qwen3-VL-30B-A3B-Instruct-AWQ-4bit"
    rendered, seed = pairs(argv[3:]), pairs(SEED_QWEN_FLAGS)
    assert {flag: rendered.get(flag) for flag in seed} == seed
    # Thor's own settings, on top of the seed: NVIDIA's memory share and a drain on SIGTERM.
    assert rendered["--gpu-memory-utilization"] == "0.8"
    assert rendered["--shutdown-timeout"] == "30"


def test_a_broken_override_is_caught_by_the_parser(vllm_parser):
    """The contract can fail: a flag the pinned vLLM removed is rejected."""
    argv = render(vllm_server_settings={"compilation_config": {"level": 3}})["vllm_commands"]["llama-3.1-8b-fp16"]
    (result,) = vllm_parser([argv[2:]])
    assert not result["ok"]
    assert "level" in result["error"]

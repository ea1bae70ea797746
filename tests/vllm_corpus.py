"""`vllm serve` command lines and what vLLM 0.31.0 says to each: one corpus for vLLM's parser and vllm-sim's.

tests/contract/test_vllm_parser.py holds vLLM's own parser to it, test_vllm_parity.py requires vllm-sim's
verdict to equal vLLM's on it and on every rendered profile, and sim/tests/test_vllm_sim_parser.py holds
vllm-sim to it. Each argv is what follows `vllm serve`. A refused case names the step of `vllm serve`
that refuses it (roles/vllm_server/files/vllm_check.py's stages) and a fragment of the message, which
vLLM's and vllm-sim's messages both carry. Cases were found by trying candidates on vLLM itself.
"""

from __future__ import annotations

import shlex

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
    "compilation-config-mode-by-name": [M, "-cc", '{"mode": "VLLM_COMPILE", "cudagraph_mode": "FULL_AND_PIECEWISE"}'],
    "optimization-level-shorthand": [M, "-O3"],
    "model-flag-instead-of-positional": ["--model", M, "--max-model-len", "4096"],
    # With neither, vLLM serves its default model.
    "no-model-at-all": ["--max-model-len", "4096"],
    "reasoning-parser-qwen3": [M, "--reasoning-parser", "qwen3"],
    "auto-tool-choice-hermes": [M, "--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
    # vLLM 0.31.0 checks the tool parser's name only with --enable-auto-tool-choice.
    "tool-call-parser-unknown-without-auto-tool-choice": [M, "--tool-call-parser", "no_such_parser"],
    "underscores-and-equals": [M, "--max_model_len=4096", "--gpu_memory_utilization", "0.8"],
    "abbreviated-flag": [M, "--max-model", "4096"],
    "short-aliases": [M, "-tp", "1", "-pp", "1", "-q", "awq"],
    "human-readable-sizes": [M, "--max-model-len", "32k", "--max-num-batched-tokens", "8K"],
    "max-model-len-auto": [M, "--max-model-len", "auto"],
    "enable-log-requests": [M, "--enable-log-requests", "--enable-log-outputs", "--disable-log-stats"],
    "no-prefix-caching": [M, "--no-enable-prefix-caching", "--kv-cache-dtype", "fp8_e4m3"],
    "two-served-names": [M, "--served-model-name", "a", "b"],
    "limit-mm-per-prompt-per-modality-options": [
        M,
        "--limit-mm-per-prompt",
        '{"image": {"count": 2, "width": 512, "height": 512}, "video": 0}',
    ],
    "hf-overrides-json": [M, "--hf-overrides", '{"max_position_embeddings": 4096}'],
    # Flags the simulator does not act on, which it must take as vLLM does.
    "flags-vllm-sim-ignores": [M, "--enforce-eager", "--seed", "7", "--max-loras", "2", "--uvicorn-log-level", "debug"],
    # vLLM 0.31.0 checks these only once it builds the engine's config, from the model's own config: the
    # parse-only check cannot see them, on vLLM or on vllm-sim.
    "gpu-memory-utilization-above-1-until-engine-start": [M, "--gpu-memory-utilization", "1.5"],
    "quantization-unknown-until-engine-start": [M, "--quantization", "no_such_quant"],
    "speculative-config-unchecked-until-engine-start": [M, "--speculative-config", '{"method": "nope"}'],
}

# name -> (argv, the step of `vllm serve` that refuses it, a fragment of its message)
REJECTED = {
    "unknown-flag": ([M, "--no-such-flag"], "parse", "unrecognized arguments: --no-such-flag"),
    # Removed from vLLM by 0.31.0: logging requests is opt-in (--enable-log-requests), the rest went with V0.
    "removed-disable-log-requests": (
        [M, "--disable-log-requests"],
        "parse",
        "unrecognized arguments: --disable-log-requests",
    ),
    "removed-swap-space": ([M, "--swap-space", "4"], "parse", "unrecognized arguments: --swap-space 4"),
    "removed-enable-reasoning": ([M, "--enable-reasoning"], "parse", "unrecognized arguments: --enable-reasoning"),
    "removed-guided-decoding-backend": (
        [M, "--guided-decoding-backend", "xgrammar"],
        "parse",
        "unrecognized arguments: --guided-decoding-backend",
    ),
    "removed-task": ([M, "--task", "generate"], "parse", "unrecognized arguments: --task generate"),
    "ambiguous-abbreviation": ([M, "--device", "cuda"], "parse", "ambiguous option: --device"),
    "model-given-twice": ([M, "--model", "other/model"], "parse", "unrecognized arguments: Qwen/Qwen3-0.6B"),
    "max-model-len-not-a-number": ([M, "--max-model-len", "abc"], "parse", "argument --max-model-len"),
    "max-model-len-fraction": ([M, "--max-model-len", "1.5"], "parse", "argument --max-model-len"),
    "gpu-memory-utilization-not-a-number": (
        [M, "--gpu-memory-utilization", "most"],
        "parse",
        "argument --gpu-memory-utilization/--device-memory-utilization: invalid float value: 'most'",
    ),
    "tensor-parallel-size-not-an-int": (
        [M, "-tp", "two"],
        "parse",
        "argument --tensor-parallel-size/-tp: invalid int value: 'two'",
    ),
    "max-num-seqs-not-an-int": ([M, "--max-num-seqs", "many"], "parse", "argument --max-num-seqs"),
    "shutdown-timeout-not-an-int": ([M, "--shutdown-timeout", "soon"], "parse", "argument --shutdown-timeout"),
    "dtype-unknown": ([M, "--dtype", "int3"], "parse", "argument --dtype: invalid choice: 'int3'"),
    "kv-cache-dtype-unknown": ([M, "--kv-cache-dtype", "fp9"], "parse", "argument --kv-cache-dtype"),
    "max-lora-rank-not-offered": ([M, "--max-lora-rank", "3"], "parse", "argument --max-lora-rank: invalid choice"),
    "performance-mode-unknown": ([M, "--performance-mode", "fast"], "parse", "argument --performance-mode"),
    "switch-given-a-value": (
        [M, "--enable-prefix-caching=yes"],
        "parse",
        "ignored explicit argument 'yes'",
    ),
    "compilation-config-bad-json": ([M, "--compilation-config", "{bad"], "parse", "json_invalid"),
    "compilation-config-not-an-object": ([M, "-cc", "[1]"], "parse", "Input should be an object"),
    "compilation-config-level-0": ([M, "--compilation-config", '{"level": 0}'], "parse", "level"),
    "compilation-config-level-3": ([M, "--compilation-config", '{"level": 3}'], "parse", "level"),
    "compilation-config-dotted-level": ([M, "--compilation-config.level", "3"], "parse", "level"),
    "compilation-config-unknown-key": (
        [M, "--compilation-config", '{"no_such_key": 1}'],
        "parse",
        "Unexpected keyword argument",
    ),
    "compilation-config-mode-out-of-range": ([M, "--compilation-config", '{"mode": 7}'], "parse", "mode"),
    "compilation-config-mode-unknown-name": (
        [M, "--compilation-config", '{"mode": "fast"}'],
        "parse",
        "Invalid compilation mode: fast",
    ),
    "compilation-config-cudagraph-mode-unknown": (
        [M, "--compilation-config", '{"cudagraph_mode": "NOPE"}'],
        "parse",
        "NOPE",
    ),
    "compilation-config-capture-sizes-not-a-list": (
        [M, "--compilation-config", '{"cudagraph_capture_sizes": "many"}'],
        "parse",
        "cudagraph_capture_sizes",
    ),
    "attention-config-unknown-key": ([M, "--attention-config", '{"no_such": 1}'], "parse", "no_such"),
    "structured-outputs-backend-unknown": (
        [M, "--structured-outputs-config", '{"backend": "nope"}'],
        "parse",
        "backend",
    ),
    "speculative-config-bad-json": (
        [M, "--speculative-config", '{"method": "eagle3"'],
        "parse",
        "argument --speculative-config/-sc",
    ),
    "limit-mm-per-prompt-bad-json": (
        [M, "--limit-mm-per-prompt", "{image: 2}"],
        "parse",
        "argument --limit-mm-per-prompt",
    ),
    "mm-processor-kwargs-bad-json": (
        [M, "--mm-processor-kwargs", "{max_pixels: 1}"],
        "parse",
        "argument --mm-processor-kwargs",
    ),
    "served-model-name-without-model": (
        ["--served-model-name", "x", "--max-model-len", "4096"],
        "parse",
        "model` should be provided as the first positional argument",
    ),
    "config-file-missing": ([M, "--config", "/nonexistent/vllm.yaml"], "parse", "/nonexistent/vllm.yaml"),
    "help-does-not-serve": ([M, "--help"], "parse", "status 0"),
    "auto-tool-choice-without-parser": (
        [M, "--enable-auto-tool-choice"],
        "validate_parsed_serve_args",
        "--enable-auto-tool-choice requires --tool-call-parser",
    ),
    "log-outputs-without-log-requests": (
        [M, "--enable-log-outputs"],
        "validate_parsed_serve_args",
        "--enable-log-outputs requires --enable-log-requests",
    ),
    "sse-keep-alive-negative": (
        [M, "--sse-keep-alive-interval", "-1"],
        "validate_parsed_serve_args",
        "--sse-keep-alive-interval must be a non-negative integer",
    ),
    "per-request-metrics-without-stats": (
        [M, "--enable-per-request-metrics", "--disable-log-stats"],
        "validate_parsed_serve_args",
        "--enable-per-request-metrics requires engine statistics logging",
    ),
    "chat-template-path-missing": (
        [M, "--chat-template", "/nonexistent/template.jinja"],
        "validate_parsed_serve_args",
        "appears path-like, but doesn't exist",
    ),
    "tool-call-parser-unknown": (
        [M, "--enable-auto-tool-choice", "--tool-call-parser", "no_such_parser"],
        "validate_api_server_args",
        "invalid tool call parser: no_such_parser",
    ),
    "reasoning-parser-unknown": (
        [M, "--reasoning-parser", "no_such_parser"],
        "reasoning_parser",
        "Reasoning parser 'no_such_parser' not found",
    ),
}

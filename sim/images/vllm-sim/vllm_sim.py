#!/usr/bin/env python3
"""vllm-sim: a stand-in for vLLM's OpenAI-compatible server, for tests on machines with no GPU.

`vllm_sim.py serve MODEL [flags]` takes vLLM 0.31.0's flags and refuses what vLLM refuses before it loads
(see "command line" below; the vllm/ package beside this file offers the same checks at vLLM's import paths),
finds MODEL in the Hugging Face hub cache, "loads" it while the port refuses connections, then serves /health,
/v1/models, /v1/chat/completions, /v1/completions and /metrics as vLLM does, and drains on SIGTERM.
Standard library only: it runs on the simulator's Debian python3 and on the host in tests.

Timing knobs, in seconds unless noted: THORSIM_VLLM_LOAD_SECONDS (cold start, 8),
THORSIM_VLLM_WARM_LOAD_SECONDS (start with a warm compile cache, 1), THORSIM_VLLM_TTFT_SECONDS
(time to first token before prefill, 0.05), THORSIM_VLLM_PREFILL_TOKENS_PER_SECOND (prompt tokens/s,
20000), THORSIM_VLLM_TOKENS_PER_SECOND (tokens/s after the first, 200). Those rates are for 16-bit
weights; like decode on Thor, which is bound by memory bandwidth, they scale with the bytes a weight
takes (pace_factor): ModelOpt's FP8 checkpoints go twice as fast, NVFP4 four times, and speculative
decoding multiplies decode by the tokens a draft step is expected to get accepted, per step cost.
THORSIM_VLLM_BROKEN_GPU=1 serves /health and /v1/models but fails every completion with a CUDA error,
as vLLM does on a GPU that broke after start-up: only a real completion tells such a server apart.
"""

from __future__ import annotations

import argparse
import hashlib
import http
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "0.31.0"
DEFAULT_MAX_TOKENS = 16
# What vLLM uses when the model's config.json names no context length.
FALLBACK_MAX_MODEL_LEN = 2048
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
# Flags that leave torch.compile's output unchanged, so they stay out of the compile cache key.
COMPILE_NEUTRAL = frozenset({"host", "port", "shutdown_timeout"})
# vLLM's own bucket bounds, so that whatever reads the simulator's histograms reads vLLM's too.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TTFT_BUCKETS += (20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0)
E2E_BUCKETS += (480.0, 960.0, 1920.0, 7680.0)
FINISH_REASONS = ("stop", "length", "abort")
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# How long aborted requests get to close their connections before the process exits.
ABORT_GRACE_SECONDS = 2.0
BROKEN_GPU_ERROR = "CUDA error: an illegal memory access was encountered"


def dumps(value) -> str:
    """JSON as vLLM's pydantic models write it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def log(message: str, where: str = "api_server.py:1880", level: str = "INFO", process: str = "APIServer") -> None:
    stamp = time.strftime("%m-%d %H:%M:%S")
    print(f"({process} pid={os.getpid()}) {level} {stamp} [{where}] {message}", flush=True)


def log_uvicorn(message: str, level: str = "INFO") -> None:
    print(f"(APIServer pid={os.getpid()}) {level + ':':<9} {message}", flush=True)


class StartupError(Exception):
    """The server cannot start; the message is what vLLM would print last."""


# --- command line: vLLM 0.31.0's rules for `vllm serve` ------------------------------------------
#
# vllm-sim refuses what vLLM 0.31.0 refuses before it reads a model, and takes everything else, the flags it does not
# act on included: a stand-in stricter than vLLM would fail profiles that run on real units. The rules are modelled
# from vLLM, not its code: each flag by the value it takes and its choices, the fields of the config classes that
# vLLM validates its JSON flags against, its tool and reasoning parser names, the checks `vllm serve` makes before
# loading. tests/vllm_corpus.py holds the cases on which both must agree. The vllm/ package beside this file offers
# these at vLLM's import paths, for roles/vllm_server/files/vllm_check.py. Not modelled: --config files are not read.

# `vllm serve`'s flags by kind of value ("name/-alias"; a trailing + takes one or more values, ? an optional one,
# * repeats). opt- kinds also take "None" or "" for None, as vLLM's optional types do.
SERVE_FLAGS = {
    "set": """
        headless grpc data-parallel-multi-port-external-lb/-dpm disable-log-stats
        aggregate-engine-logging
    """,
    "int": """
        api-server-count/-asc sse-keep-alive-interval port data-parallel-supervisor-port
        dp-supervisor-probe-failure-threshold ssl-cert-reqs h11-max-incomplete-event-size
        h11-max-header-count seed max-logprobs renderer-num-workers safetensors-prefetch-num-threads
        mamba-cache-philox-rounds pipeline-parallel-size/-pp master-port nnodes/-n node-rank/-r
        tensor-parallel-size/-tp decode-context-parallel-size/-dcp dcp-kv-cache-interleave-size
        cp-kv-cache-interleave-size prefill-context-parallel-size/-pcp data-parallel-size/-dp
        data-parallel-rank/-dpn data-parallel-start-rank/-dpr data-parallel-size-local/-dpl
        data-parallel-rpc-port/-dpp ubatch-size elastic-ep-max-dp-size dbo-decode-token-threshold
        dp-sync-interval dbo-prefill-token-threshold block-size replayssm-buffer-len offload-group-size
        offload-num-in-group offload-prefetch-step mm-shm-cache-max-object-size-mb max-loras
        max-lora-rank max-num-seqs long-prefill-token-threshold prefill-schedule-interval
        stream-interval cudagraph-capture-sizes+ max-cudagraph-capture-size spec-tokens shutdown-timeout
    """,
    "str": """
        config lora-modules+ chat-template chat-template-content-format response-role tool-call-parser
        tool-parser-plugin tool-strict-level tool-server cohere-format
        anthropic-disabled-thinking-effort fingerprint-mode fingerprint-value host uds uvicorn-log-level
        disable-access-log-for-endpoints api-key+ ssl-keyfile ssl-certfile ssl-ca-certs ssl-ciphers
        root-path middleware* model runner convert tokenizer tokenizer-mode dtype hf-config-path
        allowed-local-media-path allowed-media-domains+ revision code-revision tokenizer-revision
        quantization/-q logprobs-mode served-model-name+ config-format hf-token? generation-config
        sleep-preserve-parameter-names+ model-impl logits-processors+ io-processor-plugin load-format
        download-dir safetensors-load-strategy ignore-patterns+ attention-backend mamba-backend
        mamba-ssu-algorithm reasoning-parser reasoning-parser-plugin distributed-executor-backend
        master-addr numa-bind-cpus+ device-ids dcp-comm-backend data-parallel-address/-dpa
        data-parallel-backend/-dpb all2all-backend expert-placement-strategy worker-cls
        worker-extension-cls kv-cache-dtype prefix-caching-hash-algo kv-cache-dtype-skip-layers+
        mamba-cache-dtype mamba-ssm-cache-dtype mamba-cache-mode kv-offloading-backend offload-backend
        cpu-offload-params+ offload-params+ mm-processor-cache-type mm-hasher-algorithm
        mm-encoder-tp-mode mm-encoder-attn-backend mm-encoder-attn-dtype mm-encoder-fp8-scale-path
        mm-encoder-fp8-scale-save-path video-pruning-method mm-tensor-ipc mm-processor-device lora-dtype
        lora-target-modules+ log-level log-config-file show-hidden-metrics-for-version
        otlp-traces-endpoint collect-detailed-traces+ per-request-spec-decode-metrics jit-monitor-mode
        scheduling-policy scheduler-cls spec-method spec-model optimization-level performance-mode
        gdn-prefill-backend kda-prefill-backend kda-decode-backend
    """,
    "switch": """
        trust-request-chat-template trust-request-mm-kwargs return-tokens-as-token-ids
        enable-auto-tool-choice exclude-tools-when-tool-choice-none enable-prompt-tokens-details
        enable-per-request-metrics enable-server-load-tracking enable-force-include-usage
        enable-tokenizer-info-endpoint enable-log-outputs enable-log-deltas cohere-is-reasoning-model
        log-error-stack tokens-only enable-scale-out disable-uvicorn-access-log allow-credentials
        enable-ssl-refresh enable-request-id-headers disable-fastapi-docs enable-offline-docs
        enable-flash-late-interaction trust-remote-code allow-deprecated-quantization enforce-eager
        enable-return-routed-experts return-sampling-mask use-fp64-gumbel enable-trace-replay
        disable-sliding-window disable-cascade-attn skip-tokenizer-init enable-prompt-embeds
        enable-sleep-mode enable-cumem-allocator enable-nccl-comm-suspend use-tqdm-on-load
        enable-mamba-cache-stochastic-rounding numa-bind dcp-q-replicate data-parallel-hybrid-lb/-dph
        data-parallel-external-lb/-dpe enable-expert-parallel/-ep enable-batch-sharded-sampling
        enable-ep-weight-filter enable-dbo enable-elastic-ep disable-nccl-for-dp-synchronization
        enable-eplb ray-workers-use-nsight disable-custom-all-reduce enable-fault-tolerance
        enable-prefix-caching kv-sharing-fast-prefill swa-bounded-replay
        enable-mamba-shared-prefix-checkpoint use-replayssm language-model-only enable-mm-embeds
        mm-encoder-only interleave-mm-strings skip-mm-profiling mm-device-do-normalize enable-lora
        enable-tower-connector-lora fully-sharded-loras specialize-active-lora
        enable-mixed-moe-lora-format enable-moe-shared-loras kv-cache-metrics cudagraph-metrics
        enable-layerwise-nvtx-tracing enable-mfu-metrics enable-logging-iteration-details
        jit-monitor-verbose long-prefill-token-threshold-adaptive enable-chunked-prefill
        disable-chunked-mm-input scheduler-reserve-full-isl disable-hybrid-kv-cache-manager
        async-scheduling enable-flashinfer-autotune fail-on-environ-validation enable-log-requests
    """,
    "json": """
        default-chat-template-kwargs allowed-origins allowed-methods allowed-headers
    """,
    "opt-int": """
        max-log-len distributed-timeout-seconds cpu-distributed-timeout-seconds numa-bind-nodes+
        max-parallel-loading-workers num-gpu-blocks-override prefix-cache-retention-interval
        mamba-block-size prefix-match-unit max-cpu-loras max-lora-cls-labels max-num-active-seqs
        max-num-queued-reqs
    """,
    "float": """
        dp-supervisor-probe-interval-s dp-supervisor-probe-timeout-s
        gpu-memory-utilization/--device-memory-utilization cpu-offload-gb mm-processor-cache-gb
        mm-encoder-fp8-scale-save-margin mm-ipc-gpu-memory-gb kv-cache-metrics-sample watermark
    """,
    "size-or-auto": """
        max-model-len
    """,
    "opt-config": """
        quantization-config pooler-config kv-transfer-config kv-events-config ec-transfer-config
        engram-config reasoning-config weight-transfer-config
    """,
    "dict-or-str": """
        hf-overrides model-loader-extra-config pt-load-map-location additional-config
    """,
    "json-value": """
        model-class-overrides override-generation-config limit-mm-per-prompt media-io-kwargs
    """,
    "size": """
        safetensors-prefetch-block-size max-num-batched-tokens
    """,
    "config": """
        eplb-config fault-tolerance-config logging-config ir-op-priority ec-manager-config
        compilation-config/-cc attention-config/-ac kernel-config structured-outputs-config
        aux-output-config profiler-config
    """,
    "opt-size": """
        kv-cache-memory-bytes max-num-scheduled-tokens max-num-queued-tokens
    """,
    "opt-float": """
        kv-offloading-size video-pruning-rate
    """,
    "opt-json": """
        mm-processor-kwargs default-mm-loras speculative-config/-sc watermark-config
        diffusion-config/-dc
    """,
    "backend": """
        moe-backend linear-backend sparse-indexer-topk-backend
    """,
}
# The values a flag takes, where vLLM names them.
CHOICES = {
    "chat-template-content-format": "auto openai string",
    "tool-strict-level": "auto function parameter",
    "anthropic-disabled-thinking-effort": "auto high low max medium none xhigh",
    "fingerprint-mode": "custom full hash none",
    "uvicorn-log-level": "critical debug error info trace warning",
    "runner": "auto draft generate pooling",
    "convert": "auto classify embed none",
    "dtype": "auto bfloat16 float float16 float32 half",
    "logprobs-mode": "processed_logits processed_logprobs raw_logits raw_logprobs",
    "safetensors-load-strategy": "eager lazy prefetch torchao None",
    "mamba-ssu-algorithm": "auto horizontal simple vertical None",
    "dcp-comm-backend": "a2a ag_rs None",
    "all2all-backend": """
        allgather_reducescatter deepep_high_throughput deepep_low_latency deepep_v2 flashinfer_all2allv
        flashinfer_nvlink_one_sided flashinfer_nvlink_two_sided moonep mori_high_throughput
        mori_low_latency naive nixl_ep pplx
    """,
    "expert-placement-strategy": "linear round_robin",
    "kv-cache-dtype": """
        auto bfloat16 float16 fp8 fp8_ds_mla fp8_e4m3 fp8_e5m2 fp8_inc fp8_per_token_head
        int4_per_token_head int8_per_token_head nvfp4 nvfp4_4over6 nvfp4_ds_mla turboquant_3bit_nc
        turboquant_4bit_nc turboquant_k3v4_nc turboquant_k8v4
    """,
    "prefix-caching-hash-algo": "sha256 sha256_cbor xxhash xxhash_cbor",
    "mamba-cache-dtype": "auto bfloat16 float16 float32",
    "mamba-ssm-cache-dtype": "auto bfloat16 float16 float32",
    "mamba-cache-mode": "align all none",
    "kv-offloading-backend": "lmcache native",
    "offload-backend": "auto prefetch uva",
    "mm-processor-cache-type": "lru shm",
    "mm-hasher-algorithm": "blake3 sha256 sha512",
    "mm-encoder-tp-mode": "data weights",
    "mm-encoder-attn-dtype": "fp8 None",
    "video-pruning-method": "evs vidcom2",
    "mm-tensor-ipc": "direct_rpc torch_shm",
    "mm-processor-device": "auto cpu",
    "max-lora-rank": "1 8 16 32 64 128 256 320 512",
    "lora-dtype": "auto bfloat16 float16",
    "log-level": "CRITICAL ERROR WARNING INFO DEBUG NOTSET",
    "collect-detailed-traces": "all model worker None",
    "per-request-spec-decode-metrics": "detailed none summary",
    "jit-monitor-mode": "error warn",
    "scheduling-policy": "fcfs priority",
    "moe-backend": """
        aiter aiter_triton_mxfp4_bf16 auto b12x batched_triton cutlass deep_gemm deep_gemm_mega_moe
        emulation flashinfer_b12x flashinfer_cutedsl flashinfer_cutlass flashinfer_moe_ep_mega_cutedsl
        flashinfer_moe_ep_mega_deep_gemm flashinfer_trtllm flydsl hpc humming marlin rdna3 triton
        triton_unfused
    """,
    "linear-backend": """
        aiter auto b12x conch cutlass deep_gemm emulation exllama fbgemm flashinfer_b12x
        flashinfer_cudnn flashinfer_cutedsl flashinfer_cutlass flashinfer_trtllm humming machete marlin
        torch triton xpu xpu_woq
    """,
    "sparse-indexer-topk-backend": "auto cooperative deep_select flashinfer per_row persistent torch",
    "spec-method": """
        bailing_hybrid_mtp bailing_hybrid_v3_mtp custom_class deepseek_mtp dflash dots3_note_mtp
        draft_model dspark eagle eagle3 ernie_mtp exaone4_5_mtp exaone_moe_mtp extract_hidden_states
        gemma4_mtp glm4_moe_lite_mtp glm4_moe_mtp glm5_next_mtp glm_ocr_mtp hy_v3_mtp hy_v4_mtp
        inkling_mtp kimi_k3_mtp longcat_flash_mtp medusa mimo_mtp mimo_v2_mtp minimax_m3_mtp
        mlp_speculator mtp nemotron_h_mtp ngram ngram_gpu pangu_ultra_moe_mtp qwen3_5_mtp qwen3_next_mtp
        qwen4_exp_mtp step3p5_mtp suffix None
    """,
    "performance-mode": "balanced interactivity throughput",
    "gdn-prefill-backend": "flashinfer triton cutedsl",
    "kda-prefill-backend": "auto triton flashkda flashinfer fused",
    "kda-decode-backend": "auto native flashinfer triton",
}
# The config class vLLM validates a JSON flag against, and its fields.
CONFIG_FIELDS = {
    "quantization-config": "QuantizationConfigArgs: linear moe ignore targets",
    "pooler-config": """PoolerConfig:
        task pooling_type seq_pooling_type tok_pooling_type use_activation dimensions
        enable_chunked_processing max_embed_len logit_mean logit_sigma step_tag_id returned_token_ids
    """,
    "eplb-config": """EPLBConfig:
        window_size step_interval num_redundant_experts log_balancedness log_balancedness_interval
        use_async policy communicator
    """,
    "fault-tolerance-config": "FaultToleranceConfig: engine_recovery_timeout_sec",
    "logging-config": "LoggingConfig: log_level configure_logging pylogging_config_file",
    "ir-op-priority": "IrOpPriorityConfig: rms_norm fused_add_rms_norm gelu_and_mul_sparse",
    "kv-transfer-config": """KVTransferConfig:
        kv_connector engine_id kv_buffer_device kv_buffer_size kv_role kv_rank kv_parallel_size kv_ip
        kv_port kv_connector_extra_config kv_connector_module_path enable_permute_local_kv
        kv_load_failure_policy
    """,
    "kv-events-config": """KVEventsConfig:
        enable_kv_cache_events publisher endpoint replay_endpoint buffer_steps hwm max_queue_size topic
    """,
    "ec-transfer-config": """ECTransferConfig:
        ec_connector engine_id ec_buffer_device ec_buffer_size ec_role ec_rank ec_parallel_size ec_ip
        ec_port ec_connector_extra_config ec_connector_module_path
    """,
    "ec-manager-config": "EncoderCacheManagerConfig: encoder_cache_manager_cls manager_config",
    "compilation-config": """CompilationConfig:
        mode debug_dump_path cache_dir compile_cache_save_format backend custom_ops ir_enable_torch_wrap
        splitting_ops compile_mm_encoder cudagraph_mm_encoder encoder_cudagraph_token_budgets
        encoder_cudagraph_max_vision_items_per_batch encoder_cudagraph_max_frames_per_batch
        compile_sizes compile_ranges_endpoints inductor_compile_config inductor_passes cudagraph_mode
        cudagraph_num_of_warmups cudagraph_capture_sizes cudagraph_copy_inputs cudagraph_specialize_lora
        use_inductor_graph_partition pass_config max_cudagraph_capture_size dynamic_shapes_config
        fast_moe_cold_start
    """,
    "attention-config": """AttentionConfig:
        backend minimax_m3_msa_decode_backend backend_per_kind flash_attn_version
        flash_attn_max_num_splits_for_cuda_graph tq_max_kv_splits_for_cuda_graph use_trtllm_attention
        disable_flashinfer_q_quantization mla_prefill_backend use_prefill_query_quantization
        indexer_kv_dtype indexer_sparse_logits hisparse_config use_non_causal sparse_mla_force_mqa
        flex_attn_block_m flex_attn_block_n flex_attn_q_block_size flex_attn_kv_block_size
    """,
    "engram-config": "EngramConfig: cpu_offload embedding_across_dp dp_shared_memory use_thp",
    "reasoning-config": "ReasoningConfig: reasoning_parser reasoning_start_str reasoning_end_str",
    "kernel-config": """KernelConfig:
        ir_op_priority enable_flashinfer_autotune enable_cutedsl_warmup enable_jit_warmup moe_backend
        sparse_indexer_topk_backend linear_backend linear_backend_per_quant
    """,
    "structured-outputs-config": """StructuredOutputsConfig:
        backend disable_any_whitespace disable_additional_properties reasoning_parser
        reasoning_parser_plugin enable_in_reasoning
    """,
    "aux-output-config": "AuxOutputConfig: enable_return_routed_experts max_bytes",
    "profiler-config": """ProfilerConfig:
        profiler torch_profiler_dir torch_profiler_activities proton_profiler_dir proton_context
        proton_data proton_backend proton_mode proton_hook proton_output_format proton_graph_attribution
        torch_profiler_with_stack torch_profiler_with_flops torch_profiler_use_gzip
        torch_profiler_dump_cuda_time_total torch_profiler_record_shapes torch_profiler_with_memory
        capture_torch_profiler detailed_trace_annotation ignore_frontend delay_iterations max_iterations
        warmup_iterations active_iterations wait_iterations
    """,
    "weight-transfer-config": "WeightTransferConfig: backend",
}

COMPILATION_MODES = ("NONE", "STOCK_TORCH_COMPILE", "DYNAMO_TRACE_ONCE", "VLLM_COMPILE")
CUDAGRAPH_MODES = ("NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY", "FULL_AND_PIECEWISE")
STRUCTURED_OUTPUTS_BACKENDS = ("auto", "xgrammar", "guidance", "outlines", "lm-format-enforcer")
TOOL_PARSERS = """
    apertus cohere_command3 cohere_command4 deepseek_v3 deepseek_v31 deepseek_v32 deepseek_v4 deepseek_v41 dots ernie45
    functiongemma gemma4 gigachat3 glm45 glm47 granite granite-20b-fc granite4 hermes hunyuan_a13b hy_v3 hy_v4 inkling
    internlm jamba k2_horizon kimi_k2 kimi_k3 lfm2 ling3 llama3_json llama4_json llama4_pythonic longcat mimo minicpm5
    minimax_m2 minimax_m3 mistral muse_glimmer olmo3 openai phi4_mini_json poolside_v1 pythonic qwen3_coder qwen3_xml
    seed_oss step3 step3p5 xlam
"""
REASONING_PARSERS = """
    cohere_command3 cohere_command4 deepseek_r1 deepseek_v3 deepseek_v4 deepseek_v41 ernie45 gemma4 glm45 glm47 granite
    granite_thinking_parser holo2 hunyuan_a13b hy_v3 hy_v4 inkling k2_horizon kimi_k2 kimi_k3 ling3 mimo minimax_m2
    minimax_m2_append_think minimax_m3 mistral muse_glimmer nemotron_v3 olmo3 openai_gptoss poolside_v1 qwen3 seed_oss
    step3 step3p5
"""
# vLLM's own chat templates, which --chat-template may name instead of a path.
CHAT_TEMPLATES_DIR = "vllm/transformers_utils/chat_templates"
BUILTIN_CHAT_TEMPLATES = """
    template_basic.jinja template_blip2.jinja template_chatml.jinja template_deepseek_ocr.jinja
    template_deepseek_vl2.jinja template_kimi_audio.jinja template_minicpmv45.jinja
"""
# vLLM's defaults for the flags the simulator reads, and its own where vLLM leaves a flag unset (None) to decide later.
SIM_DEFAULTS = {
    "model": "Qwen/Qwen3-0.6B",
    "host": "0.0.0.0",
    "port": 8000,
    "max_num_seqs": 256,
    "shutdown_timeout": 0,
    "sse_keep_alive_interval": 0,
}


class FlexibleArgumentParser(argparse.ArgumentParser):
    """vLLM's parser of that name: `serve --model M` for `serve M`, --flag_name for --flag-name, -O3 for
    --optimization-level 3, and --json-flag.key VALUE merged into that flag's JSON object."""

    def parse_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        if args[:1] == ["serve"]:
            args = _serve_argv(args)
        return super().parse_args(_flexible(args), namespace)


def _serve_argv(args: list[str]) -> list[str]:
    model = next((i for i, arg in enumerate(args) if re.match(r"--model(=|$)", arg)), None)
    if model is not None:
        tag, rest = (args[model + 1], model + 2) if args[model] == "--model" else (args[model][8:], model + 1)
        args = ["serve", tag, *args[1:model], *args[rest:]]
    named = any(re.match(r"--served[-_]model[-_]name(=|$)", arg) for arg in args)
    if len(args) > 1 and args[1].startswith("-") and named and not any(re.match(r"--config(=|$)", a) for a in args):
        raise ValueError(
            "`model` should be provided as the first positional argument when using `vllm serve`. "
            "i.e. `vllm serve <model> --<arg> <value>`."
        )
    if "--config" in args:  # vLLM reads it here; a missing file fails as open() does
        Path(args[args.index("--config") + 1]).open().close()
    return args


def _flexible(args: list[str]) -> list[str]:
    out: list[str] = []
    dotted: dict[str, dict] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("--"):
            name, equals, value = arg.partition("=")
            head, dot, tail = name.partition(".")
            arg = head.replace("_", "-") + dot + tail + equals + value
        elif arg.startswith("-O") and arg != "-O":
            arg = "--optimization-level=" + arg[2:].removeprefix("=")
        elif arg == "-O" and args[index + 1 : index + 2] in (["0"], ["1"], ["2"], ["3"]):
            arg = "--optimization-level"
        # As vLLM's does, this takes any option-like word with a dot for a dotted key: "-0.5" too.
        name, equals, value = arg.partition("=")
        if arg.startswith("-") and "." in (name if equals else arg):
            if not equals:
                index += 1
                value = args[index]
            if name.endswith("+"):
                name, value = name[:-1], json.dumps(value.split(","))
            flag, *keys = name.split(".")
            _merge(dotted.setdefault(flag, {}), keys, _dotted_value(value))
        else:
            out.append(arg)
        index += 1
    for flag, value in dotted.items():
        out += [flag, json.dumps(value)]
    return out


def _dotted_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return human_readable_int(text)
        except (ValueError, argparse.ArgumentTypeError):
            return text


def _merge(target: dict, keys: list[str], value) -> None:
    for key in keys[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    if isinstance(value, list) and isinstance(target.get(keys[-1]), list):
        target[keys[-1]] += value
    else:
        target[keys[-1]] = value


def human_readable_int(text: str) -> int:
    """'4096', '4k' (x1000) or '4K' (x1024); argparse names this function in its error."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgtKMGT])", text.strip())
    if not match:
        return int(text)
    number, suffix = match.groups()
    if suffix.islower():
        return int(float(number) * 1000 ** ("kmgt".index(suffix) + 1))
    if "." in number:
        raise argparse.ArgumentTypeError(
            f"Decimals are not allowed with binary suffixes like {suffix}. "
            f"Did you mean to use {number}{suffix.lower()} instead?"
        )
    return int(number) * 1024 ** ("KMGT".index(suffix) + 1)


def human_readable_int_or_auto(text: str) -> int:
    """A size, or -1 for 'auto' (the model's own)."""
    return -1 if text.strip() == "-1" or text.strip().lower() == "auto" else human_readable_int(text)


def union_dict_and_str(text: str):
    """Braces make it a JSON object, anything else is a string."""
    return _optional(json.loads)(text) if re.match(r"(?s)^\s*{.*}\s*$", text) else text


def _converted(convert):
    def parse(text: str):
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"Value {text} cannot be converted to {convert}.") from None

    return parse


def _optional(convert):
    def parse(text: str):
        return None if text in ("", "None") else _converted(convert)(text)

    return parse


def _backend(text: str) -> str:
    return text.lower().replace("-", "_")


def _expand_sizes(text: str) -> str:
    """4k for 4000 in a JSON config, outside its strings, as vLLM reads them."""
    parts = re.split(r'("(?:[^"\\]|\\.)*")', text)
    parts[::2] = [
        re.sub(r"\b\d+(?:\.\d+)?[kKmMgGtT]\b", lambda m: str(human_readable_int(m[0])), p) for p in parts[::2]
    ]
    return "".join(parts)


def _invalid(cls: str, field: str, message: str, kind: str, value) -> argparse.ArgumentTypeError:
    """pydantic's report on a config class refusing its JSON, which vLLM passes on."""
    where = f"\n{field}" if field else ""
    return argparse.ArgumentTypeError(
        f"1 validation error for {cls}{where}\n  {message} [type={kind}, input_value={value!r}, "
        f"input_type={type(value).__name__}]"
    )


def _compilation_mode(value) -> tuple[str, str] | None:
    if isinstance(value, int):
        return None if 0 <= value < len(COMPILATION_MODES) else ("Input should be 0, 1, 2 or 3", "enum")
    if str(value).upper() in COMPILATION_MODES:
        return None
    modes = ", ".join(COMPILATION_MODES)
    return f"Value error, Invalid compilation mode: {value}. Valid modes are: {modes}", "value_error"


def _cudagraph_mode(value) -> tuple[str, str] | None:
    if isinstance(value, int) or str(value).upper() in CUDAGRAPH_MODES:  # a mode by name, or by number
        return None
    return f"Value error, {value!r} is not a CUDAGraphMode: {', '.join(CUDAGRAPH_MODES)}", "value_error"


def _array(value) -> tuple[str, str] | None:
    return None if isinstance(value, list) else ("Input should be a valid array", "list_type")


def _structured_outputs_backend(value) -> tuple[str, str] | None:
    if value in STRUCTURED_OUTPUTS_BACKENDS:
        return None
    *others, last = STRUCTURED_OUTPUTS_BACKENDS
    return f"Input should be {', '.join(map(repr, others))} or {last!r}", "literal_error"


# The field values the simulator checks; any other field of a config class takes any JSON value.
CONFIG_VALUES = {
    ("CompilationConfig", "mode"): _compilation_mode,
    ("CompilationConfig", "cudagraph_mode"): _cudagraph_mode,
    ("CompilationConfig", "cudagraph_capture_sizes"): _array,
    ("CompilationConfig", "compile_sizes"): _array,
    ("StructuredOutputsConfig", "backend"): _structured_outputs_backend,
}


def _config(flag: str):
    """The JSON for a config class: an object of its fields, as pydantic validates it for vLLM."""
    cls, fields = CONFIG_FIELDS[flag].split(":")

    def parse(text: str) -> dict:
        try:
            value = json.loads(_expand_sizes(text))
        except json.JSONDecodeError as error:
            message = f"Invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            raise _invalid(cls, "", message, "json_invalid", text) from None
        if not isinstance(value, dict):
            raise _invalid(cls, "", "Input should be an object", "dataclass_type", value)
        for key, item in value.items():
            if key not in fields.split():
                raise _invalid(cls, key, "Unexpected keyword argument", "unexpected_keyword_argument", item)
            problem = CONFIG_VALUES.get((cls, key), lambda _item: None)(item)
            if problem:
                raise _invalid(cls, key, *problem, item)
        return value

    return parse


CONVERTERS = {
    "str": str,
    "int": int,
    "float": float,
    "size": human_readable_int,
    "size-or-auto": human_readable_int_or_auto,
    "json": json.loads,
    "json-value": _converted(json.loads),
    "dict-or-str": union_dict_and_str,
    "backend": _backend,
    "opt-int": _optional(int),
    "opt-float": _optional(float),
    "opt-size": _optional(human_readable_int),
    "opt-json": _optional(json.loads),
}


def _add_flag(parser: argparse.ArgumentParser, kind: str, spec: str) -> None:
    flag, *aliases = spec.rstrip("+?*").split("/")
    options = [f"--{flag}", *aliases]
    if kind in ("switch", "set"):
        parser.add_argument(*options, action=argparse.BooleanOptionalAction if kind == "switch" else "store_true")
        return
    if kind in ("config", "opt-config"):
        convert = _config(flag) if kind == "config" else _optional(_config(flag))
    else:
        convert = CONVERTERS[kind]
    choices = [convert(choice) for choice in CHOICES[flag].split()] if flag in CHOICES else None
    extra = {"+": {"nargs": "+"}, "?": {"nargs": "?", "const": True}, "*": {"action": "append"}}.get(spec[-1], {})
    parser.add_argument(*options, type=convert, choices=choices, **extra)


class ServeSubcommand:
    """vLLM's `serve` subcommand: its parser, and the checks it makes on what that parsed."""

    def subparser_init(self, subparsers) -> FlexibleArgumentParser:
        parser = subparsers.add_parser(
            "serve",
            help="Start the vLLM OpenAI-compatible API server.",
            usage="vllm serve [model_tag] [options]",
        )
        parser.add_argument("model_tag", nargs="?", help="Hugging Face repo id, looked up in the hub cache")
        for kind, specs in SERVE_FLAGS.items():
            for spec in specs.split():
                _add_flag(parser, kind, spec)
        parser.set_defaults(**SIM_DEFAULTS)
        return parser

    def validate(self, args: argparse.Namespace) -> None:
        template = args.chat_template
        path_like = template and not any(c in template for c in "{}\n")
        if path_like and not Path(template).exists() and template not in BUILTIN_CHAT_TEMPLATES.split():
            raise ValueError(
                f"The supplied chat template string ({template}) appears path-like, but doesn't exist! "
                f"Tried: {template} and {CHAT_TEMPLATES_DIR}/{template}"
            )
        if args.enable_auto_tool_choice and not args.tool_call_parser:
            raise TypeError("Error: --enable-auto-tool-choice requires --tool-call-parser")
        if args.enable_log_outputs and not args.enable_log_requests:
            raise TypeError("Error: --enable-log-outputs requires --enable-log-requests")
        if args.sse_keep_alive_interval < 0:
            raise ValueError(
                "Error: --sse-keep-alive-interval must be a non-negative integer (0 disables keep-alive comments)."
            )
        if args.enable_per_request_metrics and args.disable_log_stats:
            raise ValueError(
                "Error: --enable-per-request-metrics requires engine statistics logging; remove --disable-log-stats "
                "to enable per-request metrics."
            )


def validate_api_server_args(args: argparse.Namespace) -> None:
    """vLLM's check of the parser names when the API server starts (the tool parser's only for auto tool choice)."""
    tools, reasonings = TOOL_PARSERS.split(), REASONING_PARSERS.split()
    if args.enable_auto_tool_choice and args.tool_call_parser not in tools:
        raise KeyError(f"invalid tool call parser: {args.tool_call_parser} (chose from {{ {','.join(tools)} }})")
    reasoning = (args.structured_outputs_config or {}).get("reasoning_parser")
    if reasoning and reasoning not in reasonings:
        raise KeyError(f"invalid reasoning parser: {reasoning} (chose from {{ {','.join(reasonings)} }})")


class ReasoningParserManager:
    @staticmethod
    def list_registered() -> list[str]:
        return REASONING_PARSERS.split()

    @classmethod
    def get_reasoning_parser(cls, name: str) -> str:
        """What vLLM looks up when its engine starts."""
        known = cls.list_registered()
        if name not in known:
            raise KeyError(f"Reasoning parser '{name}' not found. Available parsers: {', '.join(known)}")
        return name


class AsyncEngineArgs:
    """vLLM's engine arguments. From a command line alone vLLM 0.31.0 refuses nothing more here, nor does the sim."""

    def __init__(self, **settings) -> None:
        self.__dict__.update(settings)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> AsyncEngineArgs:
        return cls(**vars(args))


def build_parser() -> tuple[FlexibleArgumentParser, ServeSubcommand]:
    """The `vllm` command with its serve subcommand, and that subcommand."""
    parser = FlexibleArgumentParser(prog="vllm", description="vLLM CLI (vllm-sim, a stand-in for tests)")
    parser.add_argument("-v", "--version", action="version", version=VERSION)
    command = ServeSubcommand()
    command.subparser_init(parser.add_subparsers(dest="subparser", required=True))
    return parser, command


# --- the model in the Hugging Face cache ---------------------------------------------------------


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def find_snapshot(model: str) -> Path:
    """The snapshot that refs/main names, checked the way loading the model would find it broken."""
    hub = hub_cache()
    repo = hub / f"models--{model.replace('/', '--')}"
    try:
        snapshot = repo / "snapshots" / (repo / "refs" / "main").read_text().strip()
    except OSError:
        snapshot = None
    if snapshot is None or not (snapshot / "config.json").is_file():
        if _truthy("HF_HUB_OFFLINE"):
            raise StartupError(
                "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find an appropriate cached snapshot "
                f"folder for {model!r} on the local disk and outgoing traffic has been disabled (HF_HUB_OFFLINE="
                f"{os.environ['HF_HUB_OFFLINE']}). Expected {repo}/refs/main naming a snapshot with config.json."
            )
        raise StartupError(
            f"OSError: We couldn't connect to 'https://huggingface.co' to download {model!r}, and it is not in "
            f"the cache at {hub}. vllm-sim never downloads: put the model in the Hugging Face cache."
        )
    # Symlinks into blobs/ that lead nowhere: a copy made without blobs/ or cut short.
    broken = sorted(str(path.relative_to(snapshot)) for path in snapshot.rglob("*") if not path.exists())
    if broken:
        raise StartupError(f"FileNotFoundError: {model}: {snapshot} links to missing blobs: {', '.join(broken)}")
    if not any(path.suffix in WEIGHT_SUFFIXES for path in snapshot.iterdir()):
        raise StartupError(f"RuntimeError: Cannot find any model weights with `{model}`")
    return snapshot


def max_model_len(model: str, config: dict, requested: int | None) -> int:
    derived = config.get("max_position_embeddings") or FALLBACK_MAX_MODEL_LEN
    if requested is None:
        return derived
    if requested > derived and not _truthy("VLLM_ALLOW_LONG_MAX_MODEL_LEN"):
        raise StartupError(
            f"ValueError: User-specified max_model_len ({requested}) is greater than the derived max_model_len "
            f"(max_position_embeddings={derived} in {model}'s config.json). To allow overriding this maximum, "
            "set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1."
        )
    return requested


def compile_cache_dir(args: argparse.Namespace) -> Path:
    """torch_compile_cache/<key>: vLLM reuses a compiled model only for the same model, flags and VLLM_* env."""
    root = Path(os.environ["VLLM_CACHE_ROOT"]) if os.environ.get("VLLM_CACHE_ROOT") else Path.home() / ".cache/vllm"
    flags = {name: value for name, value in vars(args).items() if name not in COMPILE_NEUTRAL}
    env = {name: value for name, value in os.environ.items() if name.startswith("VLLM_")}
    key = hashlib.sha256(json.dumps([flags, env], sort_keys=True).encode()).hexdigest()
    return root / "torch_compile_cache" / key[:10]


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# Bytes per weight by ModelOpt's quant_algo (config.json's quantization_config, as NVIDIA's checkpoints
# carry it); anything else is taken as 16-bit.
WEIGHT_BYTES = {"FP8": 1.0, "NVFP4": 0.5, "FP4": 0.5}
# The simulator's stand-ins for speculative decoding: the chance a drafted token is accepted, and what
# each drafted token adds to a step's cost.
DRAFT_ACCEPTANCE = 0.6
DRAFT_STEP_COST = 0.1


def pace_factor(config: dict, speculative: dict | None) -> tuple[float, float]:
    """(prefill, decode) speed relative to 16-bit weights for this model config and speculative config."""
    algo = str((config.get("quantization_config") or {}).get("quant_algo", "")).upper()
    weights = 2.0 / WEIGHT_BYTES.get(algo, 2.0)
    drafted = int((speculative or {}).get("num_speculative_tokens") or 0)
    accepted = (1 - DRAFT_ACCEPTANCE ** (drafted + 1)) / (1 - DRAFT_ACCEPTANCE)
    return weights, weights * accepted / (1 + DRAFT_STEP_COST * drafted)


def load(args: argparse.Namespace) -> bool:
    """Take as long as loading and compiling would; False when a stop signal came first."""
    backbone = compile_cache_dir(args) / "rank_0_0" / "backbone"
    warm = backbone.parent.parent.is_dir()
    seconds = _seconds("THORSIM_VLLM_WARM_LOAD_SECONDS" if warm else "THORSIM_VLLM_LOAD_SECONDS", 1 if warm else 8)
    engine_log = {"process": "EngineCore_DP0"}
    log(f"Starting to load model {args.model_tag}...", "gpu_model_runner.py:2602", **engine_log)
    log(f"Using cache directory: {backbone} for vLLM's torch.compile", "backends.py:548", **engine_log)
    if signal.sigtimedwait(STOP_SIGNALS, seconds) is not None:
        return False
    if warm:
        log(
            f"Directly load the compiled graph(s) from the cache, took {seconds:.3f} s", "backends.py:161", **engine_log
        )
    else:
        backbone.mkdir(parents=True, exist_ok=True)
        (backbone / "vllm_compile_cache.py").write_text(f"# vllm-sim: compiled graphs for {args.model_tag}\n{{}}\n")
        log(f"Compiling a graph for dynamic shape takes {seconds:.2f} s", "monitor.py:34", **engine_log)
    log(f"init engine (profile, create kv cache, warmup model) took {seconds:.2f} seconds", "core.py:218", **engine_log)
    return True


# --- scheduling and metrics ----------------------------------------------------------------------


class Aborted(Exception):
    """The server is shutting down and gave up on this request."""


class Histogram:
    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.buckets = [0] * len(bounds)  # cumulative, as Prometheus exposes them
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.buckets[index] += 1

    def samples(self, name: str, labels: dict) -> list[tuple[str, dict, float]]:
        buckets = [*zip((str(bound) for bound in self.bounds), self.buckets, strict=True), ("+Inf", self.count)]
        rows = [(f"{name}_bucket", {**labels, "le": le}, count) for le, count in buckets]
        return [*rows, (f"{name}_count", labels, self.count), (f"{name}_sum", labels, self.sum)]


class Engine:
    """Request scheduling and the numbers /metrics reports, shared by the handler threads."""

    def __init__(self, max_num_seqs: int, ttft: float, prefill_tokens_per_second: float, tokens_per_second: float):
        self.max_num_seqs = max_num_seqs
        self.ttft = ttft
        self.prefill_interval = 1 / prefill_tokens_per_second
        self.token_interval = 1 / tokens_per_second
        self.lock = threading.Condition()
        self.in_flight = 0  # generation requests anywhere between their first byte read and last written
        self.running = 0
        self.waiting = 0
        self.aborted = threading.Event()
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.finished = dict.fromkeys(FINISH_REASONS, 0)
        self.ttft_seconds = Histogram(TTFT_BUCKETS)
        self.e2e_seconds = Histogram(E2E_BUCKETS)

    def _add(self, name: str, amount: int) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)
            self.lock.notify_all()

    @contextmanager
    def tracked(self):
        self._add("in_flight", 1)
        try:
            yield
        finally:
            self._add("in_flight", -1)

    @contextmanager
    def scheduled(self):
        """Hold one of --max-num-seqs sequence slots; beyond them requests wait, as in vLLM's scheduler."""
        with self.lock:
            self.waiting += 1
            self.lock.wait_for(lambda: self.running < self.max_num_seqs or self.aborted.is_set())
            self.waiting -= 1
            if self.aborted.is_set():
                raise Aborted
            self.running += 1
        try:
            yield
        finally:
            self._add("running", -1)

    def generate(self, arrival: float, prompt_tokens: int, tokens: list[str]):
        """Yield the tokens at the configured pace, counting them as vLLM's metrics do."""
        start = time.monotonic()
        first = start + self.ttft + prompt_tokens * self.prefill_interval
        reason = "abort"
        try:
            for index, token in enumerate(tokens):
                due = first + index * self.token_interval
                if self.aborted.wait(max(0.0, due - time.monotonic())):
                    raise Aborted
                with self.lock:
                    if index == 0:
                        self.prompt_tokens += prompt_tokens
                        self.ttft_seconds.observe(time.monotonic() - arrival)
                    self.generation_tokens += 1
                yield token
            reason = "length"
        finally:
            with self.lock:
                self.finished[reason] += 1
                self.e2e_seconds.observe(time.monotonic() - arrival)

    def abort(self) -> None:
        with self.lock:
            self.aborted.set()
            self.lock.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.in_flight == 0, timeout)

    def metrics(self, model_name: str) -> str:
        labels = {"model_name": model_name}
        lines: list[str] = []

        def family(name, kind, help_text, samples):
            lines.extend([f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"])
            for sample, sample_labels, value in samples:
                rendered = ",".join(f'{key}="{val}"' for key, val in sorted(sample_labels.items()))
                lines.append(f"{sample}{{{rendered}}} {float(value)}")

        with self.lock:
            gauges = (
                ("vllm:num_requests_running", "Number of requests in model execution batches.", self.running),
                ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", self.waiting),
                (
                    "vllm:kv_cache_usage_perc",
                    "KV-cache usage. 1 means 100 percent usage.",
                    self.running / self.max_num_seqs,
                ),
            )
            for name, help_text, value in gauges:
                family(name, "gauge", help_text, [(name, labels, value)])
            counters = (
                ("vllm:prompt_tokens_total", "Number of prefill tokens processed.", self.prompt_tokens),
                ("vllm:generation_tokens_total", "Number of generation tokens processed.", self.generation_tokens),
            )
            for name, help_text, value in counters:
                family(name, "counter", help_text, [(name, labels, value)])
            name = "vllm:request_success_total"
            family(
                name,
                "counter",
                "Count of successfully processed requests.",
                [(name, {**labels, "finished_reason": reason}, count) for reason, count in self.finished.items()],
            )
            name = "vllm:time_to_first_token_seconds"
            family(
                name,
                "histogram",
                "Histogram of time to first token in seconds.",
                self.ttft_seconds.samples(name, labels),
            )
            name = "vllm:e2e_request_latency_seconds"
            help_text = "Histogram of e2e request latency in seconds."
            family(name, "histogram", help_text, self.e2e_seconds.samples(name, labels))
        return "\n".join(lines) + "\n"


# --- the OpenAI API ------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "BadRequestError"):
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass
class Job:
    """One validated completion request and the answer the simulator gives it."""

    chat: bool
    model: str
    prompt_tokens: int
    tokens: list[str]
    stream: bool
    include_usage: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def envelope(self, object_name: str, **fields) -> dict:
        prefix = "chatcmpl" if self.chat else "cmpl"
        return {
            "id": f"{prefix}-{self.id}",
            "object": object_name,
            "created": self.created,
            "model": self.model,
            **fields,
        }

    def usage(self) -> dict:
        completion = len(self.tokens)
        return {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + completion,
            "completion_tokens": completion,
        }

    def response(self, text: str) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []}}
        else:
            choice = {"index": 0, "text": text}
        choice.update(logprobs=None, finish_reason="length", stop_reason=None)
        return self.envelope(
            "chat.completion" if self.chat else "text_completion", choices=[choice], usage=self.usage()
        )

    def chunk(self, token: str, finish_reason: str | None, role: bool = False) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": token} if role else {"content": token}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return self.envelope("chat.completion.chunk", choices=[choice])
        choice = {"index": 0, "text": token, "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}
        return self.envelope("text_completion", choices=[choice])

    def usage_chunk(self) -> dict:
        return self.envelope(
            "chat.completion.chunk" if self.chat else "text_completion", choices=[], usage=self.usage()
        )


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # parts: text ones count, images and the like do not
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def answer(text: str, count: int) -> list[str]:
    """A deterministic answer of `count` tokens: the prompt's words backwards, over and over."""
    words = re.findall(r"\w+", text.lower()) or ["ok"]
    return [("" if index == 0 else " ") + words[-1 - index % len(words)] for index in range(count)]


def parse_job(body: bytes, chat: bool, served_names: list[str], max_len: int) -> Job:
    try:
        request = json.loads(body)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError alike
        raise ApiError(400, f"JSON decode error: {error}") from None
    if not isinstance(request, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    if chat:
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "Field required: `messages` must be a non-empty list of message objects.")
        text = " ".join(_content_text(message.get("content")) for message in messages)
    else:
        text = request.get("prompt")
        if not isinstance(text, str):
            raise ApiError(400, "Field required: `prompt` must be a string (vllm-sim takes one prompt per request).")
    keys = ("max_completion_tokens", "max_tokens") if chat else ("max_tokens",)
    max_tokens = next((request[key] for key in keys if request.get(key) is not None), DEFAULT_MAX_TOKENS)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ApiError(400, f"max_tokens must be an integer of at least 1, got {max_tokens!r}.")
    model = request.get("model") or served_names[0]
    if model not in served_names:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError")
    prompt_tokens = max(1, len(text.split()))
    if prompt_tokens + max_tokens > max_len:
        raise ApiError(
            400,
            f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum context "
            f"length is {max_len} tokens and your request has {prompt_tokens} input tokens "
            f"({max_tokens} > {max_len} - {prompt_tokens}).",
        )
    stream = request.get("stream") is True
    options = request.get("stream_options")
    include_usage = stream and isinstance(options, dict) and options.get("include_usage") is True
    return Job(chat, model, prompt_tokens, answer(text, max_tokens), stream, include_usage)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked streams as uvicorn sends them
    server: SimServer

    def version_string(self) -> str:
        return "uvicorn"

    def log_request(self, code="-", size="-") -> None:
        status = http.HTTPStatus(int(code))
        host, port = self.client_address[:2]
        log_uvicorn(f'{host}:{port} - "{self.requestline}" {status.value} {status.phrase}')

    def log_message(self, format, *args) -> None:
        log_uvicorn(format % args, "WARNING")

    def handle(self) -> None:
        self.server.connections.opened(self)
        try:
            super().handle()
        finally:
            self.server.connections.closed(self)

    def do_GET(self) -> None:
        with self.server.connections.busy(self):
            self._route("GET", b"")

    def do_POST(self) -> None:
        with self.server.connections.busy(self):
            # Read the body first, whatever the route: left unread it would be parsed as the next request.
            self._route("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _authorized(self) -> bool:
        """vLLM's AuthenticationMiddleware: a Bearer token matching one of --api-key (or VLLM_API_KEY)."""
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        digest = hashlib.sha256(token.encode()).digest()
        return any([secrets.compare_digest(digest, key) for key in self.server.api_keys])

    def _route(self, method: str, body: bytes) -> None:
        path = self.path.partition("?")[0]
        methods = ROUTES.get(path)
        # Before routing, as the middleware runs: /health and /metrics stay open, OPTIONS too.
        if self.server.api_keys and path.startswith(GUARDED_PREFIX) and not self._authorized():
            self._json(401, {"error": "Unauthorized"})
        elif methods is None:
            self._json(404, {"detail": "Not Found"})
        elif method not in methods:
            self._json(405, {"detail": "Method Not Allowed"})
        else:
            getattr(self, methods[method])(body)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, dumps(payload).encode(), "application/json")

    def health(self, _body: bytes) -> None:
        self._send(200, b"", "application/json")

    def models(self, _body: bytes) -> None:
        model = self.server.model
        now = int(time.time())
        permission = {
            "id": f"modelperm-{uuid.uuid4().hex}",
            "object": "model_permission",
            "created": now,
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        cards = [
            {
                "id": name,
                "object": "model",
                "created": now,
                "owned_by": "vllm",
                "root": model.root,
                "parent": None,
                "max_model_len": model.max_model_len,
                "permission": [permission],
            }
            for name in model.served_names
        ]
        self._json(200, {"object": "list", "data": cards})

    def metrics(self, _body: bytes) -> None:
        text = self.server.engine.metrics(self.server.model.served_names[0])
        self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")

    def chat_completions(self, body: bytes) -> None:
        self._generate(body, chat=True)

    def completions(self, body: bytes) -> None:
        self._generate(body, chat=False)

    def _generate(self, body: bytes, chat: bool) -> None:
        arrival = time.monotonic()
        model, engine = self.server.model, self.server.engine
        with engine.tracked():
            try:
                job = parse_job(body, chat, model.served_names, model.max_model_len)
            except ApiError as error:
                envelope = {"message": str(error), "type": error.kind, "param": None, "code": error.status}
                self._json(error.status, {"error": envelope})
                return
            if _truthy("THORSIM_VLLM_BROKEN_GPU"):
                envelope = {"message": BROKEN_GPU_ERROR, "type": "InternalServerError", "param": None, "code": 500}
                self._json(500, {"error": envelope})
                return
            try:
                if job.stream:
                    self._start_stream()
                with engine.scheduled(), closing(engine.generate(arrival, job.prompt_tokens, job.tokens)) as tokens:
                    if job.stream:
                        self._stream(job, tokens)
                    else:
                        self._json(200, job.response("".join(tokens)))
            except (Aborted, BrokenPipeError, ConnectionResetError):
                # Cut the connection, as vLLM does when it aborts a request or its client has gone away.
                self.close_connection = True

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _event(self, data: str) -> None:
        event = f"data: {data}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))

    def _stream(self, job: Job, tokens) -> None:
        last = len(job.tokens) - 1
        for index, token in enumerate(tokens):
            if index == 0 and job.chat:
                self._event(dumps(job.chunk("", None, role=True)))
            self._event(dumps(job.chunk(token, "length" if index == last else None)))
        if job.include_usage:
            self._event(dumps(job.usage_chunk()))
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")


# vLLM's AuthenticationMiddleware guards these paths only.
GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere")
ROUTES = {
    "/health": {"GET": "health"},
    "/v1/models": {"GET": "models"},
    "/metrics": {"GET": "metrics"},
    "/v1/chat/completions": {"POST": "chat_completions"},
    "/v1/completions": {"POST": "completions"},
}


@dataclass
class ServedModel:
    root: str
    served_names: list[str]
    max_model_len: int


class Connections:
    """The server's open client connections, and which carry a request: at shutdown uvicorn closes the idle
    keep-alive ones at once and lets each busy one close after its answer, so that a client's pooled connection
    takes no new request while the server drains."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[BaseHTTPRequestHandler, bool] = {}
        self.closing = False

    def opened(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.open[handler] = False

    def closed(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.open.pop(handler, None)

    @contextmanager
    def busy(self, handler: BaseHTTPRequestHandler):
        with self.lock:
            self.open[handler] = True
        try:
            yield
        finally:
            with self.lock:
                self.open[handler] = False
                if self.closing:
                    handler.close_connection = True

    def close_idle(self) -> None:
        with self.lock:
            self.closing = True
            for handler, busy in self.open.items():
                if busy:
                    handler.close_connection = True
                else:
                    with suppress(OSError):
                        handler.connection.shutdown(socket.SHUT_RDWR)


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048  # uvicorn's backlog: bursts of clients queue rather than get refused

    def __init__(self, address: tuple[str, int], model: ServedModel, engine: Engine, api_keys: list[str] = ()):
        super().__init__(address, Handler, bind_and_activate=False)
        self.model = model
        self.engine = engine
        self.connections = Connections()
        # vLLM's AuthenticationMiddleware keeps the tokens' sha256 and compares each in constant time.
        self.api_keys = [hashlib.sha256(key.encode()).digest() for key in api_keys]

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)


# --- the server's life ---------------------------------------------------------------------------


def drain(server: SimServer, engine: Engine, timeout: int, signum: int) -> None:
    log_uvicorn("Shutting down")
    server.shutdown()
    server.server_close()  # new connections are refused from here on
    server.connections.close_idle()
    busy = engine.in_flight
    if busy:
        log(f"{signal.Signals(signum).name}: waiting up to {timeout} s (--shutdown-timeout) for {busy} request(s)")
        if engine.wait_idle(timeout):
            log("All in-flight requests finished")
        else:
            log(f"Aborting {engine.in_flight} request(s) still running", level="WARNING")
            engine.abort()
            engine.wait_idle(ABORT_GRACE_SECONDS)
    log_uvicorn("Waiting for application shutdown.")
    log_uvicorn("Application shutdown complete.")
    log_uvicorn(f"Finished server process [{os.getpid()}]")


def serve(args: argparse.Namespace) -> int:
    # Block the stop signals before any thread exists, so that only this thread's sigwait sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    defaults = vars(build_parser()[0].parse_args(["serve", args.model_tag]))
    log(f"vLLM API server version {VERSION}")
    log(f"non-default args: { ({k: v for k, v in vars(args).items() if v != defaults[k]}) }", "utils.py:328")
    args.served_model_name = args.served_model_name or [args.model_tag]
    try:
        config_path = find_snapshot(args.model_tag) / "config.json"
        try:
            config = json.loads(config_path.read_text())
        except ValueError as error:
            raise StartupError(f"OSError: {config_path} is not valid JSON: {error}") from None
        log(f"Resolved architecture: {(config.get('architectures') or ['?'])[0]}", "model.py:547")
        model = ServedModel(
            args.model_tag, args.served_model_name, max_model_len(args.model_tag, config, args.max_model_len)
        )
        log(f"Using max model len {model.max_model_len}", "model.py:1510")
        prefill, decode = pace_factor(config, args.speculative_config)
        engine = Engine(
            args.max_num_seqs,
            _seconds("THORSIM_VLLM_TTFT_SECONDS", 0.05),
            _seconds("THORSIM_VLLM_PREFILL_TOKENS_PER_SECOND", 20000) * prefill,
            _seconds("THORSIM_VLLM_TOKENS_PER_SECOND", 200) * decode,
        )
        # --api-key outranks VLLM_API_KEY, as in vLLM's middleware registration.
        api_keys = [key for key in (args.api_key or [os.environ.get("VLLM_API_KEY")]) if key]
        server = SimServer((args.host, args.port), model, engine, api_keys)
        # vLLM binds before it loads but listens only once loaded: the port is taken, connections are refused.
        try:
            server.server_bind()
        except OSError as error:
            server.server_close()
            raise StartupError(f"OSError: {error}") from None
    except StartupError as error:
        print(error, file=sys.stderr, flush=True)
        return 1
    if not load(args):
        log("Stop signal received while loading; exiting")
        server.server_close()
        return 0
    server.server_activate()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    log(f"Starting vLLM API server 0 on http://{args.host}:{args.port}", "api_server.py:1971")
    log_uvicorn(f"Started server process [{os.getpid()}]")
    log_uvicorn("Waiting for application startup.")
    log_uvicorn("Application startup complete.")
    log_uvicorn(f"Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")
    drain(server, engine, args.shutdown_timeout, signal.sigwait(STOP_SIGNALS))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, command = build_parser()
    # What `vllm serve` checks before it loads: a refused setting ends it with vLLM's message.
    try:
        args = parser.parse_args(argv)
        command.validate(args)
        if not (args.tool_parser_plugin or args.reasoning_parser_plugin):
            validate_api_server_args(args)
            if args.reasoning_parser:
                ReasoningParserManager.get_reasoning_parser(args.reasoning_parser)
    except (OSError, KeyError, TypeError, ValueError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return 1
    args.model_tag = args.model_tag or args.model
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())

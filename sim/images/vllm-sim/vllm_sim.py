#!/usr/bin/env python3
"""vllm-sim: a stand-in for vLLM's OpenAI-compatible server, for tests on machines with no GPU.

`vllm_sim.py serve MODEL [flags]` takes vLLM's flags, finds MODEL in the Hugging Face hub cache,
"loads" it while the port refuses connections, then serves /health, /v1/models,
/v1/chat/completions, /v1/completions and /metrics as vLLM does, and drains on SIGTERM.
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
import signal
import socketserver
import sys
import threading
import time
import uuid
from contextlib import closing, contextmanager
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


# --- command line ------------------------------------------------------------------------------


class FlexibleArgumentParser(argparse.ArgumentParser):
    """Takes `--flag_name` for `--flag-name`, as vLLM's parser of the same name does."""

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else args
        return super().parse_args([_hyphenate(arg) for arg in args], namespace)


def _hyphenate(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, equals, value = arg.partition("=")
    return name.replace("_", "-") + equals + value


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _memory_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text!r}")
    return value


def build_parser() -> FlexibleArgumentParser:
    parser = FlexibleArgumentParser(prog="vllm", description="vLLM CLI (vllm-sim, a stand-in for tests)")
    parser.add_argument("-v", "--version", action="version", version=VERSION)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Start the vLLM OpenAI-compatible API server.")
    serve.add_argument("model_tag", metavar="MODEL", help="Hugging Face repo id, looked up in the hub cache")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", nargs="+")
    serve.add_argument("--max-model-len", type=_int_at_least(1))
    serve.add_argument("--tensor-parallel-size", type=_int_at_least(1), default=1)
    serve.add_argument("--gpu-memory-utilization", type=_memory_fraction, default=0.9)
    serve.add_argument("--dtype", default="auto", choices=("auto", "half", "float16", "bfloat16", "float", "float32"))
    serve.add_argument("--kv-cache-dtype", default="auto")
    serve.add_argument("--quantization")
    serve.add_argument("--max-num-seqs", type=_int_at_least(1), default=256)
    serve.add_argument("--max-num-batched-tokens", type=_int_at_least(1))
    for name in ("--limit-mm-per-prompt", "--mm-processor-kwargs", "--compilation-config", "--speculative-config"):
        serve.add_argument(name, type=_json_object)
    for name in (
        "--enable-chunked-prefill",
        "--enable-prefix-caching",
        "--async-scheduling",
        "--enable-auto-tool-choice",
        "--trust-remote-code",
        "--disable-custom-all-reduce",
    ):
        serve.add_argument(name, action=argparse.BooleanOptionalAction)
    serve.add_argument("--tool-call-parser")
    serve.add_argument("--generation-config", default="auto")
    serve.add_argument("--shutdown-timeout", type=_int_at_least(0), default=0)
    serve.add_argument("--download-dir")
    return parser


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

    def do_GET(self) -> None:
        self._route("GET", b"")

    def do_POST(self) -> None:
        # Read the body first, whatever the route: left unread it would be parsed as the next request.
        self._route("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _route(self, method: str, body: bytes) -> None:
        methods = ROUTES.get(self.path.partition("?")[0])
        if methods is None:
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


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048  # uvicorn's backlog: bursts of clients queue rather than get refused

    def __init__(self, address: tuple[str, int], model: ServedModel, engine: Engine):
        super().__init__(address, Handler, bind_and_activate=False)
        self.model = model
        self.engine = engine

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)


# --- the server's life ---------------------------------------------------------------------------


def drain(server: SimServer, engine: Engine, timeout: int, signum: int) -> None:
    log_uvicorn("Shutting down")
    server.shutdown()
    server.server_close()  # new connections are refused from here on
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
    defaults = vars(build_parser().parse_args(["serve", args.model_tag]))
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
        server = SimServer((args.host, args.port), model, engine)
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
    return serve(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

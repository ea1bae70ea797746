"""vllm-sim, the vLLM stand-in, run for real: a subprocess on 127.0.0.1 over a fake HF hub cache."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from thorsim import SIM_DIR
from thorsim.hfcache import DEFAULT_REVISION, make_model, repo_dir
from vllm_corpus import REJECTED

SIM = SIM_DIR / "images" / "vllm-sim" / "vllm_sim.py"
MODEL = "thor-lab/tiny-llm"
SERVED = "tiny"
ALIAS = "tiny-alias"
FAST = {
    "THORSIM_VLLM_LOAD_SECONDS": "0.2",
    "THORSIM_VLLM_WARM_LOAD_SECONDS": "0.05",
    "THORSIM_VLLM_TTFT_SECONDS": "0.01",
    "THORSIM_VLLM_TOKENS_PER_SECOND": "1000",
}
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to Thor"}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def call(port: int, method: str, path: str, payload=None, body: bytes | None = None):
    """One request on its own connection: (status, parsed JSON or raw bytes)."""
    if payload is not None:
        body = json.dumps(payload).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        data = response.read()
        is_json = response.getheader("Content-Type", "").startswith("application/json") and data
        return response.status, json.loads(data) if is_json else data
    finally:
        conn.close()


def stream(port: int, path: str, payload: dict, events: list | None = None) -> list[tuple[float, str]]:
    """The SSE `data:` payloads of a streamed request, each with the seconds since the request was sent."""
    events = [] if events is None else events
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        start = time.monotonic()
        conn.request("POST", path, body=json.dumps({**payload, "stream": True}).encode())
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/event-stream")
        for line in response:
            if line.startswith(b"data: "):
                events.append((time.monotonic() - start, line[6:].decode().strip()))
        return events
    finally:
        conn.close()


def metrics(port: int) -> dict[str, float]:
    status, body = call(port, "GET", "/metrics")
    assert status == 200
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def sample(name: str, **labels: str) -> str:
    labels = {"model_name": SERVED, **labels}
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


def wait_for(condition, timeout: float = 5.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return result


class Sim:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.started = time.monotonic()

    def output(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout: float = 10.0) -> float:
        """Seconds from launch until /health answers; fails if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"vllm-sim exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"vllm-sim not ready after {timeout} s:\n{self.output()}"
            try:
                if call(self.port, "GET", "/health")[0] == 200:
                    return time.monotonic() - self.started
            except ConnectionError:
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


class Launcher:
    """Starts vllm-sim over a hub cache of its own, holding MODEL, with nothing of this host's env."""

    def __init__(self, root: Path):
        self.root = root
        self.hub = root / "hub"
        self.compile_cache = root / "vllm-cache"
        self.sims: list[Sim] = []
        make_model(self.hub, MODEL)

    def env(self, extra: dict | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "HF_", "THORSIM_"))}
        env.update(HOME=str(self.root / "home"), HF_HUB_CACHE=str(self.hub), HF_HUB_OFFLINE="1")
        env.update(VLLM_CACHE_ROOT=str(self.compile_cache), **FAST)
        env.update(extra or {})
        return {k: v for k, v in env.items() if v is not None}

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        command = [sys.executable, str(SIM), *args]
        return subprocess.run(command, capture_output=True, text=True, env=self.env(env), timeout=10, check=False)

    def start(self, *flags: str, env: dict | None = None, ready: bool = True, model: str = MODEL) -> Sim:
        port = free_port()
        log = self.root / f"vllm-sim-{port}.log"
        command = [sys.executable, str(SIM), "serve", model, "--host", "127.0.0.1", "--port", str(port), *flags]
        with log.open("w") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env(env))
        sim = Sim(proc, port, log)
        self.sims.append(sim)
        if ready:
            sim.wait_ready()
        return sim

    def close(self) -> None:
        for sim in self.sims:
            if sim.proc.poll() is None:
                sim.proc.kill()
                sim.proc.wait()


@pytest.fixture
def launcher(tmp_path):
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One running server for the request/response checks, with a small context to overflow."""
    launcher = Launcher(tmp_path_factory.mktemp("served"))
    yield launcher.start("--served-model-name", SERVED, ALIAS, "--max-model-len", "64")
    launcher.close()


# --- the fake HF cache -------------------------------------------------------------------------------------


def test_make_model_writes_the_hub_layout_with_relative_links(tmp_path):
    files = {"config.json": b'{"max_position_embeddings": 128}', "tokenizer/vocab.json": b"{}"}
    snapshot = make_model(tmp_path, "org/name", files, revision="a" * 40)
    repo = tmp_path / "models--org--name"
    assert repo_dir(tmp_path, "org/name") == repo
    assert snapshot == repo / "snapshots" / ("a" * 40)
    assert (repo / "refs" / "main").read_text() == "a" * 40
    for name, content in files.items():
        link = snapshot / name
        digest = hashlib.sha256(content).hexdigest()
        assert link.is_symlink()
        assert os.readlink(link) == os.path.relpath(repo / "blobs" / digest, link.parent)
        assert os.readlink(link).startswith("../../")
        assert link.read_bytes() == content
    assert sorted(p.name for p in (repo / "blobs").iterdir()) == sorted(
        hashlib.sha256(c).hexdigest() for c in files.values()
    )

    # A second revision moves refs/main and shares the blob it has in common with the first.
    make_model(tmp_path, "org/name", {"config.json": files["config.json"]}, revision="b" * 40)
    assert (repo / "refs" / "main").read_text() == "b" * 40
    assert len(list((repo / "blobs").iterdir())) == 2


def test_make_model_defaults_to_a_config_and_a_small_valid_safetensors(tmp_path):
    snapshot = make_model(tmp_path, "org/a")
    assert snapshot.name == DEFAULT_REVISION
    assert len(DEFAULT_REVISION) == 40
    assert json.loads((snapshot / "config.json").read_bytes())["architectures"]
    weights = (snapshot / "model.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8 : 8 + header_len])
    start, end = header["weight"]["data_offsets"]
    assert len(weights) == 8 + header_len + end - start
    assert 1024 < len(weights) < 16384
    assert (make_model(tmp_path, "org/b") / "model.safetensors").read_bytes() != weights


# --- command line --------------------------------------------------------------------------------------


# The corpus's refusals (the parser's are exit 2 with usage, as argparse's), which `serve` must not get past;
# sim/tests/test_vllm_sim_parser.py holds vllm-sim's parser to the whole corpus.
@pytest.mark.parametrize(
    "name", ["unknown-flag", "removed-disable-log-requests", "compilation-config-level-0", "max-model-len-fraction"]
)
def test_flags_vllm_rejects_exit_2_with_usage(launcher, name):
    argv, _stage, fragment = REJECTED[name]
    result = launcher.run("serve", *argv)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: vllm ")
    assert fragment in result.stderr


@pytest.mark.parametrize(
    "name", ["auto-tool-choice-without-parser", "tool-call-parser-unknown", "reasoning-parser-unknown"]
)
def test_settings_vllm_refuses_before_loading_exit_1_with_its_message(launcher, name):
    argv, _stage, fragment = REJECTED[name]
    result = launcher.run("serve", *argv)
    assert result.returncode == 1, result.stderr
    assert fragment in result.stderr


def test_every_flag_parses_with_hyphens_or_underscores(launcher):
    flags = [
        "--host=127.0.0.1",
        "--port",
        "0",
        "--served-model-name",
        "a",
        "b",
        "--max_model_len",
        "1024",
        "--tensor-parallel-size",
        "1",
        "--gpu_memory_utilization",
        "0.8",
        "--dtype",
        "bfloat16",
        "--kv-cache-dtype",
        "fp8",
        "--quantization",
        "mxfp4",
        "--max-num-seqs",
        "8",
        "--max_num_batched_tokens",
        "8192",
        "--limit-mm-per-prompt",
        '{"image": 2}',
        "--mm-processor-kwargs",
        "{}",
        "--compilation-config",
        '{"mode": 3}',
        "--speculative_config",
        '{"method": "eagle3", "num_speculative_tokens": 3}',
        "--enable-chunked-prefill",
        "--no-enable-prefix-caching",
        "--async-scheduling",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "qwen3_xml",
        "--generation-config",
        "vllm",
        "--trust_remote_code",
        "--disable-custom-all-reduce",
        "--shutdown-timeout",
        "30",
        "--download-dir",
        "/models",
    ]
    # Exit 1 is the model lookup failing: every flag got past the parser.
    result = launcher.run("serve", "org/absent", *flags)
    assert result.returncode == 1, result.stderr
    assert "'max_model_len': 1024" in result.stdout
    assert "'trust_remote_code': True" in result.stdout


def test_version(launcher):
    result = launcher.run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, "0.31.0")


# --- finding the model ---------------------------------------------------------------------------------


def _lose_the_weights_blob(hub: Path) -> None:
    snapshot = repo_dir(hub, MODEL) / "snapshots" / DEFAULT_REVISION
    (snapshot / "model.safetensors").resolve().unlink()


@pytest.mark.parametrize(
    ("model", "breakage", "message"),
    [
        ("org/absent", lambda hub: None, "HF_HUB_OFFLINE"),
        (MODEL, lambda hub: (repo_dir(hub, MODEL) / "refs" / "main").unlink(), "HF_HUB_OFFLINE"),
        (MODEL, lambda hub: make_model(hub, MODEL, {"model.safetensors": b"w"}, revision="c" * 40), "HF_HUB_OFFLINE"),
        (MODEL, lambda hub: make_model(hub, MODEL, {"config.json": b"{}"}, revision="d" * 40), "model weights"),
        (MODEL, _lose_the_weights_blob, "missing blobs: model.safetensors"),
    ],
    ids=["absent", "no-refs-main", "no-config", "no-weights", "blobs-not-copied"],
)
def test_a_model_missing_from_the_offline_cache_exits_1(launcher, model, breakage, message):
    breakage(launcher.hub)
    result = launcher.run("serve", model)
    assert result.returncode == 1
    assert message in result.stderr
    assert model in result.stderr


def test_a_missing_model_exits_1_online_too_since_nothing_downloads(launcher):
    result = launcher.run("serve", "org/absent", env={"HF_HUB_OFFLINE": None})
    assert result.returncode == 1
    assert "org/absent" in result.stderr
    assert "never downloads" in result.stderr


def test_hub_cache_falls_back_to_hf_home(launcher):
    env = {"HF_HUB_CACHE": None, "HF_HOME": str(launcher.root / "hf")}
    assert launcher.run("serve", MODEL, env=env).returncode == 1
    make_model(launcher.root / "hf" / "hub", MODEL)
    launcher.start(env=env).stop()


def test_max_model_len_is_bounded_by_the_model_config(launcher):
    result = launcher.run("serve", MODEL, "--max-model-len", "8192")
    assert result.returncode == 1
    assert "max_model_len (8192)" in result.stderr
    assert "VLLM_ALLOW_LONG_MAX_MODEL_LEN" in result.stderr
    sim = launcher.start("--max-model-len", "8192", env={"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"})
    assert call(sim.port, "GET", "/v1/models")[1]["data"][0]["max_model_len"] == 8192


def test_a_taken_port_exits_1(launcher):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = launcher.run("serve", MODEL, "--host", "127.0.0.1", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 1
    assert "Address already in use" in result.stderr


# --- loading and the compile cache -----------------------------------------------------------------


def test_refuses_connections_while_loading_then_starts_warm_from_the_compile_cache(launcher):
    timing = {"THORSIM_VLLM_LOAD_SECONDS": "0.8", "THORSIM_VLLM_WARM_LOAD_SECONDS": "0.05"}
    cold = launcher.start(env=timing, ready=False)
    wait_for(lambda: "Starting to load model" in cold.output(), what="loading")
    assert refused(cold.port)
    assert cold.wait_ready() >= 0.8
    startup = [line.partition(") ")[2] for line in cold.output().splitlines() if "INFO:     " in line][2:4]
    assert startup == [
        "INFO:     Application startup complete.",
        f"INFO:     Uvicorn running on http://127.0.0.1:{cold.port} (Press CTRL+C to quit)",
    ]
    assert "Directly load the compiled graph(s) from the cache" not in cold.output()
    assert cold.stop() == 0
    cache = launcher.compile_cache / "torch_compile_cache"
    (key,) = cache.iterdir()
    assert len(key.name) == 10
    assert any(p.is_file() for p in key.rglob("*"))

    # Another port and shutdown timeout compile the same: warm (said in the log; a start's time varies with load).
    warm = launcher.start("--shutdown-timeout", "5", env=timing, ready=False)
    warm.wait_ready()
    assert "Directly load the compiled graph(s) from the cache" in warm.output()
    assert warm.stop() == 0
    assert list(cache.iterdir()) == [key]

    # Another VLLM_* variable or another model flag does not: cold, with a key of its own.
    for flags, env in (((), {"VLLM_USE_V2": "1"}), (("--max-num-seqs", "8"), {})):
        other = launcher.start(*flags, env={**timing, **env}, ready=False)
        assert other.wait_ready() >= 0.8
        assert other.stop() == 0
    assert len(list(cache.iterdir())) == 3


def test_sigterm_while_loading_exits_0(launcher):
    sim = launcher.start(env={"THORSIM_VLLM_LOAD_SECONDS": "30"}, ready=False)
    wait_for(lambda: "Starting to load model" in sim.output(), what="loading")
    assert sim.stop(timeout=2) == 0
    assert not (launcher.compile_cache / "torch_compile_cache").exists()


# --- the API ---------------------------------------------------------------------------------------


def test_health_is_200_with_an_empty_body_and_unknown_paths_404(server):
    assert call(server.port, "GET", "/health") == (200, b"")
    assert call(server.port, "GET", "/v1/nothing") == (404, {"detail": "Not Found"})
    assert call(server.port, "GET", "/v1/chat/completions") == (405, {"detail": "Method Not Allowed"})


def test_models_lists_the_served_names(server):
    status, body = call(server.port, "GET", "/v1/models")
    assert status == 200
    assert body["object"] == "list"
    fields = ("id", "object", "owned_by", "root", "max_model_len")
    assert [{k: card[k] for k in fields} for card in body["data"]] == [
        {"id": name, "object": "model", "owned_by": "vllm", "root": MODEL, "max_model_len": 64}
        for name in (SERVED, ALIAS)
    ]
    assert abs(body["data"][0]["created"] - time.time()) < 60


def test_chat_completion_answers_deterministically_with_usage(server):
    status, body = call(
        server.port, "POST", "/v1/chat/completions", {"model": SERVED, "messages": HELLO, "max_tokens": 6}
    )
    assert status == 200
    assert body["id"].startswith("chatcmpl-")
    assert (body["object"], body["model"]) == ("chat.completion", SERVED)
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "thor to hello say brief be"
    assert choice["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 6, "total_tokens": 12}
    again = call(server.port, "POST", "/v1/chat/completions", {"model": SERVED, "messages": HELLO, "max_tokens": 6})
    assert again[1]["choices"][0]["message"]["content"] == choice["message"]["content"]


def test_chat_completion_defaults_to_16_tokens_and_the_served_model(server):
    status, body = call(server.port, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert status == 200
    assert body["model"] == SERVED
    assert body["choices"][0]["message"]["content"] == " ".join(["hi"] * 16)
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 16, "total_tokens": 17}


def test_chat_completion_reads_text_parts_and_max_completion_tokens(server):
    content = [{"type": "text", "text": "alpha beta"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    payload = {"model": ALIAS, "messages": [{"role": "user", "content": content}], "max_completion_tokens": 3}
    status, body = call(server.port, "POST", "/v1/chat/completions", payload)
    assert status == 200
    assert body["model"] == ALIAS
    assert body["choices"][0]["message"]["content"] == "beta alpha beta"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_text_completion(server):
    status, body = call(server.port, "POST", "/v1/completions", {"model": SERVED, "prompt": "one two", "max_tokens": 3})
    assert status == 200
    assert body["id"].startswith("cmpl-")
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "two one two"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        ("/v1/chat/completions", {"model": "gpt-4", "messages": HELLO}, 404, "The model `gpt-4` does not exist."),
        ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "The model `gpt-4` does not exist."),
        ("/v1/chat/completions", b"{not json", 400, "JSON decode error"),
        ("/v1/chat/completions", {"model": SERVED}, 400, "messages"),
        ("/v1/chat/completions", {"model": SERVED, "messages": []}, 400, "messages"),
        ("/v1/completions", {"model": SERVED}, 400, "prompt"),
        ("/v1/completions", {"model": SERVED, "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        (
            "/v1/completions",
            {"model": SERVED, "prompt": "a b c d", "max_tokens": 61},
            400,
            "maximum context length is 64",
        ),
    ],
)
def test_bad_requests_get_openai_error_envelopes(server, path, payload, status, message):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    got_status, got = call(server.port, "POST", path, body=body)
    assert got_status == status
    assert got["error"]["code"] == status
    assert got["error"]["type"] == ("NotFoundError" if status == 404 else "BadRequestError")
    assert got["error"]["param"] is None
    assert message in got["error"]["message"]


def test_streamed_chat_has_a_role_chunk_tokens_usage_and_done(server):
    payload = {"model": SERVED, "messages": HELLO, "max_tokens": 3, "stream_options": {"include_usage": True}}
    events = [data for _, data in stream(server.port, "/v1/chat/completions", payload)]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    tokens = chunks[1:-1]
    assert "".join(c["choices"][0]["delta"]["content"] for c in tokens) == "thor to hello"
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None, None, "length"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}


def test_streamed_completion_without_usage(server):
    payload = {"model": SERVED, "prompt": "a b", "max_tokens": 2}
    events = [data for _, data in stream(server.port, "/v1/completions", payload)]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(data) for data in events[:-1]]
    assert [c["choices"][0]["text"] for c in chunks] == ["b", " a"]
    assert all("usage" not in c for c in chunks)


def test_metrics_count_tokens_requests_and_latency(server):
    before = metrics(server.port)
    call(server.port, "POST", "/v1/completions", {"model": SERVED, "prompt": "a b c", "max_tokens": 4})
    stream(server.port, "/v1/chat/completions", {"model": SERVED, "messages": HELLO, "max_tokens": 2})
    after = metrics(server.port)

    def delta(name, **labels):
        return after[sample(name, **labels)] - before.get(sample(name, **labels), 0.0)

    assert delta("vllm:prompt_tokens_total") == 3 + 6
    assert delta("vllm:generation_tokens_total") == 4 + 2
    assert delta("vllm:request_success_total", finished_reason="length") == 2
    for histogram in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"):
        assert delta(f"{histogram}_count") == 2
        assert delta(f"{histogram}_bucket", le="+Inf") == 2
        assert delta(f"{histogram}_sum") > 0
    assert after[sample("vllm:time_to_first_token_seconds_bucket", le="0.001")] == 0
    for gauge in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert after[sample(gauge)] == 0


# --- pacing, scheduling, shutdown ------------------------------------------------------------------


def test_tokens_are_paced_and_requests_beyond_max_num_seqs_wait(launcher):
    pace = {"THORSIM_VLLM_TTFT_SECONDS": "0.3", "THORSIM_VLLM_TOKENS_PER_SECOND": "20"}
    sim = launcher.start("--served-model-name", SERVED, "--max-num-seqs", "1", env=pace)
    payload = {"model": SERVED, "messages": HELLO, "max_tokens": 5}
    results: list[list] = [[], []]
    threads = [threading.Thread(target=stream, args=(sim.port, "/v1/chat/completions", payload, r)) for r in results]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # so that the first thread's request is the one that runs first
    running = wait_for(lambda: (m := metrics(sim.port))[sample("vllm:num_requests_waiting")] == 1 and m, what="waiting")
    assert running[sample("vllm:num_requests_running")] == 1
    assert running[sample("vllm:kv_cache_usage_perc")] == 1.0
    for thread in threads:
        thread.join(10)

    # TTFT 0.3 s, then 20 tokens/s: the 5th token at 0.3 + 4 / 20 = 0.5 s; the second request waits for that.
    first, second = ([t for t, data in r if '"content":"' in data and '"role"' not in data] for r in results)
    assert len(first) == len(second) == 5
    assert 0.3 <= first[0] < 0.6
    assert 0.5 <= first[-1] < 1.0
    assert second[0] >= 0.7
    assert metrics(sim.port)[sample("vllm:request_success_total", finished_reason="length")] == 2


def _first_and_last_token(port: int, words: int, tokens: int) -> tuple[float, float]:
    payload = {"model": SERVED, "messages": [{"role": "user", "content": "go " * words}], "max_tokens": tokens}
    times = [t for t, data in stream(port, "/v1/chat/completions", payload) if '"content":"' in data]
    return times[0], times[-1] - times[0]


def test_pace_follows_the_weights_precision_and_speculative_decoding(launcher):
    """Prefill and decode at the 16-bit rates; ModelOpt NVFP4 four times as fast; EAGLE3 drafts on top."""
    config = {
        "max_position_embeddings": 4096,
        "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"},
    }
    make_model(launcher.hub, "nvidia/tiny-FP4", {"config.json": json.dumps(config).encode(), "model.safetensors": b"w"})
    pace = {
        "THORSIM_VLLM_TTFT_SECONDS": "0",
        "THORSIM_VLLM_PREFILL_TOKENS_PER_SECOND": "1000",
        "THORSIM_VLLM_TOKENS_PER_SECOND": "20",
    }
    eagle = json.dumps({"method": "eagle3", "model": "tiny-draft", "num_speculative_tokens": 5})
    sims = {
        "bf16": launcher.start("--served-model-name", SERVED, env=pace),
        "fp4": launcher.start("--served-model-name", SERVED, env=pace, model="nvidia/tiny-FP4"),
        "fp4+eagle3": launcher.start(
            "--served-model-name", SERVED, "--speculative-config", eagle, env=pace, model="nvidia/tiny-FP4"
        ),
    }
    timed = {name: _first_and_last_token(sim.port, 400, 21) for name, sim in sims.items()}
    # bf16: 400 prompt tokens at 1000/s, then 20 tokens at 20/s; NVFP4 a quarter of both.
    assert 0.4 <= timed["bf16"][0] < 0.6 and 0.9 <= timed["bf16"][1] < 1.3, timed
    assert 0.1 <= timed["fp4"][0] < 0.25 and 0.22 <= timed["fp4"][1] < 0.4, timed
    # Five drafted tokens at 0.6 acceptance: 2.38 tokens a step for 1.5 times a step's cost.
    assert 0.1 <= timed["fp4+eagle3"][0] < 0.25 and 0.13 <= timed["fp4+eagle3"][1] < 0.21, timed


def test_a_client_going_away_aborts_its_request(launcher):
    sim = launcher.start("--served-model-name", SERVED, env={"THORSIM_VLLM_TOKENS_PER_SECOND": "10"})
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    payload = {"model": SERVED, "prompt": "x", "max_tokens": 100, "stream": True}
    conn.request("POST", "/v1/completions", body=json.dumps(payload).encode())
    conn.getresponse().readline()
    conn.close()
    wait_for(lambda: metrics(sim.port)[sample("vllm:request_success_total", finished_reason="abort")] == 1)
    assert metrics(sim.port)[sample("vllm:num_requests_running")] == 0


def _ten_token_stream(port: int) -> tuple[threading.Thread, list]:
    events: list = []
    payload = {"model": SERVED, "prompt": "x", "max_tokens": 10}
    client = threading.Thread(target=stream, args=(port, "/v1/completions", payload, events))
    client.start()
    return client, events


def test_sigterm_aborts_in_flight_requests_by_default(launcher):
    sim = launcher.start("--served-model-name", SERVED, env={"THORSIM_VLLM_TOKENS_PER_SECOND": "2"})
    client, events = _ten_token_stream(sim.port)
    wait_for(lambda: metrics(sim.port)[sample("vllm:num_requests_running")] == 1, what="running")
    stopped = time.monotonic()
    assert sim.stop(timeout=5) == 0
    assert time.monotonic() - stopped < 1.5
    client.join(5)
    assert not client.is_alive()
    assert 0 < len(events) < 10  # cut off: some tokens, no [DONE]
    assert all(data != "[DONE]" for _, data in events)
    assert "Aborting 1 request(s) still running" in sim.output()
    assert refused(sim.port)


def test_sigterm_drains_in_flight_requests_for_the_shutdown_timeout(launcher):
    sim = launcher.start(
        "--served-model-name", SERVED, "--shutdown-timeout", "10", env={"THORSIM_VLLM_TOKENS_PER_SECOND": "10"}
    )
    client, events = _ten_token_stream(sim.port)
    wait_for(lambda: metrics(sim.port)[sample("vllm:num_requests_running")] == 1, what="running")
    stopped = time.monotonic()
    sim.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "waiting up to 10 s" in sim.output(), what="draining")
    assert sim.proc.poll() is None
    assert refused(sim.port)  # no new connections while draining
    assert sim.proc.wait(10) == 0
    assert 0.5 < time.monotonic() - stopped < 3  # ten tokens at 10/s, not the whole 10 s
    client.join(5)
    assert [data for _, data in events][10:] == ["[DONE]"]
    assert "All in-flight requests finished" in sim.output()


def test_sigterm_closes_idle_keep_alive_connections_and_busy_ones_after_their_answer(launcher):
    """As uvicorn does: a client's pooled connection takes no new request once the server drains."""
    sim = launcher.start(
        "--served-model-name", SERVED, "--shutdown-timeout", "10", env={"THORSIM_VLLM_TOKENS_PER_SECOND": "10"}
    )
    idle = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    idle.request("GET", "/health")
    assert idle.getresponse().read() == b""
    busy = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    body = {"model": SERVED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    busy.request("POST", "/v1/chat/completions", body=json.dumps(body).encode())
    wait_for(lambda: metrics(sim.port)[sample("vllm:num_requests_running")] == 1, what="running")
    sim.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "waiting up to 10 s" in sim.output(), what="draining")
    # The idle connection was closed: a request on it finds no server.
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        idle.request("GET", "/health")
        idle.getresponse()
    # The busy one gets its whole answer, then is closed.
    answer = busy.getresponse()
    assert answer.status == 200 and json.loads(answer.read())["choices"]
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        busy.request("GET", "/health")
        busy.getresponse()
    assert sim.proc.wait(10) == 0

"""llm_benchmark against a real vllm-sim on loopback: real HTTP, real streams, the simulator's known pace."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from ansible.module_utils import _internal as module_utils_internal
from ansible.module_utils.testing import patch_module_args
from ansible_collections.thorfleet.llm.plugins.filter.benchmark import benchmark_rows
from ansible_collections.thorfleet.llm.plugins.module_utils._benchmark import percentile, summarize, timed_stream
from ansible_collections.thorfleet.llm.plugins.modules import benchmark_chart, llm_benchmark, usage_chart
from test_vllm_sim import SERVED, Launcher

from ..docs import assert_documented
from ..filter.test_benchmark import run_record

# 100 prompt tokens at 2000/s and a 50 ms base: TTFT 0.1 s; then 50 tokens/s.
PACE = {
    "THORSIM_VLLM_TTFT_SECONDS": "0.05",
    "THORSIM_VLLM_PREFILL_TOKENS_PER_SECOND": "2000",
    "THORSIM_VLLM_TOKENS_PER_SECOND": "50",
}


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    launcher = Launcher(tmp_path_factory.mktemp("bench"))
    yield launcher.start("--served-model-name", SERVED, "--max-num-seqs", "4", env=PACE)
    launcher.close()


@pytest.fixture
def run(capsys, monkeypatch):
    monkeypatch.setattr(module_utils_internal, "is_controller", False)

    def run(module, args, check=False):
        with patch_module_args({**args, "_ansible_check_mode": check}), pytest.raises(SystemExit) as exited:
            module.main()
        result = json.loads(capsys.readouterr().out)
        assert bool(result.get("failed")) == (exited.value.code != 0), result
        return result

    return run


def bench(vllm, **args):
    """The module's arguments against `vllm`; an argument given as None is left out."""
    args = {"api_url": f"http://127.0.0.1:{vllm.port}", "api_key": "sk-bench", "model": SERVED, **args}
    return {key: value for key, value in args.items() if value is not None}


def test_documentation_matches_the_argument_specs():
    assert_documented(llm_benchmark.DOCUMENTATION, llm_benchmark.argument_spec())
    assert_documented(benchmark_chart.DOCUMENTATION, benchmark_chart.argument_spec())
    assert_documented(usage_chart.DOCUMENTATION, usage_chart.argument_spec())


def test_percentiles_interpolate_between_ranks_as_numpy_does():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile(range(1, 21), 95) == pytest.approx(19.05)
    assert summarize([1.0, None, 3.0]) == {"median": 2.0, "p95": 2.9, "min": 1.0, "max": 3.0, "n": 2}


def test_a_stream_is_timed_from_its_first_token_and_counted_by_its_usage():
    lines = [
        b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n',
        b"\n",
        b'data: {"choices":[{"delta":{"reasoning_content":"hm"}}]}\n',
        b'data: {"choices":[{"delta":{"content":"a"}}]}\n',
        b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":9}}\n',
        b"data: [DONE]\n",
    ]
    sample = timed_stream(iter(lines), 0.0)
    assert sample["prompt_tokens"] == 7 and sample["completion_tokens"] == 9 and sample["tokens_counted"] == "usage"
    assert sample["done"] and 0 < sample["ttft_s"] <= sample["e2e_s"]
    without_usage = timed_stream(iter(lines[:4] + lines[5:]), 0.0)
    assert without_usage["completion_tokens"] == 2 and without_usage["tokens_counted"] == "chunks"
    with pytest.raises(ValueError, match="error"):
        timed_stream(iter([b'data: {"error":{"message":"boom"}}\n']), 0.0)


def test_it_measures_the_servers_pace_over_real_http(run, vllm):
    result = run(llm_benchmark, bench(vllm, prompt_tokens=100, max_tokens=11, trials=3))

    assert not result["changed"]
    samples = result["samples"]
    assert [s["trial"] for s in samples] == [1, 2, 3]
    assert all(s["prompt_tokens"] == 100 and s["completion_tokens"] == 11 for s in samples)
    # TTFT 0.05 + 100/2000 = 0.1 s; then 10 tokens at 50/s: 0.2 s more.
    assert 0.09 <= result["summary"]["ttft_s"]["median"] < 0.2, result["summary"]
    assert 40 <= result["summary"]["tokens_per_s"]["median"] <= 52, result["summary"]
    assert 0.29 <= result["summary"]["e2e_s"]["median"] < 0.45, result["summary"]
    assert result["summary"]["ttft_s"]["p95"] >= result["summary"]["ttft_s"]["median"]


def test_requests_at_once_beyond_the_servers_sequences_queue_and_throughput_counts_them_all(run, vllm):
    # --max-num-seqs 4: of 8 requests sent together, 4 wait for a slot, so their TTFT includes the first 4's run.
    result = run(llm_benchmark, bench(vllm, prompt="go", max_tokens=11, trials=2, concurrency=8, warmup=0))

    ttfts = sorted(s["ttft_s"] for s in result["samples"])
    assert len(ttfts) == 16
    assert ttfts[7] < 0.2 and ttfts[8] > 0.2, ttfts
    assert all(t["completion_tokens"] == 88 for t in result["trials"])
    # 88 tokens in about two rounds of 0.25 s.
    assert 120 <= result["summary"]["throughput_tokens_per_s"]["median"] <= 200, result["trials"]


def test_a_failing_request_fails_the_module_with_the_apis_message(run, vllm):
    result = run(llm_benchmark, bench(vllm, prompt="go", model="no-such-model", warmup=0, trials=1))
    assert result["failed"]
    assert "1 of 1 requests to no-such-model failed" in result["msg"]
    assert "HTTP 404: The model `no-such-model` does not exist." in result["msg"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"trials": 0}, "trials must be between 1 and 10000, not 0"),
        ({"concurrency": 0}, "concurrency must be between 1 and 256, not 0"),
        ({"max_tokens": 0}, "max_tokens must be between 1"),
        ({"prompt": None, "prompt_tokens": 0}, "prompt_tokens must be 1 or more, not 0"),
        ({"prompt_tokens": 5}, "mutually exclusive: prompt|prompt_tokens"),
    ],
)
def test_bad_input_is_refused_naming_the_option(run, vllm, args, message):
    result = run(llm_benchmark, bench(vllm, **{"prompt": "go", **args}))
    assert result["failed"] and message in result["msg"], result["msg"]


def test_check_mode_sends_nothing(run):
    # Nothing listens on port 9: a request would fail.
    result = run(llm_benchmark, {"api_url": "http://127.0.0.1:9", "api_key": "k", "model": "m", "prompt": "go"}, True)
    assert not result.get("failed") and result["msg"] == "would send 1 + 5 requests"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]  # the IHDR chunk is whole
    return struct.unpack(">II", data[16:24])


def test_the_chart_is_a_png_written_once_and_not_in_check_mode(run, tmp_path):
    rows = benchmark_rows(
        [
            run_record("thor-01", p, [0.1 * i], 20.0 * i, c)
            for i, p in enumerate(("fp16", "fp8", "fp4"), 1)
            for c in (1, 8)
        ]
    )
    path = tmp_path / "chart.png"
    args = {"rows": rows, "path": str(path), "note": "simulated"}

    assert run(benchmark_chart, args, check=True)["changed"] and not path.exists()
    first = run(benchmark_chart, args)
    assert first["changed"] and first["bars"] == 6
    assert png_size(path.read_bytes()) == (1800, 500)
    again = run(benchmark_chart, args)
    assert not again["changed"]
    assert run(benchmark_chart, {**args, "rows": rows[:2]})["changed"]


def test_the_chart_refuses_rows_that_are_not_benchmark_rows(run, tmp_path):
    result = run(benchmark_chart, {"rows": [{"unit": "thor-01"}], "path": str(tmp_path / "c.png")})
    assert result["failed"] and "profile" in result["msg"]


def test_the_usage_chart_has_a_bar_per_attendee_and_grows_with_them(run, tmp_path):
    rows = [
        {"key_alias": f"a{n}", "unit": f"thor-{n:02}", "prompt_tokens": 10 * n, "completion_tokens": n or None}
        for n in range(3)
    ]
    path = tmp_path / "tokens.png"
    args = {"rows": rows, "path": str(path), "note": "cohort A"}

    assert run(usage_chart, args, check=True)["changed"] and not path.exists()
    first = run(usage_chart, args)
    assert (first["changed"], first["bars"]) == (True, 3)
    width, height = png_size(path.read_bytes())
    assert not run(usage_chart, args)["changed"]
    many = [dict(rows[0], key_alias=f"b{n}") for n in range(60)]
    assert run(usage_chart, {**args, "rows": many})["bars"] == 60
    assert png_size(path.read_bytes()) == (width, height + 100 * 0.3 * 57)


def test_the_usage_chart_names_what_a_row_lacks(run, tmp_path):
    result = run(usage_chart, {"rows": [{"key_alias": "a", "unit": "thor-01"}], "path": str(tmp_path / "c.png")})
    assert result["failed"] and "missing: completion_tokens, prompt_tokens" in result["msg"]

"""The benchmark_rows filter: report rows per unit and for the fleet, from every sample."""

import pytest
from ansible_collections.thorfleet.llm.plugins.filter.benchmark import benchmark_rows


def run_record(unit, profile, ttfts, rate, concurrency=1):
    """One run as llm_benchmark records it (the chart tests build their rows from these too)."""
    samples = [
        {"ttft_s": t, "tokens_per_s": rate, "e2e_s": t + 1, "completion_tokens": 10, "prompt_tokens": 20} for t in ttfts
    ]
    trials = [{"throughput_tokens_per_s": rate * concurrency}]
    return {
        "unit": unit,
        "profile": profile,
        "case": "fixed",
        "concurrency": concurrency,
        "samples": samples,
        "trials": trials,
    }


def test_rows_per_unit_and_for_the_fleet_over_every_sample():
    runs = [run_record("thor-01", "fp16", [0.1, 0.2], 20.0), run_record("thor-02", "fp16", [0.3, 0.4], 30.0)]
    rows = benchmark_rows(runs)

    assert [(r["unit"], r["profile"], r["requests"]) for r in rows] == [
        ("thor-01", "fp16", 2),
        ("thor-02", "fp16", 2),
        ("fleet", "fp16", 4),
    ]
    fleet = rows[-1]
    # The fleet's median is over all four samples, not the mean of the units' medians.
    assert fleet["ttft_ms_median"] == 250.0 and fleet["ttft_ms_p95"] == pytest.approx(385.0)
    assert fleet["tokens_per_s_median"] == 25.0 and fleet["throughput_median"] == 25.0
    assert rows[0]["e2e_ms_median"] == 1150.0 and rows[0]["prompt_tokens"] == 20
    assert benchmark_rows(runs[:1]) == rows[:1]
    assert len(benchmark_rows(runs, fleet=False)) == 2

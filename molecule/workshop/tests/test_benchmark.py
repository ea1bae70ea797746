"""benchmark.yml on two simulated units: streamed requests through LiteLLM, timed; the report; the units put back."""

from __future__ import annotations

import csv
import json
import os
import struct
from pathlib import Path

import pytest
import testinfra
import yaml
from scenario import PROJECT, http, playbook

INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
REPORT = INVENTORY.with_name("inventory.artifacts") / "benchmark"
SECRETS = yaml.safe_load((PROJECT / "inventories/sim/group_vars/thor/generated.yml").read_text())
UNITS = ("thor-01", "thor-02")
PROFILES = ("llama-3.1-8b-fp16", "llama-3.1-8b-fp4")
CASES = ("seed prompt", "2048 in / 128 out")
OWN_MODEL = "Qwen3-VL-30B-A3B"  # the units' own profile (vllm_server_profile's default)


def unit(name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(INVENTORY))


def services(name) -> dict[str, str]:
    """Container id of each service on the unit."""
    ids = unit(name).check_output("docker inspect --format '{{.Name}} {{.Id}}' ai-postgres ai-vllm ai-litellm")
    return dict(line.lstrip("/").split() for line in ids.splitlines())


@pytest.fixture(scope="module")
def run():
    """One benchmark of two profiles with the default cases, trials (5) and concurrency (1 and 8)."""
    code, output = playbook("benchmark", "-e", json.dumps({"benchmark_profiles": list(PROFILES)}))
    assert code == 0, output
    return output


@pytest.fixture(scope="module")
def rows(run):
    with (REPORT / "benchmark.csv").open() as table:
        return list(csv.DictReader(table))


def row(rows, unit_name, profile, case, at_once):
    (found,) = [
        r
        for r in rows
        if (r["unit"], r["profile"], r["case"], r["at once"]) == (unit_name, profile, case, str(at_once))
    ]
    return {k: (float(v) if k not in ("unit", "profile", "case") else v) for k, v in found.items()}


def test_every_unit_profile_case_and_concurrency_has_a_row_and_the_fleet_its_own(rows):
    expected = [(u, p, c, n) for u in UNITS for p in PROFILES for c in CASES for n in ("1", "8")]
    fleet = [("fleet", p, c, n) for p in PROFILES for c in CASES for n in ("1", "8")]
    assert [(r["unit"], r["profile"], r["case"], r["at once"]) for r in rows] == expected + fleet
    for r in rows:
        # Five trials by default, of one or eight requests; the fleet's rows pool both units.
        assert int(r["requests"]) == 5 * int(r["at once"]) * (2 if r["unit"] == "fleet" else 1), r
        assert float(r["TTFT ms p95"]) >= float(r["TTFT ms median"]) > 0, r


def test_fp4_decodes_about_four_times_as_fast_as_16_bit_weights(rows):
    # vllm-sim's pace: 200 tokens/s for 16-bit weights, scaled by bytes per weight (NVFP4: 0.5).
    for name in UNITS:
        fp16 = row(rows, name, "llama-3.1-8b-fp16", "seed prompt", 1)
        fp4 = row(rows, name, "llama-3.1-8b-fp4", "seed prompt", 1)
        assert 150 <= fp16["tok/s median"] <= 205, fp16
        assert 2.5 <= fp4["tok/s median"] / fp16["tok/s median"] <= 4.2, (fp16, fp4)
        assert fp4["e2e ms median"] < fp16["e2e ms median"] / 2


def test_the_long_prompt_takes_longer_to_its_first_token(rows):
    # 2048 prompt tokens at vllm-sim's 20,000/s prefill: about 100 ms more than the seed's one-line prompt.
    for name in UNITS:
        short = row(rows, name, "llama-3.1-8b-fp16", "seed prompt", 1)
        long = row(rows, name, "llama-3.1-8b-fp16", "2048 in / 128 out", 1)
        assert long["prompt tok"] >= 2048 > short["prompt tok"]
        assert long["TTFT ms median"] - short["TTFT ms median"] >= 70, (short, long)
        assert long["completion tok"] == 128 and short["completion tok"] == 256


def test_eight_requests_at_once_are_served_together(rows):
    for name in UNITS:
        one = row(rows, name, "llama-3.1-8b-fp16", "seed prompt", 1)
        eight = row(rows, name, "llama-3.1-8b-fp16", "seed prompt", 8)
        assert eight["throughput tok/s"] >= 4 * one["throughput tok/s"], (one, eight)


def test_the_markdown_says_the_numbers_are_the_simulators_and_the_chart_is_a_png(run):
    markdown = (REPORT / "benchmark.md").read_text()
    assert "Simulated units (vllm-sim)" in markdown
    assert "| thor-01 | llama-3.1-8b-fp16 | seed prompt | 1 | 5 |" in markdown
    png = (REPORT / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1800, 500)
    runs = json.loads((REPORT / "runs.json").read_text())
    assert len(runs) == 16 and all(len(r["samples"]) == 5 * r["concurrency"] for r in runs)
    assert "TTFT ms median" in run


def test_every_unit_is_back_on_its_own_profile_and_the_benchmark_keys_are_gone(run):
    for name in UNITS:
        host = unit(name)
        status, models = http(host, "GET", "http://127.0.0.1:12434/v1/models", key=SECRETS["litellm_proxy_master_key"])
        assert status == 200 and [m["id"] for m in models["data"]] == [OWN_MODEL]
        for alias in ("thorfleet-benchmark", "thorfleet-smoke"):
            url = f"http://127.0.0.1:12434/key/list?key_alias={alias}"
            status, keys = http(host, "GET", url, key=SECRETS["litellm_proxy_master_key"])
            assert status == 200 and keys["total_count"] == 0, (name, alias)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"benchmark_profiles": ["llama-3.1-8b-fp3"]}, "unknown: llama-3.1-8b-fp3. Known profiles: gpt-oss-120b,"),
        ({"benchmark_trials": 0}, "benchmark_trials must be a whole number, 1 or more (got 0)"),
        ({"benchmark_concurrency": [1, 0]}, "benchmark_concurrency a list of whole numbers, each 1 or more"),
        (
            {"benchmark_cases": [{"name": "x", "prompt": "hi"}]},
            'and max_tokens (a whole number, 1 or more); got [{"name": "x"',
        ),
    ],
)
def test_bad_settings_are_refused_before_any_unit_changes(run, settings, message):
    before = {name: services(name) for name in UNITS}
    code, output = playbook("benchmark", "-e", json.dumps(settings))
    assert code != 0 and message in output, output
    assert {name: services(name) for name in UNITS} == before


def test_check_mode_switches_nothing_and_writes_nothing(run, tmp_path):
    before = {name: services(name) for name in UNITS}
    settings = {"benchmark_profiles": ["llama-3.1-8b-fp8"], "benchmark_dir": str(tmp_path / "report")}
    code, output = playbook("benchmark", "--check", "-e", json.dumps(settings))
    assert code == 0, output
    assert {name: services(name) for name in UNITS} == before
    assert not (tmp_path / "report").exists()

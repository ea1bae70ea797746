"""status_row: a unit's answers become its row of the fleet table; what is missing reads as unknown."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter.status import status_row

METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
vllm:num_requests_running{model_name="Qwen3-VL-30B-A3B"} 2.0
vllm:num_requests_waiting{model_name="Qwen3-VL-30B-A3B"} 1.0
vllm:kv_cache_usage_perc{model_name="Qwen3-VL-30B-A3B"} 0.125
"""

HEALTHY = {
    "docker": {"can_talk_to_docker": True, "host_info": {"DefaultRuntime": "nvidia"}},
    "nvml": {"rc": 0, "stdout": "GPU 0: NVIDIA Thor", "stderr": ""},
    "power": {"rc": 0, "stdout_lines": ["NV Power Mode: MAXN", "0"]},
    "cache": {"complete": True, "files": 29, "missing": [], "differ": []},
    "vllm_running": True,
    "vllm_models": {"status": 200, "json": {"data": [{"id": "Qwen3-VL-30B-A3B"}]}},
    "vllm_metrics": {"status": 200, "content": METRICS},
    "litellm": {"status": 200, "json": {"status": "healthy", "db": "connected"}},
    "spend": {"totals": {"key_count": 3, "ending_soon": 2, "spend": 0.0123}, "failed": False},
}


def test_a_healthy_unit():
    assert status_row("thor-01", HEALTHY) == {
        "unit": "thor-01",
        "default runtime": "nvidia",
        "NVML": "ok",
        "power mode": "MAXN",
        "cache manifest": "complete (29 files)",
        "vLLM serves": "Qwen3-VL-30B-A3B",
        "running": 2,
        "waiting": 1,
        "KV cache": "12.5%",
        "LiteLLM ready": "yes",
        "db": "connected",
        "keys": 3,
        "ending within 1 h": 2,
        "spend (USD)": "0.012300",
    }


def test_a_unit_that_answers_nothing_reads_as_unknown():
    row = status_row("thor-02", {"docker": {"can_talk_to_docker": False}})
    assert row == {
        "unit": "thor-02",
        "default runtime": "engine down",
        "NVML": "FAILED: ",
        "power mode": "unknown",
        "cache manifest": "unreadable: ",
        "vLLM serves": "not running",
        "running": "unknown",
        "waiting": "unknown",
        "KV cache": "unknown",
        "LiteLLM ready": "no (HTTP no answer)",
        "db": "unknown",
        "keys": "unknown",
        "ending within 1 h": "unknown",
        "spend (USD)": "unknown",
    }


@pytest.mark.parametrize(
    ("change", "column", "cell"),
    [
        (
            {"nvml": {"rc": 9, "stdout": "", "stderr": "Failed to initialize NVML: Unknown Error"}},
            "NVML",
            "FAILED: Failed to initialize NVML: Unknown Error",
        ),
        (
            {"cache": {"complete": False, "files": 29, "missing": ["a", "b"], "differ": ["c"]}},
            "cache manifest",
            "2 missing, 1 differ",
        ),
        (
            {"cache": {"error": "rsync: connection refused " * 5}},
            "cache manifest",
            "unreadable: " + ("rsync: connection refused " * 5)[:57] + "...",
        ),
        ({"vllm_models": {"status": 503, "json": {}}, "vllm_metrics": {}}, "vLLM serves", "not serving (HTTP 503)"),
        ({"vllm_running": False, "vllm_models": {}}, "vLLM serves", "not running"),
        ({"litellm": {"status": 503, "json": {"db": "disconnected"}}}, "LiteLLM ready", "no (HTTP 503)"),
        ({"litellm": {"status": 503, "json": {"db": "disconnected"}}}, "db", "disconnected"),
        ({"spend": {"failed": False, "msg": "HTTP 500"}}, "keys", "unknown"),
        ({"power": {"skipped": True}}, "power mode", "unknown"),
    ],
)
def test_each_fault_shows_in_its_column(change, column, cell):
    assert status_row("thor-03", {**HEALTHY, **change})[column] == cell


def test_the_answers_must_be_a_dict():
    with pytest.raises(AnsibleFilterError, match="must be a dict"):
        status_row("thor-01", ["not", "a", "dict"])

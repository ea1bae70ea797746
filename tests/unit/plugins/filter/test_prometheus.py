"""The prometheus_samples filter: values from Prometheus' text exposition format."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter import prometheus

PROMETHEUS_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen3-VL-30B-A3B"} 3.0
vllm:num_requests_waiting{engine="0",model_name="Qwen3-VL-30B-A3B"} 1.0
vllm:num_requests_waiting{engine="1",model_name="a \\"quoted\\" {name}"} 2.0 1700000000000
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen3-VL-30B-A3B"} 0.25
vllm:kv_cache_usage_perc_other 9
vllm:prompt_tokens_total NaN
"""


def test_prometheus_samples_sums_each_name_over_its_label_sets():
    names = ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:absent"]
    assert prometheus.prometheus_samples(PROMETHEUS_TEXT, names) == {
        "vllm:num_requests_running": 3.0,
        "vllm:num_requests_waiting": 3.0,
        "vllm:kv_cache_usage_perc": 0.25,
        "vllm:absent": None,
    }
    assert prometheus.prometheus_samples(PROMETHEUS_TEXT, ["vllm:prompt_tokens_total"]) == {
        "vllm:prompt_tokens_total": None
    }


@pytest.mark.parametrize(
    ("text", "names", "message"),
    [
        (None, ["a"], "the input must be the text"),
        ("a 1", "a", "names must be a list"),
        ('a{x="1"} many', ["a"], "a has no number"),
    ],
)
def test_prometheus_samples_refuses_bad_input(text, names, message):
    with pytest.raises(AnsibleFilterError, match=message):
        prometheus.prometheus_samples(text, names)

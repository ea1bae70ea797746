"""The vllm_flags filter: a settings dict as vllm serve flags."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter import vllm


def test_vllm_flags_render_in_order_with_every_kind_of_value():
    settings = {
        "served_model_name": "Qwen3-VL-30B-A3B",
        "max_model_len": 32768,
        "gpu_memory_utilization": 0.8,
        "limit_mm_per_prompt": {"video": 0, "image": 32},
        "enable_prefix_caching": True,
        "enable_log_requests": False,
        "quantization": None,
        "allowed-origins": ["a", "b"],
    }
    assert vllm.vllm_flags(settings) == [
        "--served-model-name",
        "Qwen3-VL-30B-A3B",
        "--max-model-len",
        "32768",
        "--gpu-memory-utilization",
        "0.8",
        "--limit-mm-per-prompt",
        '{"image":32,"video":0}',
        "--enable-prefix-caching",
        "--no-enable-log-requests",
        "--allowed-origins",
        "a",
        "b",
    ]


@pytest.mark.parametrize("bad", [{"Max Len": 1}, {"--max-model-len": 1}, {"": 1}, {3: 1}])
def test_vllm_flags_refuse_names_that_are_not_flags(bad):
    with pytest.raises(AnsibleFilterError, match="is not a vLLM flag name"):
        vllm.vllm_flags(bad)


def test_vllm_flags_need_a_dict():
    with pytest.raises(AnsibleFilterError, match="expects a dict"):
        vllm.vllm_flags(["--x"])

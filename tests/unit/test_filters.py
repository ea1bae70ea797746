"""The collection's filter plugins, as Ansible calls them."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter import litellm, prometheus, table, vllm


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


@pytest.mark.parametrize(
    ("per_million", "per_token"), [(0.20, 2e-07), (1.00, 1e-06), ("0.15", 1.5e-07), (0, 0.0), (3, 3e-06)]
)
def test_per_token_is_exact(per_million, per_token):
    assert litellm.per_token(per_million) == per_token


@pytest.mark.parametrize("bad", [-1, "abc", float("nan"), float("inf"), None])
def test_per_token_refuses_what_is_not_a_price(bad):
    with pytest.raises(AnsibleFilterError):
        litellm.per_token(bad)


def test_model_list_is_litellm_shaped():
    models = [
        {"model_name": "M", "api_base": "http://ai-vllm:8000/v1", "input_cost_per_million": 0.2},
        {"model_name": "N", "backend_model": "n-served", "api_base": "http://x:8000/v1", "output_cost_per_million": 1},
    ]
    assert litellm.litellm_model_list(models) == [
        {
            "model_name": "M",
            "litellm_params": {
                "model": "openai/M",
                "api_base": "http://ai-vllm:8000/v1",
                "api_key": "os.environ/VLLM_API_KEY",
                "input_cost_per_token": 2e-07,
                "output_cost_per_token": 0.0,
            },
        },
        {
            "model_name": "N",
            "litellm_params": {
                "model": "openai/n-served",
                "api_base": "http://x:8000/v1",
                "api_key": "os.environ/VLLM_API_KEY",
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 1e-06,
            },
        },
    ]


@pytest.mark.parametrize(
    ("models", "message"),
    [([], "non-empty list"), ([{"model_name": "M"}], "model #1 lacks api_base"), (["M"], "lacks model_name")],
)
def test_model_list_refuses_incomplete_models(models, message):
    with pytest.raises(AnsibleFilterError, match=message):
        litellm.litellm_model_list(models)


ROWS = [{"unit": "thor-01", "key_alias": "a|b", "spend": 0.125, "ok": True}, {"unit": "thor-02", "key_alias": "c,d"}]


def test_table_as_csv_quotes_cells():
    assert table.to_table(ROWS, ["unit", {"key_alias": "alias"}, "spend", "ok"], "csv") == (
        'unit,alias,spend,ok\nthor-01,a|b,0.125,yes\nthor-02,"c,d",,\n'
    )


def test_table_as_markdown_escapes_pipes():
    assert table.to_table(ROWS, ["unit", "key_alias"], "markdown") == (
        "| unit | key_alias |\n| --- | --- |\n| thor-01 | a\\|b |\n| thor-02 | c,d |\n"
    )


def test_table_as_text_aligns_columns():
    assert table.to_table(ROWS, ["unit", "spend"]) == "unit     spend\n-------  -----\nthor-01  0.125\nthor-02\n"


@pytest.mark.parametrize(
    ("rows", "columns", "style", "message"),
    [
        (ROWS, ["unit"], "html", "style must be one of csv, markdown, text"),
        ("text", ["unit"], "csv", "must be a list of dicts"),
        (ROWS, [{"a": "A", "b": "B"}], "csv", "a column is a name or"),
    ],
)
def test_table_refuses_bad_input(rows, columns, style, message):
    with pytest.raises(AnsibleFilterError, match=message):
        table.to_table(rows, columns, style)


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

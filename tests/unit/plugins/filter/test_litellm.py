"""The LiteLLM filters: per-1M-token prices as per-token prices, and LiteLLM's model_list."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter import litellm


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


def test_a_model_name_with_a_deployment_per_unit_names_each_by_its_id_with_its_cap():
    models = [
        {"model_name": "M", "api_base": f"http://10.0.0.{n}:8000/v1", "id": f"thor-0{n}", "max_parallel_requests": 32}
        for n in (1, 2)
    ]
    model_list = litellm.litellm_model_list(models)
    assert [(entry["model_info"], entry["litellm_params"]["max_parallel_requests"]) for entry in model_list] == [
        ({"id": "thor-01"}, 32),
        ({"id": "thor-02"}, 32),
    ]


@pytest.mark.parametrize(
    "models",
    [
        [{"model_name": "M", "api_base": "http://a/v1"}, {"model_name": "M", "api_base": "http://b/v1"}],
        [
            {"model_name": "M", "api_base": "http://a/v1", "id": "u"},
            {"model_name": "M", "api_base": "http://b/v1", "id": "u"},
        ],
    ],
    ids=["a name twice without ids", "one id twice"],
)
def test_a_deployment_given_twice_is_refused(models):
    with pytest.raises(AnsibleFilterError, match="once per id"):
        litellm.litellm_model_list(models)


PROFILES = {
    "qwen": {"served_model_name": "Qwen", "settings": {"max_num_seqs": 32}},
    "llama": {"served_model_name": "Llama", "settings": {}},
}
PRICES = {"input_cost_per_million": 0.2, "output_cost_per_million": 1.0}


def test_the_gateway_has_one_deployment_per_unit_of_the_model_it_serves():
    """Each unit's profile and settings from the inventory, else the default profile; its address, else its name;
    its cap the profile's max_num_seqs under the unit's settings, else vLLM's own default on Thor."""
    hostvars = {
        "thor-01": {"ansible_host": "10.0.0.1"},
        "thor-02": {"ansible_host": "10.0.0.2", "vllm_server_settings": {"max_num_seqs": 8}},
        "thor-03": {"vllm_server_profile": "llama", "vllm_server_gateway_address": "192.168.9.3"},
    }
    models = litellm.fleet_models(list(hostvars), hostvars, PROFILES, "qwen", "8000", PRICES)
    assert [(m["model_name"], m["api_base"], m["id"], m["max_parallel_requests"]) for m in models] == [
        ("Qwen", "http://10.0.0.1:8000/v1", "thor-01", 32),
        ("Qwen", "http://10.0.0.2:8000/v1", "thor-02", 8),
        ("Llama", "http://192.168.9.3:8000/v1", "thor-03", litellm.VLLM_MAX_NUM_SEQS),
    ]
    assert all(m["backend_model"] == m["model_name"] and m.items() >= PRICES.items() for m in models)
    # What litellm_model_list makes of it: one name, three deployments told apart by id.
    assert [e["model_info"]["id"] for e in litellm.litellm_model_list(models)] == list(hostvars)


def test_a_unit_on_an_unknown_profile_is_named():
    with pytest.raises(AnsibleFilterError, match="thor-09's vllm_server_profile 'nope'"):
        litellm.fleet_models(["thor-09"], {"thor-09": {"vllm_server_profile": "nope"}}, PROFILES, "qwen", 8000, PRICES)

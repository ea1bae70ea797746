"""Filters that turn the collection's settings into what LiteLLM reads."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ansible.errors import AnsibleFilterError


def per_token(price_per_million):
    """A price per 1M tokens as the per-token price LiteLLM's config takes (exact decimal division)."""
    try:
        price = Decimal(str(price_per_million))
    except InvalidOperation:
        raise AnsibleFilterError(f"per_token: {price_per_million!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise AnsibleFilterError(f"per_token: {price_per_million!r} must be a price of 0 or more")
    return float(price / Decimal(1_000_000))


def litellm_model_list(models):
    """The role's model entries as LiteLLM's `model_list`, prices converted from per 1M tokens to per token.

    Each entry: model_name (what clients call), api_base, optional backend_model (the name the backend
    serves, default model_name), input_cost_per_million and output_cost_per_million (default 0); for one deployment
    of several under a model_name, id (the router's deployment id: the unit) and max_parallel_requests (its cap on
    requests in flight).
    """
    if not isinstance(models, list) or not models:
        raise AnsibleFilterError("litellm_model_list: give a non-empty list of models (litellm_proxy_models)")
    model_list = []
    for index, model in enumerate(models):
        missing = [key for key in ("model_name", "api_base") if not (isinstance(model, dict) and model.get(key))]
        if missing:
            raise AnsibleFilterError(f"litellm_model_list: model #{index + 1} lacks {', '.join(missing)}")
        params = {
            "model": "openai/" + model.get("backend_model", model["model_name"]),
            "api_base": model["api_base"],
            "api_key": "os.environ/VLLM_API_KEY",
            "input_cost_per_token": per_token(model.get("input_cost_per_million", 0)),
            "output_cost_per_token": per_token(model.get("output_cost_per_million", 0)),
        }
        if model.get("max_parallel_requests") is not None:
            params["max_parallel_requests"] = int(model["max_parallel_requests"])
        entry = {"model_name": model["model_name"], "litellm_params": params}
        if model.get("id") is not None:
            entry["model_info"] = {"id": str(model["id"])}
        model_list.append(entry)
    deployments = [(entry["model_name"], entry.get("model_info", {}).get("id")) for entry in model_list]
    if len(set(deployments)) != len(deployments):
        raise AnsibleFilterError("litellm_model_list: each model_name is given once, or once per id (a deployment)")
    return model_list


# vLLM's own max_num_seqs where a profile sets none: 1024 for its API server on a device of 70 GiB or more, which
# Thor's 128 GB of unified memory is (vllm/engine/arg_utils.py, _set_default_max_num_seqs_and_batched_tokens_args).
VLLM_MAX_NUM_SEQS = 1024


def fleet_models(units, hostvars, profiles, default_profile, port, prices):
    """The fleet gateway's models: for each unit, one deployment of the model it serves (its profile's
    served_model_name), id the unit, reached at its fleet address (vllm_server_gateway_address, else ansible_host,
    else its name) on `port`, capped at its max_num_seqs (the profile's settings under the unit's
    vllm_server_settings). A unit's profile and settings are read from the inventory (hostvars); where it sets none,
    the collection's default profile. Returns entries for litellm_model_list, each with `prices`."""
    models = []
    for unit in units:
        unit_vars = hostvars[unit]
        profile_name = unit_vars.get("vllm_server_profile", default_profile)
        if profile_name not in profiles:
            raise AnsibleFilterError(
                f"fleet_models: {unit}'s vllm_server_profile {profile_name!r} is not one of vllm_server_profiles"
            )
        profile = profiles[profile_name]
        settings = dict(profile.get("settings") or {})
        settings.update(unit_vars.get("vllm_server_settings") or {})
        address = unit_vars.get("vllm_server_gateway_address") or unit_vars.get("ansible_host") or unit
        entry = {
            "model_name": profile["served_model_name"],
            "backend_model": profile["served_model_name"],
            "api_base": f"http://{address}:{int(port)}/v1",
            "id": unit,
            "max_parallel_requests": int(settings.get("max_num_seqs") or VLLM_MAX_NUM_SEQS),
        }
        entry.update(prices)
        models.append(entry)
    return models


class FilterModule:
    def filters(self):
        return {"per_token": per_token, "litellm_model_list": litellm_model_list, "fleet_models": fleet_models}

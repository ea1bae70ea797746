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


class FilterModule:
    def filters(self):
        return {"per_token": per_token, "litellm_model_list": litellm_model_list}

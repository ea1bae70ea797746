"""One unit's row of status.yml's fleet table, from what the unit answered."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter.prometheus import prometheus_samples

# vLLM's own gauges: requests in the running batch, queued, and the share of KV cache blocks in use.
LOAD = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")


def _truncate(text, width):
    text = str(text or "").strip()
    return text if len(text) <= width else text[: width - 3] + "..."


def _http(result):
    """A uri result's status, 'no answer' when there was none."""
    status = (result or {}).get("status", -1)
    return status if isinstance(status, int) and status > 0 else "no answer"


def _ran(result):
    return bool(result) and not result.get("skipped") and "rc" in result


def status_row(unit, answers):
    """The row of `unit` from `answers`: docker (docker_host_info), nvml and power (command results), cache
    (model_cache_verified, or {error}), vllm_running (bool), vllm_models and vllm_metrics (uri results),
    litellm (the readiness uri result) and spend (litellm_spend_info). What is missing reads as unknown."""
    if not isinstance(answers, dict):
        raise AnsibleFilterError("status_row: the answers must be a dict")
    docker, nvml, power, cache, models, metrics, litellm, spend = (
        answers.get(name) or {}
        for name in ("docker", "nvml", "power", "cache", "vllm_models", "vllm_metrics", "litellm", "spend")
    )

    nvml_text = f"{nvml.get('stdout', '')} {nvml.get('stderr', '')}".strip()
    power_lines = power.get("stdout_lines") or []
    if "complete" not in cache:
        manifest = f"unreadable: {_truncate(cache.get('error'), 60)}"
    elif cache["complete"]:
        manifest = f"complete ({cache['files']} files)"
    else:
        manifest = f"{len(cache['missing'])} missing, {len(cache['differ'])} differ"
    served = ";".join(model.get("id", "") for model in (models.get("json") or {}).get("data") or [])
    if not served:
        served = f"not serving (HTTP {_http(models)})" if answers.get("vllm_running") else "not running"
    load = prometheus_samples(metrics["content"], list(LOAD)) if metrics.get("status") == 200 else dict.fromkeys(LOAD)
    ready = litellm.get("status") == 200
    totals = spend.get("totals")
    return {
        "unit": unit,
        "default runtime": (docker.get("host_info") or {}).get("DefaultRuntime", "")
        if docker.get("can_talk_to_docker")
        else "engine down",
        "NVML": "ok" if _ran(nvml) and nvml["rc"] == 0 else f"FAILED: {_truncate(nvml_text, 80)}",
        "power mode": power_lines[0].removeprefix("NV Power Mode: ")
        if _ran(power) and power["rc"] == 0 and power_lines
        else "unknown",
        "cache manifest": manifest,
        "vLLM serves": served,
        "running": "unknown" if load[LOAD[0]] is None else int(load[LOAD[0]]),
        "waiting": "unknown" if load[LOAD[1]] is None else int(load[LOAD[1]]),
        "KV cache": "unknown" if load[LOAD[2]] is None else f"{load[LOAD[2]] * 100:.1f}%",
        "LiteLLM ready": "yes" if ready else f"no (HTTP {_http(litellm)})",
        "db": (litellm.get("json") or {}).get("db", "unknown"),
        "keys": totals["key_count"] if totals else "unknown",
        "ending within 1 h": totals.get("ending_soon", "unknown") if totals else "unknown",
        "spend (USD)": f"{totals['spend']:.6f}" if totals else "unknown",
    }


class FilterModule:
    def filters(self):
        return {"status_row": status_row}

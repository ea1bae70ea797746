"""The proxy's config.yaml and environment, and the real proxy's refusal of a weak master key."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import yaml

from .common import hash_key

ENV_PREFIX = "os.environ/"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
# The real proxy compares the stripped key against hashes of publicly known keys (`sk-1234`).
PUBLIC_MASTER_KEY_SHA256 = frozenset({"88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"})
DEFAULT_REQUEST_TIMEOUT = 6000.0


class ConfigError(Exception):
    pass


def resolve_env(value: Any) -> Any:
    """Replace `os.environ/NAME` values by the variable's value (None when it is unset)."""
    if isinstance(value, dict):
        return {key: resolve_env(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env(item) for item in value]
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return os.environ.get(value[len(ENV_PREFIX) :])
    return value


def deployment_id(model_name: str, litellm_params: dict[str, Any]) -> str:
    """The real router's id for a deployment without model_info.id: sha256 over the model name and
    every resolved litellm_params key and value, in the config's order."""
    parts = [model_name]
    for key, value in litellm_params.items():
        parts += [key, str(value)]
    return hashlib.sha256("".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Deployment:
    model_name: str
    model_id: str  # model_info.id, or the router's hash
    model: str  # the backend's model: litellm_params.model without its `openai/` provider
    api_base: str
    api_key: str | None
    input_cost_per_token: float
    output_cost_per_token: float
    # The router's: weights for simple-shuffle (the first of them any deployment sets), a cap on requests in flight,
    # a cooldown of the deployment's own.
    weight: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel_requests: int | None = None
    cooldown_time: float | None = None

    @property
    def parallel_limit(self) -> int | None:
        """calculate_max_parallel_requests: max_parallel_requests, else rpm, else tpm / 1000 * 6 (at least 1)."""
        if self.max_parallel_requests is not None:
            return self.max_parallel_requests
        if self.rpm is not None:
            return self.rpm
        if self.tpm is not None:
            return max(int(self.tpm / 1000 * 6), 1)
        return None


# The strategy the collection configures; the real router's others are not simulated.
ROUTING_STRATEGY = "simple-shuffle"
DEFAULT_NUM_RETRIES = 2
DEFAULT_COOLDOWN_TIME = 5.0
DEFAULT_HEALTH_CHECK_INTERVAL = 300


@dataclass(frozen=True)
class RouterSettings:
    num_retries: int = DEFAULT_NUM_RETRIES
    allowed_fails: int | None = None  # None: the v2 cooldown (failure rate); set: the v1 count
    cooldown_time: float = DEFAULT_COOLDOWN_TIME
    retry_after: float = 0.0  # the backoff's floor
    health_check_routing: bool = False
    background_health_checks: bool = False
    health_check_interval: Any = DEFAULT_HEALTH_CHECK_INTERVAL  # as written: a float stops the real loop


@dataclass(frozen=True)
class Settings:
    config_path: str | None
    groups: dict[str, list[Deployment]]  # model_name -> its deployments, in the config's order
    router: RouterSettings
    master_key: str | None
    master_key_in_config: bool
    database_url: str | None
    request_timeout: float
    disable_custom_api_keys: bool = False


def load_settings(config_path: str | None) -> Settings:
    raw: dict[str, Any] = {}
    if config_path is not None:
        try:
            with open(config_path, encoding="utf-8") as handle:
                raw = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {config_path}: {exc}") from exc
    config = resolve_env(raw)
    general = config.get("general_settings") or {}
    groups: dict[str, list[Deployment]] = {}
    for entry in config.get("model_list") or []:
        params = entry.get("litellm_params") or {}
        provider, _, model = str(params.get("model", "")).partition("/")
        if provider != "openai" or not model or not params.get("api_base"):
            raise ConfigError(
                f"model {entry.get('model_name')!r}: litellm-sim proxies only `openai/<model>` with an api_base"
            )
        info = entry.get("model_info") or {}
        groups.setdefault(entry["model_name"], []).append(
            Deployment(
                model_name=entry["model_name"],
                model_id=str(info["id"]) if info.get("id") is not None else deployment_id(entry["model_name"], params),
                model=model,
                api_base=params["api_base"].rstrip("/"),
                api_key=params.get("api_key"),
                input_cost_per_token=float(params.get("input_cost_per_token") or 0),
                output_cost_per_token=float(params.get("output_cost_per_token") or 0),
                weight=params.get("weight"),
                rpm=params.get("rpm"),
                tpm=params.get("tpm"),
                max_parallel_requests=params.get("max_parallel_requests"),
                cooldown_time=info.get("cooldown_time", params.get("cooldown_time")),
            )
        )
    return Settings(
        config_path=config_path,
        groups=groups,
        router=router_settings(config, general),
        master_key=general["master_key"] if "master_key" in general else os.environ.get(MASTER_KEY_ENV),
        master_key_in_config="master_key" in general,
        database_url=general.get("database_url") or os.environ.get("DATABASE_URL"),
        request_timeout=float((config.get("litellm_settings") or {}).get("request_timeout") or DEFAULT_REQUEST_TIMEOUT),
        disable_custom_api_keys=str(general.get("disable_custom_api_keys", False)).lower() in ("true", "1", "yes"),
    )


def router_settings(config: dict[str, Any], general: dict[str, Any]) -> RouterSettings:
    """router_settings, with the health checks' general_settings (router_settings wins where both may say)."""
    router = config.get("router_settings") or {}
    strategy = router.get("routing_strategy", ROUTING_STRATEGY)
    if strategy != ROUTING_STRATEGY:
        raise ConfigError(
            f"router_settings.routing_strategy {strategy!r}: litellm-sim routes by {ROUTING_STRATEGY} only"
        )
    if "health_check_interval" in router:
        # The real proxy refuses it there at start-up.
        raise ConfigError("health_check_interval belongs in general_settings, not router_settings")
    litellm_settings = config.get("litellm_settings") or {}
    retries = router.get("num_retries", litellm_settings.get("num_retries"))
    routing = router.get("enable_health_check_routing", general.get("enable_health_check_routing", False))
    return RouterSettings(
        num_retries=DEFAULT_NUM_RETRIES if retries is None else int(retries),
        allowed_fails=router.get("allowed_fails"),
        cooldown_time=router.get("cooldown_time") or DEFAULT_COOLDOWN_TIME,
        retry_after=router.get("retry_after", 0),
        health_check_routing=bool(routing),
        background_health_checks=bool(general.get("background_health_checks", False)),
        health_check_interval=general.get("health_check_interval", DEFAULT_HEALTH_CHECK_INTERVAL),
    )


def master_key_refusal(settings: Settings) -> str | None:
    """The real proxy's refusal for an unset, empty or publicly known master key; None if the key is fine."""
    key = settings.master_key
    if key is None:
        reason = "no master key is set, so every request would be accepted without authentication."
    elif not key.strip():
        reason = "the master key is empty."
    elif hash_key(key.strip()) in PUBLIC_MASTER_KEY_SHA256:
        reason = "the master key is a publicly known default."
    else:
        return None
    # A config entry that merely relays the environment variable is blamed on the variable.
    relays_env = key is not None and key == os.environ.get(MASTER_KEY_ENV)
    if settings.master_key_in_config and not relays_env:
        where = settings.config_path or "your config"
        source = (
            f"general_settings.master_key in {where} is blank, or points at an environment variable that is not set."
            if key is None
            else f"It comes from general_settings.master_key in {where}."
        )
    else:
        source = (
            f"Neither general_settings.master_key nor the {MASTER_KEY_ENV} environment variable is set."
            if key is None
            else f"It comes from the {MASTER_KEY_ENV} environment variable."
        )
    return f"LiteLLM proxy refused to start: {reason}\n{source}"

#!/usr/bin/env python3
"""litellm-sim: the LiteLLM proxy 1.109.1 in database mode, as the thorfleet collection uses it.

The real proxy cannot use PostgreSQL on these machines (its Prisma engines download at run time),
so this server speaks the part of its HTTP contract the collection relies on
(shared/LITELLM_CONTRACT.md) over a real PostgreSQL, with only the standard library, PyYAML and
psycopg2: start-up checks, master-key auth, health and readiness, model listing, proxying
completions (streaming too) to vLLM, spend logging, virtual keys (/key/*), their limits, budgets
and spend. tests/contract/test_litellm_real.py and test_litellm_keys_real.py run the same requests
against the real proxy (without a database) and against this one.

Observed on the real proxy 1.109.1 without a database, where it differs from intuition (what
was read from its code instead is marked so):
- It refuses to start when the master key is unset, empty or `sk-1234` (compared by hash, after
  stripping), but only after printing its banner and model list: it exits 3 (uvicorn's
  "Application startup failed") and prints on stderr "LiteLLM proxy refused to start: <reason>",
  then where the key came from (the environment variable, or the config file when the config
  holds the key itself or names an unset variable), then how to fix it.
- /health/readiness is public and terse: {"status": "healthy", "db": "Not connected"}, 200. The
  version and callbacks are only in /health/readiness/details, behind a key. With a database
  configured but down it answers 503 {"status": "healthy", "db": "disconnected"} (code).
- A wrong key is 400 {"type": "no_db_connection", "message": "No connected db."} without a
  database, not 401. With a database an unknown key is 401 token_not_found_in_db with param "key",
  and a database that is down makes key lookups 503 no_db_connection (code); this server does so.
- Error envelopes carry "param": null (not "None") and "code" as a string.
- An unknown or missing model is 400 invalid_request_error ("Invalid model name passed in
  model=None") before any backend call; a backend's 4xx keeps its status; an unreachable backend
  is 500 internal_server_error, after about 5 s of retries (this server does not retry).
- Answers and stream chunks name the model_name the client called, not the backend's model. A
  stream carries the usage chunk only when the client asked (stream_options.include_usage), yet
  the proxy prices every stream: it asks the backend for the usage itself.
- /v1/models and /models list each model_name with "created": 1677610602, "owned_by": "openai",
  plus max_input_tokens and max_output_tokens read from the backend's own /v1/models
  (max_model_len) when the backend answers.
- /health answers 200 with healthy_endpoints/unhealthy_endpoints even when every backend is down;
  an endpoint is {api_base, model, model_id}, model_id being sha256 over the model_name and the
  resolved litellm_params.
- Request bodies of /key/* are validated by FastAPI/pydantic before anything else: 422
  {"detail": [{"type", "loc", "msg"}]} (only those three keys), errors in the model's field
  order. A body that is JSON but not an object is 400 "Invalid JSON payload: expected an object"
  (param request_body) even before the key is checked; malformed JSON is 422 json_invalid.

Key management, read from the code of 1.109.1 (management_endpoints/key_management_endpoints.py,
auth/user_api_key_auth.py, auth/auth_checks.py, hooks/parallel_request_limiter_v3.py) and checked
by running its request handlers where no database is needed:
- Errors raised as HTTPException(detail={"error": msg}) reach the client as the envelope with
  message str(detail), i.e. the Python repr of the dict ("{'error': '...'}"); type is auth_error
  for 401/403, invalid_request_error below 500, internal_server_error above.
- /key/generate checks in this order: max_budget and soft_budget finite and >= 0 (400),
  budget_duration (400), premium fields such as tags (403 without a licence), key_alias format
  and uniqueness (400, param key_alias), custom key: `sk-` prefix and >= 16 characters (400),
  then duration (an unparsable one is a 500). A custom key that already exists is not an error:
  the row is upserted with "update nothing" and the answer is built from the request.
- LiteLLM 1.109.1 does not check the characters of a custom key on /key/generate (only
  /key/block does); shared/LITELLM_CONTRACT.md requires [A-Za-z0-9_-] after `sk-`, and this
  server enforces the contract (400), stricter than the real proxy.
- Key checks on requests: blocked (401 auth_error), model not in the key's models (403
  key_model_access_denied, param model), expired (401 expired_key), spend >= max_budget on LLM
  routes (422 budget_exceeded), then routes: a virtual key on an admin-only route is 401.
- rpm/tpm/max_parallel_requests per key are counted in memory in a 60 s window that opens with
  the window's first request (LITELLM_RATE_LIMIT_WINDOW_SIZE); 429 throttling_error with headers
  retry-after (the window size, as the real limiter sends it), rate_limit_type and reset_at. TPM
  reserves an estimate (characters / 4 plus max_tokens) up front and settles on the real usage.
- The master key acts as user "default_user_id"; its spend log rows carry api_key
  "litellm_proxy_master_key", not a hash of the master key.
- Budgets with a budget_duration reset (spend = 0, next budget_reset_at) once budget_reset_at has
  passed; the real proxy does it from a periodic job, this server when it next reads the key.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg2
import psycopg2.extras
import yaml

VERSION = "1.109.1"
ENV_PREFIX = "os.environ/"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
# The real proxy compares the stripped key against hashes of publicly known keys (`sk-1234`).
PUBLIC_MASTER_KEY_SHA256 = frozenset({"88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"})
# Exit status of the real proxy when it refuses to start: uvicorn's lifespan failure.
REFUSAL_EXIT = 3
MODEL_CREATED = 1677610602
DEFAULT_REQUEST_TIMEOUT = 6000.0
DB_CONNECT_TIMEOUT = 3
# Fail a query on a database that stops answering instead of hanging a request thread on it.
DB_TCP_USER_TIMEOUT_MS = 5000
# uvicorn's keep-alive timeout.
IDLE_TIMEOUT = 5
DB_DOWN_MESSAGE = "Service Unavailable, the authentication database is temporarily unreachable. Please retry shortly."
# The real proxy reads each backend's context length from its /v1/models for the model listing, and
# refreshes it every 5 minutes (after a minute when the backend did not answer).
MODEL_INFO_TTL = 300
MODEL_INFO_RETRY = 60
MODEL_INFO_TIMEOUT = 5
HEALTH_PROMPT = "Hey how's it going?"
HEALTH_MAX_TOKENS = 16

# LiteLLM's constants (litellm/constants.py, 1.109.1).
PROXY_ADMIN_NAME = "default_user_id"  # LITELLM_PROXY_ADMIN_NAME: the master key's user_id
MASTER_KEY_ALIAS = "litellm_proxy_master_key"  # LITELLM_PROXY_MASTER_KEY_ALIAS: the master key's api_key
MINIMUM_CUSTOM_KEY_LENGTH = 16
GENERATED_KEY_BYTES = 16  # LENGTH_OF_LITELLM_GENERATED_KEY, for secrets.token_urlsafe
RATE_LIMIT_WINDOW = int(os.environ.get("LITELLM_RATE_LIMIT_WINDOW_SIZE", "60"))
DEFAULT_MAX_TOKENS_ESTIMATE = 4096
NO_MAX_TOKENS_TPM_RESERVATION_FRACTION = 0.25
CHARS_PER_TOKEN = 4
SPEND_LOGS_CAP = 10000
NOT_PREMIUM = (
    "You must be a LiteLLM Enterprise user to use this feature. If you have a license please set `LITELLM_LICENSE` "
    "in your env. Get a 7 day trial key here: https://www.litellm.ai/enterprise#trial. \n"
    "Pricing: https://www.litellm.ai/#pricing"
)
# Key fields that need an Enterprise licence when set to a non-empty value, in LiteLLM's order
# (LiteLLM_ManagementEndpoint_MetadataFields_Premium, the ones a request body can carry).
PREMIUM_KEY_FIELDS = ("guardrails", "policies", "tags", "prompts")
DURATION_ALIASES = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
KEY_NOT_FOUND = "Key not found."
DB_NOT_CONNECTED = (
    "DB not connected. This endpoint needs a database; set DATABASE_URL to a PostgreSQL connection string "
    "(postgresql://...) to enable it. See https://docs.litellm.ai/docs/proxy/virtual_keys"
)
# A virtual key may call these; the other management routes are for the master key only
# (RouteChecks.non_proxy_admin_allowed_routes_check: info routes pass, the rest is admin-only).
LLM_ROUTES = frozenset({"/chat/completions", "/v1/chat/completions", "/completions", "/v1/completions"})
ADMIN_ONLY_ROUTES = frozenset(
    {
        "/key/generate",
        "/key/update",
        "/key/delete",
        "/key/block",
        "/key/unblock",
        "/key/regenerate",
        "/spend/logs",
        "/global/spend/keys",
    }
)
# GenerateKeyResponse.router_settings when the key has none: UpdateRouterConfig() dumped.
ROUTER_SETTINGS_DUMP: dict[str, Any] = {
    "routing_strategy_args": None,
    "routing_strategy": None,
    "routing_groups": None,
    "retry_policy": None,
    "model_group_retry_policy": None,
    "model_group_affinity_config": None,
    "allowed_fails": None,
    "cooldown_time": None,
    "num_retries": None,
    "timeout": None,
    "max_retries": None,
    "retry_after": None,
    "fallbacks": None,
    "context_window_fallbacks": None,
    "content_policy_fallbacks": None,
    "model_group_alias": {},
    "enable_tag_filtering": None,
    "weights": None,
    "tag_routing_prefix": None,
    "optional_pre_call_checks": None,
    "fallback_on_unsupported_params": None,
}

log = logging.getLogger("litellm-sim")

# Prisma's names and types from litellm's schema.prisma, so that what the collection reads from
# PostgreSQL is laid out as on a real unit. Columns are added one by one, so that a database made
# by an older litellm-sim gains the new ones.
TOKEN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("key_name", "TEXT"),
    ("key_alias", "TEXT"),
    ("soft_budget_cooldown", "BOOLEAN NOT NULL DEFAULT false"),
    ("spend", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("total_spend", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("expires", "TIMESTAMP(3)"),
    ("models", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("aliases", "JSONB NOT NULL DEFAULT '{}'"),
    ("config", "JSONB NOT NULL DEFAULT '{}'"),
    ("router_settings", "JSONB DEFAULT '{}'"),
    ("user_id", "TEXT"),
    ("team_id", "TEXT"),
    ("agent_id", "TEXT"),
    ("project_id", "TEXT"),
    ("permissions", "JSONB NOT NULL DEFAULT '{}'"),
    ("max_parallel_requests", "INTEGER"),
    ("metadata", "JSONB NOT NULL DEFAULT '{}'"),
    ("blocked", "BOOLEAN"),
    ("tpm_limit", "BIGINT"),
    ("rpm_limit", "BIGINT"),
    ("tpd_limit", "BIGINT"),
    ("max_budget", "DOUBLE PRECISION"),
    ("budget_duration", "TEXT"),
    ("budget_reset_at", "TIMESTAMP(3)"),
    ("allowed_cache_controls", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("allowed_routes", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("key_type", "TEXT"),
    ("policies", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("access_group_ids", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("model_spend", "JSONB NOT NULL DEFAULT '{}'"),
    ("model_max_budget", "JSONB NOT NULL DEFAULT '{}'"),
    ("budget_fallbacks", "JSONB NOT NULL DEFAULT '{}'"),
    ("budget_id", "TEXT"),
    ("organization_id", "TEXT"),
    ("object_permission_id", "TEXT"),
    ("created_at", "TIMESTAMP(3) DEFAULT (now() AT TIME ZONE 'UTC')"),
    ("created_by", "TEXT"),
    ("updated_at", "TIMESTAMP(3) DEFAULT (now() AT TIME ZONE 'UTC')"),
    ("updated_by", "TEXT"),
    ("settings_updated_at", "TIMESTAMP(3)"),
    ("last_active", "TIMESTAMP(3)"),
    ("rotation_count", "INTEGER DEFAULT 0"),
    ("auto_rotate", "BOOLEAN DEFAULT false"),
    ("rotation_interval", "TEXT"),
    ("last_rotation_at", "TIMESTAMP(3)"),
    ("key_rotation_at", "TIMESTAMP(3)"),
    ("budget_limits", "JSONB"),
)
# A deleted key keeps every column but its budget windows (LiteLLM drops budget_limits on archiving).
DELETED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("token", "TEXT NOT NULL"),
    *(column for column in TOKEN_COLUMNS if column[0] != "budget_limits"),
    ("deleted_at", "TIMESTAMP(3) NOT NULL"),
    ("deleted_by", "TEXT"),
    ("deleted_by_api_key", "TEXT"),
    ("litellm_changed_by", "TEXT"),
)
BUDGET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("max_budget", "DOUBLE PRECISION"),
    ("soft_budget", "DOUBLE PRECISION"),
    ("max_parallel_requests", "INTEGER"),
    ("tpm_limit", "BIGINT"),
    ("rpm_limit", "BIGINT"),
    ("tpd_limit", "BIGINT"),
    ("model_max_budget", "JSONB"),
    ("budget_duration", "TEXT"),
    ("budget_reset_at", "TIMESTAMP(3)"),
    ("allowed_models", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("temp_budget_increase", "DOUBLE PRECISION"),
    ("temp_budget_expiry", "TIMESTAMP(3)"),
    ("created_at", "TIMESTAMP(3) NOT NULL"),
    ("created_by", "TEXT NOT NULL"),
    ("updated_at", "TIMESTAMP(3) NOT NULL"),
    ("updated_by", "TEXT NOT NULL"),
)
JSON_COLUMNS = frozenset(
    {
        "aliases",
        "config",
        "router_settings",
        "permissions",
        "metadata",
        "model_spend",
        "model_max_budget",
        "budget_fallbacks",
        "budget_limits",
    }
)
ARRAY_COLUMNS = frozenset({"models", "allowed_cache_controls", "allowed_routes", "policies", "access_group_ids"})
ARRAY_COLUMNS |= {"allowed_models"}


def _add_columns(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    return "".join(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS {name} {ddl};\n' for name, ddl in columns)


SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "LiteLLM_VerificationToken" (token TEXT PRIMARY KEY);\n'
    + _add_columns("LiteLLM_VerificationToken", TOKEN_COLUMNS)
    + 'CREATE INDEX IF NOT EXISTS "LiteLLM_VerificationToken_key_alias_idx" '
    + 'ON "LiteLLM_VerificationToken" (key_alias);\n'
    + 'CREATE TABLE IF NOT EXISTS "LiteLLM_DeletedVerificationToken" (id TEXT PRIMARY KEY);\n'
    + _add_columns("LiteLLM_DeletedVerificationToken", DELETED_COLUMNS)
    + 'CREATE INDEX IF NOT EXISTS "LiteLLM_DeletedVerificationToken_token_idx" '
    + 'ON "LiteLLM_DeletedVerificationToken" (token);\n'
    + 'CREATE TABLE IF NOT EXISTS "LiteLLM_BudgetTable" (budget_id TEXT PRIMARY KEY);\n'
    + _add_columns("LiteLLM_BudgetTable", BUDGET_COLUMNS)
    + """
CREATE TABLE IF NOT EXISTS "LiteLLM_SpendLogs" (
    request_id TEXT PRIMARY KEY,
    call_type TEXT NOT NULL,
    api_key TEXT NOT NULL DEFAULT '',
    spend DOUBLE PRECISION NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    request_duration_ms INTEGER,
    "completionStartTime" TIMESTAMP(3),
    model TEXT NOT NULL DEFAULT '',
    model_id TEXT DEFAULT '',
    model_group TEXT DEFAULT '',
    custom_llm_provider TEXT DEFAULT '',
    api_base TEXT DEFAULT '',
    "user" TEXT DEFAULT '',
    metadata JSONB DEFAULT '{}',
    end_user TEXT,
    requester_ip_address TEXT,
    status TEXT,
    litellm_call_id TEXT,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS "LiteLLM_SpendLogs_startTime_idx" ON "LiteLLM_SpendLogs" ("startTime");
CREATE INDEX IF NOT EXISTS "LiteLLM_SpendLogs_api_key_startTime_idx" ON "LiteLLM_SpendLogs" (api_key, "startTime");
CREATE OR REPLACE VIEW "Last30dKeysBySpend" AS
SELECT L."api_key", V."key_alias", V."key_name", SUM(L."spend") AS total_spend
FROM "LiteLLM_SpendLogs" L LEFT JOIN "LiteLLM_VerificationToken" V ON L."api_key" = V."token"
WHERE L."startTime" >= (CURRENT_DATE - INTERVAL '30 days')
GROUP BY L."api_key", V."key_alias", V."key_name"
ORDER BY total_spend DESC;
"""
)
# Two sessions (a restarted litellm-sim next to one still draining) may create the schema at once.
SCHEMA_LOCK_ID = 0x7468_6F72  # pg_advisory_xact_lock key

# One statement, so that a spend log row and the key's running total never disagree.
RECORD_SPEND = """
WITH spend_log AS (
    INSERT INTO "LiteLLM_SpendLogs" (
        request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens,
        "startTime", "endTime", request_duration_ms, "completionStartTime", model, model_id, model_group,
        custom_llm_provider, api_base, "user", end_user, requester_ip_address, status, litellm_call_id
    ) VALUES (
        %(request_id)s, %(call_type)s, %(api_key)s, %(spend)s, %(total_tokens)s, %(prompt_tokens)s,
        %(completion_tokens)s, %(start)s, %(end)s, %(duration_ms)s, %(completion_start)s, %(model)s,
        %(model_id)s, %(model_group)s, 'openai', %(api_base)s, %(user)s, %(end_user)s, %(ip)s, 'success', %(call_id)s
    )
)
UPDATE "LiteLLM_VerificationToken"
SET spend = spend + %(spend)s, total_spend = GREATEST(total_spend, spend) + %(spend)s, last_active = %(end)s
WHERE token = %(api_key)s
"""

# The field order of the objects LiteLLM answers with: a Prisma row's model_dump() follows
# schema.prisma (relations last), the pydantic LiteLLM_VerificationToken its own declaration.
PRISMA_TOKEN_FIELDS = (
    "token",
    *(name for name, _ in TOKEN_COLUMNS),
    "litellm_budget_table",
    "litellm_organization_table",
    "litellm_project_table",
    "object_permission",
    "jwt_key_mappings",
)
PYDANTIC_TOKEN_FIELDS = (
    "token",
    "key_name",
    "key_alias",
    "spend",
    "total_spend",
    "max_budget",
    "expires",
    "models",
    "aliases",
    "config",
    "user_id",
    "team_id",
    "agent_id",
    "project_id",
    "max_parallel_requests",
    "metadata",
    "tpm_limit",
    "rpm_limit",
    "tpd_limit",
    "budget_duration",
    "budget_reset_at",
    "allowed_cache_controls",
    "allowed_routes",
    "key_type",
    "permissions",
    "model_spend",
    "model_max_budget",
    "budget_fallbacks",
    "soft_budget_cooldown",
    "blocked",
    "litellm_budget_table",
    "budget_id",
    "org_id",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "settings_updated_at",
    "last_active",
    "object_permission_id",
    "object_permission",
    "access_group_ids",
    "rotation_count",
    "auto_rotate",
    "rotation_interval",
    "last_rotation_at",
    "key_rotation_at",
    "router_settings",
    "budget_limits",
)
DELETED_TOKEN_FIELDS = (
    *PYDANTIC_TOKEN_FIELDS,
    "id",
    "organization_id",
    "deleted_at",
    "deleted_by",
    "deleted_by_api_key",
    "litellm_changed_by",
)
PRISMA_BUDGET_FIELDS = (
    "budget_id",
    *(name for name, _ in BUDGET_COLUMNS),
    "organization",
    "projects",
    "keys",
    "end_users",
    "tags",
    "model_access_groups",
    "team_membership",
    "organization_membership",
)
# GenerateKeyResponse's fields, in its order.
GENERATE_RESPONSE_FIELDS = (
    "key_alias",
    "duration",
    "models",
    "spend",
    "max_budget",
    "user_id",
    "team_id",
    "agent_id",
    "max_parallel_requests",
    "metadata",
    "tpm_limit",
    "rpm_limit",
    "budget_duration",
    "budget_limits",
    "allowed_cache_controls",
    "config",
    "permissions",
    "model_max_budget",
    "budget_fallbacks",
    "model_rpm_limit",
    "model_tpm_limit",
    "mcp_rpm_limit",
    "tag_rpm_limit",
    "guardrails",
    "policies",
    "prompts",
    "blocked",
    "aliases",
    "object_permission",
    "key",
    "tpd_limit",
    "default_estimated_output_tokens",
    "default_estimated_output_tokens_per_model",
    "budget_id",
    "end_user_budget_id",
    "tags",
    "disable_global_guardrails",
    "enable_prompt_caching",
    "throttle_on_budget_exceeded",
    "enforced_params",
    "allowed_routes",
    "allowed_passthrough_routes",
    "denied_passthrough_routes",
    "allowed_vector_store_indexes",
    "rpm_limit_type",
    "tpm_limit_type",
    "router_settings",
    "access_group_ids",
    "key_name",
    "key_type",
    "expires",
    "token_id",
    "organization_id",
    "project_id",
    "litellm_budget_table",
    "token",
    "created_by",
    "updated_by",
    "created_at",
    "updated_at",
)


def dumps(value: Any) -> str:
    """JSON as the real proxy writes it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def hash_key(key: str) -> str:
    """The `token` LiteLLM stores for a key: sha256 over the whole string, `sk-` included."""
    return hashlib.sha256(key.encode()).hexdigest()


def hash_if_needed(key: str) -> str:
    """LiteLLM's hash_token_if_needed: `sk-` keys are hashed, anything else is taken as a hash."""
    return hash_key(key) if key.startswith("sk-") else key


def abbreviate_key(key: str) -> str:
    """The `key_name` LiteLLM stores: `sk-...` and the key's last 4 characters."""
    return "sk-..." if len(key) < MINIMUM_CUSTOM_KEY_LENGTH else f"sk-...{key[-4:]}"


def utcnow() -> datetime:
    # Prisma stores naive UTC timestamps.
    return datetime.now(UTC).replace(tzinfo=None)


def aware(moment: datetime | None) -> datetime | None:
    """A stored (naive UTC) timestamp as Prisma hands it out: in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def jsonable(value: Any, z: bool) -> Any:
    """Timestamps as the real proxy writes them: pydantic (response models) ends them in "Z",
    FastAPI's jsonable_encoder on a plain dict in "+00:00"."""
    if isinstance(value, datetime):
        text = aware(value).isoformat()
        return text.replace("+00:00", "Z") if z else text
    if isinstance(value, dict):
        return {key: jsonable(item, z) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item, z) for item in value]
    return value


# --- configuration -------------------------------------------------------------------------------


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
    model_id: str
    model: str  # the backend's model: litellm_params.model without its `openai/` provider
    api_base: str
    api_key: str | None
    input_cost_per_token: float
    output_cost_per_token: float


@dataclass(frozen=True)
class Settings:
    config_path: str | None
    deployments: dict[str, Deployment]
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
    deployments = {}
    for entry in config.get("model_list") or []:
        params = entry.get("litellm_params") or {}
        provider, _, model = str(params.get("model", "")).partition("/")
        if provider != "openai" or not model or not params.get("api_base"):
            raise ConfigError(
                f"model {entry.get('model_name')!r}: litellm-sim proxies only `openai/<model>` with an api_base"
            )
        deployments[entry["model_name"]] = Deployment(
            model_name=entry["model_name"],
            model_id=deployment_id(entry["model_name"], params),
            model=model,
            api_base=params["api_base"].rstrip("/"),
            api_key=params.get("api_key"),
            input_cost_per_token=float(params.get("input_cost_per_token") or 0),
            output_cost_per_token=float(params.get("output_cost_per_token") or 0),
        )
    return Settings(
        config_path=config_path,
        deployments=deployments,
        master_key=general["master_key"] if "master_key" in general else os.environ.get(MASTER_KEY_ENV),
        master_key_in_config="master_key" in general,
        database_url=general.get("database_url") or os.environ.get("DATABASE_URL"),
        request_timeout=float((config.get("litellm_settings") or {}).get("request_timeout") or DEFAULT_REQUEST_TIMEOUT),
        disable_custom_api_keys=str(general.get("disable_custom_api_keys", False)).lower() in ("true", "1", "yes"),
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


# --- LiteLLM's rules for durations and budgets ----------------------------------------------------


def _normalize_duration(duration: str) -> str:
    return DURATION_ALIASES.get(duration.strip().lower(), duration)


def _shift_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + moment.month - 1 + months
    year, month_index = divmod(total, 12)
    month = month_index + 1
    last_day = (datetime(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def duration_in_seconds(duration: str, now: datetime | None = None) -> int:
    """litellm's duration_in_seconds: "<n>s|m|h|d|w|mo" (or hourly, daily, weekly, monthly), read
    from the start of the string; ValueError otherwise. Months count from `now`."""
    match = re.match(r"(\d+)(mo|[smhdw]?)", _normalize_duration(duration))
    if not match:
        raise ValueError("Invalid duration format")
    value, unit = int(match.group(1)), match.group(2)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if unit in seconds:
        return value * seconds[unit]
    if unit == "mo":
        start = now or datetime.now(UTC)
        return int((_shift_months(start, value) - start).total_seconds())
    raise ValueError(f"Unsupported duration unit, passed duration: {duration}")


def _first_of_month_reset(now: datetime, base_midnight: datetime) -> datetime:
    first = base_midnight.replace(day=1)
    if first <= now:
        return (
            first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
        )
    return first


def next_budget_reset(duration: str, now: datetime) -> datetime:
    """litellm's get_next_standardized_reset_time in UTC with resets at midnight: the end of the
    budget window that `now` is in. Days align to midnight, 7d to Monday, 30d and 1mo to the 1st of
    the month, hours/minutes/seconds to multiples of the value. ValueError for Nmo with N != 1."""
    now = aware(now).astimezone(UTC)
    match = re.match(r"(\d+)([a-z]+)", _normalize_duration(duration))
    base = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if not match:
        return base + timedelta(days=1)
    value, unit = int(match.group(1)), match.group(2)
    if unit in ("d", "w"):
        days = value if unit == "d" else value * 7
        if days == 0:
            return now
        if days == 1:
            return base + timedelta(days=1)  # midnight today has always passed
        if days == 7:
            monday = base + timedelta(days=(7 - now.weekday()) % 7)
            return monday + timedelta(days=7) if monday <= now else monday
        if days == 30:
            return _first_of_month_reset(now, base)
        return base + timedelta(days=days)
    if unit in ("h", "m", "s"):
        if value == 0:
            return now
        parts = {"h": now.hour, "m": now.minute, "s": now.second}
        current = parts[unit]
        nxt = current + value - (current % value) if current % value else current + value
        hour, minute, second = now.hour, now.minute, now.second
        if unit == "h":
            hour, minute, second = nxt, 0, 0
        elif unit == "m":
            hour, minute, second = now.hour + nxt // 60, nxt % 60, 0
        else:
            minute = now.minute + nxt // 60
            hour, minute, second = now.hour + minute // 60, minute % 60, nxt % 60
        if hour >= 24:
            return (base + timedelta(days=1)).replace(hour=hour % 24, minute=minute, second=second)
        return now.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if unit == "mo":
        if value != 1:
            raise ValueError("Monthly resets currently only support 1 month intervals")
        return _first_of_month_reset(now, base)
    return base + timedelta(days=1)


def budget_duration_error(budget_duration: str | None, now: datetime | None = None) -> str | None:
    """litellm's budget_duration_error: why a budget_duration cannot be stored, or None."""
    if budget_duration is None:
        return None
    now = now or datetime.now(UTC)
    try:
        if duration_in_seconds(budget_duration, now) > 0:
            next_budget_reset(budget_duration, now)
            return None
    except (ValueError, OverflowError):
        pass
    return f"Invalid budget_duration '{budget_duration}'. Use a format like '1h', '24h', '7d', or '30d'."


def model_allowed(model: str, allowed: list[str]) -> bool:
    """Whether a key whose `models` are `allowed` may call `model` (check_model_access_helper): an
    empty list, "*" and "all-proxy-models" allow all, and "prefix*" patterns match."""
    if not allowed or "*" in allowed or "all-proxy-models" in allowed or model in allowed:
        return True
    return any("*" in pattern and re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), model) for pattern in allowed)


# --- request validation, as FastAPI and pydantic answer it -----------------------------------------


class Invalid(Exception):
    """A request FastAPI refuses before the endpoint runs: 422 {"detail": [...]}."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _error(kind: str, loc: list[Any], msg: str) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": msg}


_BOOL_STRINGS = {"0": False, "off": False, "f": False, "false": False, "n": False, "no": False}
_BOOL_STRINGS |= {"1": True, "on": True, "t": True, "true": True, "y": True, "yes": True}


def _coerce(kind: str, value: Any, loc: list[Any]) -> tuple[Any, list[dict[str, Any]]]:
    """pydantic's lax-mode coercion of a JSON value (or query string) to one field type."""
    if kind in ("int", "int>=0", "int>=1", "int1..100"):
        if isinstance(value, bool):
            number = int(value)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float):
            if not math.isfinite(value):
                return None, [_error("finite_number", loc, "Input should be a finite number")]
            if not value.is_integer():
                return None, [
                    _error(
                        "int_from_float", loc, "Input should be a valid integer, got a number with a fractional part"
                    )
                ]
            number = int(value)
        elif isinstance(value, str):
            digits = re.fullmatch(r"([+-]?\d+)(?:\.0*)?", value.strip())
            if digits is None:
                return None, [
                    _error("int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer")
                ]
            number = int(digits.group(1))
        else:
            return None, [_error("int_type", loc, "Input should be a valid integer")]
        low = {"int>=0": 0, "int>=1": 1, "int1..100": 1}.get(kind)
        if low is not None and number < low:
            return None, [_error("greater_than_equal", loc, f"Input should be greater than or equal to {low}")]
        if kind == "int1..100" and number > 100:
            return None, [_error("less_than_equal", loc, "Input should be less than or equal to 100")]
        return number, []
    if kind == "float":
        if isinstance(value, bool | int | float):
            return float(value), []
        if isinstance(value, str):
            try:
                return float(value.strip()), []
            except ValueError:
                return None, [
                    _error("float_parsing", loc, "Input should be a valid number, unable to parse string as a number")
                ]
        return None, [_error("float_type", loc, "Input should be a valid number")]
    if kind == "str":
        if isinstance(value, str):
            return value, []
        return None, [_error("string_type", loc, "Input should be a valid string")]
    if kind == "bool":
        if isinstance(value, bool):
            return value, []
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value), []
        if isinstance(value, str) and value.strip().lower() in _BOOL_STRINGS:
            return _BOOL_STRINGS[value.strip().lower()], []
        if isinstance(value, str | int):
            return None, [_error("bool_parsing", loc, "Input should be a valid boolean, unable to interpret input")]
        return None, [_error("bool_type", loc, "Input should be a valid boolean")]
    if kind in ("list", "list[str]"):
        if not isinstance(value, list):
            return None, [_error("list_type", loc, "Input should be a valid list")]
        if kind == "list":
            return value, []
        errors = [
            _error("string_type", [*loc, index], "Input should be a valid string")
            for index, item in enumerate(value)
            if not isinstance(item, str)
        ]
        return (None, errors) if errors else (value, [])
    if kind == "dict":
        if isinstance(value, dict):
            return value, []
        return None, [_error("dict_type", loc, "Input should be a valid dictionary")]
    raise AssertionError(kind)


# The fields of LiteLLM's request models this server reads, in each model's declaration order (the
# order of pydantic's errors). Fields of the real models that are not listed are ignored here, as
# unknown fields are by the real proxy.
_GENERATE_REQUEST: tuple[tuple[str, str], ...] = (
    ("key_alias", "str"),
    ("duration", "str"),
    ("models", "list"),
    ("spend", "float"),
    ("max_budget", "float"),
    ("user_id", "str"),
    ("team_id", "str"),
    ("agent_id", "str"),
    ("max_parallel_requests", "int"),
    ("metadata", "dict"),
    ("tpm_limit", "int>=0"),
    ("rpm_limit", "int>=0"),
    ("budget_duration", "str"),
    ("allowed_cache_controls", "list"),
    ("config", "dict"),
    ("permissions", "dict"),
    ("guardrails", "list[str]"),
    ("policies", "list[str]"),
    ("prompts", "list[str]"),
    ("blocked", "bool"),
    ("aliases", "dict"),
    ("key", "str"),
    ("tpd_limit", "int"),
    ("budget_id", "str"),
    ("tags", "list[str]"),
    ("soft_budget", "float"),
)
GENERATE_REQUEST = (
    *_GENERATE_REQUEST,
    ("send_invite_email", "bool"),
    ("organization_id", "str"),
    ("project_id", "str"),
)
UPDATE_REQUEST = (
    *_GENERATE_REQUEST,
    ("temp_budget_increase", "float"),
    ("organization_id", "str"),
    ("project_id", "str"),
)
DELETE_REQUEST = (("keys", "list[str]"), ("key_aliases", "list[str]"))
BLOCK_REQUEST = (("key", "str"),)


def read_json_body(raw: bytes) -> dict[str, Any]:
    """A management endpoint's body: 422 when missing or malformed. A body that is JSON but no
    object has been refused before (see Handler.body_object)."""
    if not raw.strip():
        raise Invalid([_error("missing", ["body"], "Field required")])
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise Invalid([_error("json_invalid", ["body", getattr(exc, "pos", 0)], "JSON decode error")]) from exc
    return body


def validate(
    body: dict[str, Any], model: tuple[tuple[str, str], ...], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fields of `model` present in `body`, coerced as pydantic would; Invalid (422) otherwise.
    Fields sent as null stay None: "explicitly null" differs from "left out"."""
    fields: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, kind in model:
        if name not in body:
            if name in required:
                errors.append(_error("missing", ["body", name], "Field required"))
            continue
        value = body[name]
        if value is None and name not in required:
            fields[name] = None
            continue
        coerced, problems = _coerce(kind, value, ["body", name])
        errors += problems
        fields[name] = coerced
    if errors:
        raise Invalid(errors)
    return fields


def validate_query(query: dict[str, str], model: tuple[tuple[str, str, Any], ...]) -> dict[str, Any]:
    """Query parameters (name, kind, default) as FastAPI reads them; Invalid (422) otherwise."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, kind, default in model:
        if name not in query:
            values[name] = default
            continue
        coerced, problems = _coerce(kind, query[name], ["query", name])
        errors += problems
        values[name] = coerced
    if errors:
        raise Invalid(errors)
    return values


# --- database ------------------------------------------------------------------------------------


class DatabaseDown(Exception):
    pass


class Database:
    """One autocommit connection, made (with the schema) on first use and again after any failure.
    Every use holds a lock, so that work done in one `run` is never interleaved with another's."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Any = None
        self._lock = threading.Lock()

    def run(self, work: Callable[[Any], Any], atomic: bool = False) -> Any:
        """Run `work(cursor)`; with `atomic`, in one transaction."""
        with self._lock:
            # A connection that was open may have been cut by a restart of the server since: one
            # failure on it is retried on a new connection before the database counts as down.
            while True:
                fresh = self._conn is None
                try:
                    if fresh:
                        self._conn = psycopg2.connect(
                            self._url, connect_timeout=DB_CONNECT_TIMEOUT, tcp_user_timeout=DB_TCP_USER_TIMEOUT_MS
                        )
                        self._conn.autocommit = True
                        with self._conn.cursor() as cur:
                            cur.execute("BEGIN")
                            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
                            cur.execute(SCHEMA)
                            cur.execute("COMMIT")
                        log.info("database connected")
                    with self._conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                        if not atomic:
                            return work(cur)
                        cur.execute("BEGIN")
                        try:
                            result = work(cur)
                        except BaseException:
                            with contextlib.suppress(psycopg2.Error):
                                cur.execute("ROLLBACK")
                            raise
                        cur.execute("COMMIT")
                        return result
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    if self._conn is not None:
                        with contextlib.suppress(psycopg2.Error):
                            self._conn.close()
                        self._conn = None
                    if fresh:
                        raise DatabaseDown(str(exc).strip()) from exc

    def ping(self) -> None:
        self.run(lambda cur: cur.execute("SELECT 1"))

    def find_key(self, token: str) -> dict[str, Any] | None:
        """The key's row, its budget reset first if its budget window has ended."""

        def work(cur: Any) -> Any:
            reset_due_budgets(cur, utcnow(), token)
            return fetch_key(cur, token)

        return self.run(work, atomic=True)

    def record_spend(self, row: dict[str, Any]) -> None:
        self.run(lambda cur: cur.execute(RECORD_SPEND, row))


def _adapt(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and value is not None:
        return psycopg2.extras.Json(value)
    return value


def _placeholder(column: str) -> str:
    # An empty Python list has no element type: name it.
    return "%s::text[]" if column in ARRAY_COLUMNS else "%s"


def insert_row(cur: Any, table: str, row: dict[str, Any], on_conflict_nothing: str | None = None) -> None:
    columns = list(row)
    sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join(map(_placeholder, columns))})'
    if on_conflict_nothing:
        sql += f" ON CONFLICT ({on_conflict_nothing}) DO NOTHING"
    cur.execute(sql, [_adapt(column, row[column]) for column in columns])


def update_key_row(cur: Any, token: str, values: dict[str, Any]) -> dict[str, Any] | None:
    sets = ", ".join(f"{column} = {_placeholder(column)}" for column in values)
    cur.execute(
        f'UPDATE "LiteLLM_VerificationToken" SET {sets} WHERE token = %s RETURNING *',
        [*(_adapt(column, value) for column, value in values.items()), token],
    )
    return cur.fetchone()


def fetch_key(cur: Any, token: str) -> dict[str, Any] | None:
    cur.execute('SELECT * FROM "LiteLLM_VerificationToken" WHERE token = %s', (token,))
    return cur.fetchone()


def fetch_budget(cur: Any, budget_id: str | None) -> dict[str, Any] | None:
    if budget_id is None:
        return None
    cur.execute('SELECT * FROM "LiteLLM_BudgetTable" WHERE budget_id = %s', (budget_id,))
    return cur.fetchone()


def reset_due_budgets(cur: Any, now: datetime, token: str | None = None) -> None:
    """What LiteLLM's ResetBudgetJob does to keys whose budget window has ended: spend back to 0
    and the end of the next window in budget_reset_at."""
    sql = (
        'SELECT token, budget_duration FROM "LiteLLM_VerificationToken" '
        "WHERE budget_reset_at < %s AND (expires IS NULL OR expires > %s)"
    )
    params: list[Any] = [now, now]
    if token is not None:
        sql += " AND token = %s"
        params.append(token)
    cur.execute(sql, params)
    for row in cur.fetchall():
        try:
            reset_at = next_budget_reset(row["budget_duration"], now) if row["budget_duration"] else None
        except (ValueError, OverflowError):
            reset_at = None
        cur.execute(
            'UPDATE "LiteLLM_VerificationToken" SET spend = 0, budget_reset_at = COALESCE(%s, budget_reset_at) '
            "WHERE token = %s",
            (reset_at.replace(tzinfo=None) if reset_at else None, row["token"]),
        )


# The shapes LiteLLM answers rows in.


def budget_view(budget: dict[str, Any] | None) -> dict[str, Any] | None:
    """A LiteLLM_BudgetTable row as Prisma dumps it (relations unloaded)."""
    if budget is None:
        return None
    return {
        name: aware(value) if isinstance(value := budget.get(name), datetime) else value
        for name in PRISMA_BUDGET_FIELDS
    }


def prisma_key_view(row: dict[str, Any], budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """A LiteLLM_VerificationToken row as Prisma dumps it; only litellm_budget_table may be loaded."""
    view = {}
    for name in PRISMA_TOKEN_FIELDS:
        value = row.get(name)
        view[name] = aware(value) if isinstance(value, datetime) else value
    view["litellm_budget_table"] = budget_view(budget)
    return view


def pydantic_key_view(row: dict[str, Any], budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """A key row through LiteLLM's pydantic LiteLLM_VerificationToken (organization_id as org_id)."""
    prisma = prisma_key_view(row, budget)
    return {name: prisma["organization_id"] if name == "org_id" else prisma.get(name) for name in PYDANTIC_TOKEN_FIELDS}


def deleted_key_view(row: dict[str, Any]) -> dict[str, Any]:
    """An archived key through LiteLLM_DeletedVerificationToken."""
    view = pydantic_key_view(row)
    for name in DELETED_TOKEN_FIELDS[len(PYDANTIC_TOKEN_FIELDS) :]:
        value = row.get(name)
        view[name] = aware(value) if isinstance(value, datetime) else value
    view["org_id"] = None
    return view


def key_status(row: dict[str, Any], now: datetime) -> str:
    if row.get("blocked") is True:
        return "revoked"
    if row.get("expires") is None:
        return "active"
    return "expired" if aware(row["expires"]) < aware(now) else "active"


# --- HTTP ----------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in LiteLLM's envelope, {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        err_type: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Any = {"error": {"message": message, "type": err_type, "param": param, "code": str(status)}}
        self.headers = headers or {}


class PlainError(ApiError):
    """An error FastAPI answers itself, {"detail": ...} (an HTTPException no LiteLLM handler caught)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, str(detail), "")
        self.body = {"detail": detail}


def http_error(status: int, detail: Any) -> ApiError:
    """HTTPException(status, detail) as LiteLLM's management endpoints hand it on
    (handle_exception_on_proxy): the message is str(detail), the repr of a dict detail."""
    if status in (401, 403):
        err_type = "auth_error"
    elif status < 500:
        err_type = "invalid_request_error"
    else:
        err_type = "internal_server_error"
    return ApiError(status, str(detail), err_type)


def admin_only(route: str) -> ApiError:
    """RouteChecks._raise_admin_only_route_exception for a key without a user row: role and user_id
    unknown ("unknown" masked to 7 stars)."""
    return ApiError(
        401,
        "Authentication Error, Only proxy admin can be used to generate, delete, update info for new "
        f"keys/users/teams. Route={route}. Your role=unknown. Your user_id=*******",
        "auth_error",
    )


@dataclass(frozen=True)
class Caller:
    api_key: str  # what spend logs, limits and /key/info see: the key's hash, or MASTER_KEY_ALIAS
    is_admin: bool
    key: dict[str, Any] | None  # the key's row in LiteLLM_VerificationToken; None for the master key
    presented: str  # the key as sent, for the messages that quote it abbreviated

    @property
    def token(self) -> str:
        return self.api_key

    @property
    def user_id(self) -> str | None:
        return PROXY_ADMIN_NAME if self.is_admin else (self.key or {}).get("user_id")


@dataclass
class Reservation:
    """A request admitted under its key's limits: a parallel slot and reserved tokens, given back
    (settle with the real usage, or release) exactly once."""

    limiter: Limiter
    api_key: str
    window_start: int
    tokens: int
    parallel: bool
    done: bool = False

    def settle(self, used_tokens: int) -> None:
        self.limiter.finish(self, used_tokens)

    def release(self) -> None:
        self.limiter.finish(self, None)


class Limiter:
    """The per-key rpm/tpm windows and max_parallel_requests gauges of LiteLLM's in-memory
    parallel_request_limiter_v3: a window opens with its first request and lasts RATE_LIMIT_WINDOW
    seconds; requests count when admitted (a refused one too), tokens are reserved up front."""

    def __init__(self, window: int = RATE_LIMIT_WINDOW) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._windows: dict[str, list[int]] = {}  # api_key -> [start, requests, tokens]
        self._in_flight: dict[str, int] = {}

    def _over(self, api_key: str, limit_type: str, limit: int, remaining: int) -> ApiError:
        reset = datetime.fromtimestamp(time.time() + self.window, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        detail = (
            f"Rate limit exceeded for api_key: {api_key}. Limit type: {limit_type}. "
            f"Current limit: {limit}, Remaining: {max(0, remaining)}. Limit resets at: {reset}"
        )
        headers = {"retry-after": str(self.window), "rate_limit_type": limit_type, "reset_at": reset}
        return ApiError(429, detail, "throttling_error", None, headers)

    def admit(self, caller: Caller, estimate: Callable[[int], int]) -> Reservation | None:
        """Count a request against its key's limits; ApiError 429 when one is reached. `estimate`
        gives the tokens to reserve for a key with the given tpm_limit."""
        row = caller.key
        if caller.is_admin or row is None:
            return None
        rpm, tpm, parallel = row.get("rpm_limit"), row.get("tpm_limit"), row.get("max_parallel_requests")
        if rpm is None and tpm is None and parallel is None:
            return None
        api_key = caller.api_key
        with self._lock:
            now = int(time.time())
            window = self._windows.get(api_key)
            if window is None or now - window[0] >= self.window:
                window = self._windows[api_key] = [now, 0, 0]
            if rpm is not None:
                if window[1] > rpm:
                    raise self._over(api_key, "requests", rpm, rpm - window[1])
                window[1] += 1
                if window[1] > rpm:
                    raise self._over(api_key, "requests", rpm, rpm - window[1])
            in_flight = self._in_flight.get(api_key, 0)
            if parallel is not None and in_flight + 1 > parallel:
                raise self._over(api_key, "max_parallel_requests", parallel, parallel - in_flight)
            reserved = 0
            if tpm is not None:
                reserved = estimate(tpm)
                if window[2] + reserved > tpm:
                    raise self._over(api_key, "tokens", tpm, tpm - window[2])
                window[2] += reserved
            if parallel is not None:
                self._in_flight[api_key] = in_flight + 1
        return Reservation(self, api_key, window[0], reserved, parallel is not None)

    def finish(self, reservation: Reservation, used_tokens: int | None) -> None:
        with self._lock:
            if reservation.done:
                return
            reservation.done = True
            if reservation.parallel:
                self._in_flight[reservation.api_key] = max(0, self._in_flight.get(reservation.api_key, 1) - 1)
            window = self._windows.get(reservation.api_key)
            if window is not None and window[0] == reservation.window_start:
                # A failed request gives its reservation back; a finished one counts what it used.
                window[2] = max(0, window[2] - reservation.tokens + (used_tokens or 0))


def request_text_chars(body: dict[str, Any]) -> int:
    """The characters LiteLLM's TPM estimate counts: the messages' text, or the prompt."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        total = 0
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                total += len(content)
            elif isinstance(content, list):
                total += sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
        return total
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt)
    if isinstance(prompt, list):
        return sum(len(str(item)) for item in prompt)
    return 0


def estimate_tokens(body: dict[str, Any], tpm_limit: int) -> int:
    """The tokens the v3 limiter reserves for a request before it runs: characters / 4, plus
    max_tokens or, without it, a floor of min(1024, tpm/4) (at least the input), times n."""
    chars = request_text_chars(body)
    estimated_input = max(1, chars // CHARS_PER_TOKEN) if chars > 0 else 0
    explicit = body.get("max_completion_tokens", body.get("max_tokens"))
    explicit = explicit if isinstance(explicit, int) and not isinstance(explicit, bool) else None
    floor = min(
        int(DEFAULT_MAX_TOKENS_ESTIMATE * NO_MAX_TOKENS_TPM_RESERVATION_FRACTION),
        max(1, int(tpm_limit * NO_MAX_TOKENS_TPM_RESERVATION_FRACTION)),
    )
    if explicit is not None:
        output = explicit
    elif estimated_input == 0:
        output = 0
    else:
        output = max(estimated_input, floor)
    n = body.get("n")
    return estimated_input + output * (n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1)


class Proxy:
    """What the request handlers share: the settings, the database and the shutdown state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url) if settings.database_url else None
        self.shutting_down = False
        self.limiter = Limiter()
        self._token_limits: dict[str, tuple[float, dict[str, int]]] = {}  # model_name -> (expiry, limits)
        # Backends are on the unit's network: an HTTP(S)_PROXY in the environment must not apply.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def authenticate(self, authorization: str | None) -> Caller:
        """Who is calling: the master key, or a virtual key found in the database and not blocked."""
        if authorization is None:
            raise ApiError(401, "Authentication Error, No api key passed in.", "auth_error")
        key = authorization[len("Bearer ") :].strip() if authorization.startswith("Bearer ") else ""
        if not key:
            raise ApiError(
                401,
                "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix.",
                "auth_error",
            )
        # Start-up refused an unset or empty master key.
        if secrets.compare_digest(key.encode(), str(self.settings.master_key).encode()):
            return Caller(MASTER_KEY_ALIAS, True, None, key)
        if self.db is None:
            raise ApiError(400, "No connected db.", "no_db_connection")
        if not key.startswith("sk-"):
            masked = f"{key[:4]}****{key[-4:]}" if len(key) > 8 else "****"
            raise ApiError(
                401, f"LiteLLM Virtual Key expected. Received={masked}, expected to start with 'sk-'.", "auth_error"
            )
        token = hash_key(key)
        try:
            row = self.db.find_key(token)
        except DatabaseDown as exc:
            log.warning("key lookup failed: %s", exc)
            raise ApiError(503, DB_DOWN_MESSAGE, "no_db_connection") from exc
        if row is None:
            raise ApiError(401, "Authentication Error, Invalid API key provided.", "token_not_found_in_db", "key")
        if row.get("blocked") is True:
            raise ApiError(
                401,
                "Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin.",
                "auth_error",
            )
        return Caller(token, False, row, key)

    def authorize(self, caller: Caller, route: str, model: str | None = None) -> None:
        """The checks user_api_key_auth runs on a virtual key after finding it, in its order: the
        model the request names, expiry, budget (LLM routes), then the route itself."""
        row = caller.key
        if caller.is_admin or row is None:
            return
        allowed = list(row.get("models") or [])
        if model is not None and route in LLM_ROUTES and not model_allowed(model, allowed):
            raise ApiError(
                403,
                f"The requested model '{model}' is not available for this API key, or the model name is invalid. "
                "Check the models available to you and try again.",
                "key_model_access_denied",
                "model",
            )
        expires = aware(row.get("expires"))
        if expires is not None:
            now = datetime.now(UTC)
            if expires < now:
                raise ApiError(
                    401,
                    f"Authentication Error - Expired Key. Key Expiry time {expires} and current time {now}",
                    "expired_key",
                    abbreviate_key(caller.presented),
                )
        max_budget = row.get("max_budget")
        if route in LLM_ROUTES and max_budget is not None and math.isfinite(max_budget):
            spend = float(row.get("spend") or 0.0)
            if spend >= max_budget:
                label = row.get("key_alias") or "key"
                key_name = row.get("key_name")
                if key_name and re.fullmatch(r"sk-\.\.\.(?:[^\s\x00-\x1f\x7f-\x9f]{4})?", key_name):
                    label = f"{label} ({key_name})"
                raise ApiError(
                    422,
                    f"Budget has been exceeded! Key={label} Current cost: {spend}, Max budget: {max_budget}",
                    "budget_exceeded",
                )
        if route in ADMIN_ONLY_ROUTES or (route.startswith("/key/") and route.endswith("/regenerate")):
            raise admin_only(route)

    def run_db(self, work: Callable[[Any], Any], atomic: bool = True) -> Any:
        """Database work of a management endpoint; 503 when the database is away."""
        if self.db is None:
            raise http_error(500, {"error": DB_NOT_CONNECTED})
        try:
            return self.db.run(work, atomic=atomic)
        except DatabaseDown as exc:
            log.warning("database not reachable: %s", exc)
            raise ApiError(503, DB_DOWN_MESSAGE, "no_db_connection") from exc

    def backend(self, deployment: Deployment, path: str, payload: dict[str, Any] | None = None) -> Any:
        """POST `payload` to the backend (GET without one), with the deployment's api_key."""
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        if deployment.api_key:
            headers["Authorization"] = f"Bearer {deployment.api_key}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(deployment.api_base + path, data=data, headers=headers)
        timeout = self.settings.request_timeout if payload is not None else MODEL_INFO_TIMEOUT
        return self._opener.open(request, timeout=timeout)

    def token_limits(self, deployment: Deployment) -> dict[str, int]:
        """max_input_tokens and max_output_tokens from the backend's max_model_len, as the listing shows them."""
        expiry, limits = self._token_limits.get(deployment.model_name, (0.0, {}))
        if time.monotonic() < expiry:
            return limits
        try:
            with self.backend(deployment, "/models") as response:
                cards = json.load(response)["data"]
            card = next((card for card in cards if card.get("id") == deployment.model), {})
            context = card.get("max_model_len") or card.get("context_length")
            limits = {"max_input_tokens": context, "max_output_tokens": context} if isinstance(context, int) else {}
            ttl = MODEL_INFO_TTL
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            limits, ttl = {}, MODEL_INFO_RETRY
        self._token_limits[deployment.model_name] = (time.monotonic() + ttl, limits)
        return limits

    def record_spend(self, row: dict[str, Any]) -> None:
        if self.db is None:
            return
        try:
            self.db.record_spend(row)
        except (DatabaseDown, psycopg2.Error) as exc:
            # The answer has been computed; losing its log entry must not fail the request.
            log.warning("spend log %s not recorded: %s", row["request_id"], exc)


def backend_error(exc: Exception, model_name: str) -> ApiError:
    """How the real proxy reports a backend failure: the backend's status with its message, or 500
    if the backend was unreachable."""
    if isinstance(exc, urllib.error.HTTPError):
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, KeyError, TypeError):
            detail = json.loads(detail)["error"]["message"]
        status = exc.code
        message = f"litellm.APIError: OpenAIException - {detail}"
    else:
        status = 500
        message = "litellm.InternalServerError: InternalServerError: OpenAIException - Connection error."
    return ApiError(
        status,
        f"{message}\n\nLiteLLM: model group '{model_name}' failed with the error above. No fallback was attempted.",
        "invalid_request_error" if status < 500 else "internal_server_error",
    )


# --- key management ------------------------------------------------------------------------------


def _check_budget(name: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise http_error(400, {"error": f"{name} must be a non-negative finite number. Received: {value}"})


def _check_budget_duration(budget_duration: str | None) -> None:
    error = budget_duration_error(budget_duration)
    if error is not None:
        raise http_error(400, {"error": error})


def _check_premium_fields(fields: dict[str, Any]) -> None:
    for name in PREMIUM_KEY_FIELDS:
        if fields.get(name):
            raise http_error(
                403, {"error": f"This feature is only available for LiteLLM Enterprise users: {name}. {NOT_PREMIUM}"}
            )


# litellm's raise_if_unsafe_secret_name: ".." as a path segment, or a control character.
UNSAFE_ALIAS = re.compile(r"(^|/)\.\.(/|$)|[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _check_alias_format(alias: str | None) -> None:
    """Control characters or a ".." path segment are refused; nothing else is (no pattern configured)."""
    if alias is None:
        return
    if UNSAFE_ALIAS.search(alias):
        raise ApiError(
            400,
            'Invalid key_alias: must not contain control characters (such as tab or newline) or a ".." path segment',
            "bad_request_error",
            "key_alias",
        )


def _check_alias_unique(cur: Any, alias: str | None, token: str | None = None) -> None:
    if alias is None:
        return
    sql = 'SELECT 1 FROM "LiteLLM_VerificationToken" WHERE key_alias = %s'
    params: list[Any] = [alias]
    if token is not None:
        sql += " AND token <> %s"
        params.append(token)
    cur.execute(sql + " LIMIT 1", params)
    if cur.fetchone() is not None:
        raise ApiError(
            400,
            f"Key with alias '{alias}' already exists. Unique key aliases across all keys are required.",
            "bad_request_error",
            "key_alias",
        )


def _expires(duration: str, now: datetime) -> datetime:
    return now + timedelta(seconds=duration_in_seconds(duration, now))


def _create_budget(cur: Any, soft_budget: float | None, changed_by: str, now: datetime) -> str:
    budget_id = str(uuid.uuid4())
    row = {"budget_id": budget_id, "soft_budget": soft_budget, "model_max_budget": {}}
    row |= {"created_at": now, "created_by": changed_by, "updated_at": now, "updated_by": changed_by}
    insert_row(cur, "LiteLLM_BudgetTable", row)
    return budget_id


def _blank_to_none(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {**body, **{name: None for name in names if body.get(name) == ""}}


class KeyManagement:
    """The /key/* endpoints, /spend/logs and /global/spend/keys over the proxy's database."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    # POST /key/generate

    def generate(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        fields = validate(
            _blank_to_none(body, ("max_budget", "team_id", "organization_id", "project_id")), GENERATE_REQUEST
        )
        _check_budget("max_budget", fields.get("max_budget"))
        _check_budget("soft_budget", fields.get("soft_budget"))
        _check_budget_duration(fields.get("budget_duration"))
        _check_premium_fields(fields)
        alias = fields.get("key_alias")
        _check_alias_format(alias)
        custom_key = fields.get("key")
        now = datetime.now(UTC)

        def work(cur: Any) -> dict[str, Any]:
            _check_alias_unique(cur, alias)
            if custom_key is not None:
                if self.proxy.settings.disable_custom_api_keys:
                    raise http_error(
                        403,
                        {
                            "error": "Custom API key values are disabled by your administrator. "
                            "Keys must be auto-generated."
                        },
                    )
                if not custom_key.startswith("sk-"):
                    masked = f"{custom_key[:4]}****{custom_key[-4:]}" if len(custom_key) > 8 else "****"
                    raise http_error(
                        400,
                        {"error": f"Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: {masked}"},
                    )
                if len(custom_key) < MINIMUM_CUSTOM_KEY_LENGTH:
                    raise http_error(
                        400,
                        {
                            "error": "Invalid key format. LiteLLM Virtual Key must be at least "
                            f"{MINIMUM_CUSTOM_KEY_LENGTH} characters long."
                        },
                    )
                # The contract's rule; LiteLLM 1.109.1 itself only checks this on /key/block.
                if not re.fullmatch(r"sk-[A-Za-z0-9_-]+", custom_key):
                    raise http_error(
                        400,
                        {
                            "error": "Invalid key format. LiteLLM Virtual Key may only use letters, digits, '_' "
                            "and '-' after 'sk-'."
                        },
                    )
            duration = fields.get("duration")
            try:
                expires = None if duration is None else _expires(duration, now)
            except ValueError as exc:
                # Raised outside LiteLLM's handling of bad input: a 500 with the parser's message.
                raise ApiError(500, str(exc), "internal_server_error") from exc
            budget_duration = fields.get("budget_duration")
            raw_key = custom_key if custom_key is not None else "sk-" + secrets.token_urlsafe(GENERATED_KEY_BYTES)
            token = hash_key(raw_key)
            metadata = dict(fields.get("metadata") or {})
            # Premium fields (only empty ones get this far) are kept in the metadata.
            metadata |= {name: fields[name] for name in PREMIUM_KEY_FIELDS if fields.get(name) is not None}
            budget_id = fields.get("budget_id")
            if fields.get("soft_budget") is not None:
                budget_id = _create_budget(cur, fields["soft_budget"], PROXY_ADMIN_NAME, now.replace(tzinfo=None))
            stored = {
                "token": token,
                "key_name": abbreviate_key(raw_key),
                "key_alias": alias,
                "spend": fields.get("spend") if fields.get("spend") is not None else 0.0,
                "expires": expires.replace(tzinfo=None) if expires else None,
                "models": list(fields.get("models") or []),
                "aliases": fields.get("aliases") or {},
                "config": fields.get("config") or {},
                "router_settings": {},
                "user_id": fields.get("user_id"),
                "team_id": fields.get("team_id"),
                "agent_id": fields.get("agent_id"),
                "project_id": fields.get("project_id"),
                "permissions": fields.get("permissions") or {},
                "max_parallel_requests": fields.get("max_parallel_requests"),
                "metadata": metadata,
                "blocked": fields.get("blocked"),
                "tpm_limit": fields.get("tpm_limit"),
                "rpm_limit": fields.get("rpm_limit"),
                "tpd_limit": fields.get("tpd_limit"),
                "max_budget": fields.get("max_budget"),
                "budget_duration": budget_duration,
                "budget_reset_at": next_budget_reset(budget_duration, now).replace(tzinfo=None)
                if budget_duration
                else None,
                "allowed_cache_controls": list(fields.get("allowed_cache_controls") or []),
                "allowed_routes": [],
                "key_type": "default",
                "model_max_budget": {},
                "budget_fallbacks": {},
                "budget_id": budget_id,
                "organization_id": fields.get("organization_id"),
                "created_at": now.replace(tzinfo=None),
                "created_by": PROXY_ADMIN_NAME,
                "updated_at": now.replace(tzinfo=None),
                "updated_by": PROXY_ADMIN_NAME,
                "access_group_ids": [],
            }
            # The real proxy upserts with "update nothing": a key that exists stays as it is.
            insert_row(cur, "LiteLLM_VerificationToken", stored, on_conflict_nothing="token")
            row = fetch_key(cur, token)
            budget = budget_view(fetch_budget(cur, row.get("budget_id")))
            # The answer is built from the request, whatever is stored.
            answer = {name: None for name in GENERATE_RESPONSE_FIELDS}
            answer |= {name: value for name, value in stored.items() if name in answer}
            answer |= {
                "key": raw_key,
                "expires": expires,
                "router_settings": dict(ROUTER_SETTINGS_DUMP),
                "token_id": token,
                "token": token,
                "budget_id": budget_id,
                "litellm_budget_table": budget,
                "created_at": aware(row["created_at"]),
                "updated_at": aware(row["updated_at"]),
            }
            return jsonable(answer, z=True)

        return self.proxy.run_db(work)

    # POST /key/update

    def update(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        body = _blank_to_none({k: v for k, v in body.items() if not (k == "team_id" and v == "")}, ("max_budget",))
        fields = validate(_blank_to_none(body, ("organization_id",)), UPDATE_REQUEST)
        if fields.get("key") is None and fields.get("key_alias") is None:
            raise Invalid([_error("value_error", ["body"], "Value error, either key or key_alias must be provided")])
        _check_budget("max_budget", fields.get("max_budget"))
        _check_budget("soft_budget", fields.get("soft_budget"))
        now = datetime.now(UTC)

        def work(cur: Any) -> dict[str, Any]:
            reset_due_budgets(cur, now.replace(tzinfo=None))
            existing = self._find_for_update(cur, fields.get("key"), fields.get("key_alias"))
            key = fields["key"] if fields.get("key") is not None else existing["token"]
            spend = fields.get("spend")
            if spend is not None and not math.isfinite(spend):
                raise http_error(400, {"error": f"spend must be a finite number. Received: {spend}"})
            _check_budget_duration(fields.get("budget_duration"))
            _check_premium_fields(fields)
            values: dict[str, Any] = {}
            for name in (
                "key_alias",
                "models",
                "spend",
                "max_budget",
                "user_id",
                "team_id",
                "agent_id",
                "max_parallel_requests",
                "tpm_limit",
                "rpm_limit",
                "tpd_limit",
                "blocked",
                "aliases",
                "config",
                "permissions",
                "allowed_cache_controls",
                "budget_id",
                "organization_id",
                "project_id",
            ):
                if name in fields:
                    values[name] = fields[name]
            # Columns Prisma cannot set to null are set to their empty value.
            for name, empty in (("models", []), ("aliases", {}), ("config", {}), ("permissions", {})):
                if name in values and values[name] is None:
                    values[name] = empty
            if "allowed_cache_controls" in values and values["allowed_cache_controls"] is None:
                values["allowed_cache_controls"] = []
            if "spend" in values and values["spend"] is None:
                values["spend"] = 0.0
            if "duration" in fields:
                duration = fields["duration"]
                if duration is None or duration == "-1":
                    values["expires"] = None
                elif duration:
                    try:
                        values["expires"] = _expires(duration, now).replace(tzinfo=None)
                    except ValueError as exc:
                        raise ApiError(400, str(exc), "invalid_request_error") from exc
            if "budget_duration" in fields:
                budget_duration = fields["budget_duration"]
                if budget_duration is None:
                    values["budget_duration"] = None
                    values["budget_reset_at"] = None
                elif budget_duration:
                    values["budget_duration"] = budget_duration
                    values["budget_reset_at"] = next_budget_reset(budget_duration, now).replace(tzinfo=None)
            # metadata replaces what is stored; tags are kept inside it.
            metadata = fields["metadata"] if "metadata" in fields else dict(existing.get("metadata") or {})
            metadata = dict(metadata or {})
            metadata |= {name: fields[name] for name in PREMIUM_KEY_FIELDS if fields.get(name) is not None}
            values["metadata"] = metadata
            new_alias = values.get("key_alias")
            if new_alias != existing.get("key_alias"):
                _check_alias_format(new_alias)
            _check_alias_unique(cur, new_alias, existing["token"])
            if "soft_budget" in fields:
                if existing.get("budget_id") is not None:
                    cur.execute(
                        'UPDATE "LiteLLM_BudgetTable" SET soft_budget = %s, updated_by = %s, updated_at = %s '
                        "WHERE budget_id = %s",
                        (fields["soft_budget"], PROXY_ADMIN_NAME, now.replace(tzinfo=None), existing["budget_id"]),
                    )
                elif fields["soft_budget"] is not None:
                    values["budget_id"] = _create_budget(
                        cur, fields["soft_budget"], PROXY_ADMIN_NAME, now.replace(tzinfo=None)
                    )
            values["settings_updated_at"] = now.replace(tzinfo=None)
            values["updated_at"] = now.replace(tzinfo=None)
            row = update_key_row(cur, existing["token"], values)
            return jsonable({"key": key, **prisma_key_view(row)}, z=False)

        return self.proxy.run_db(work)

    @staticmethod
    def _find_for_update(cur: Any, key: str | None, alias: str | None) -> dict[str, Any]:
        if key is not None:
            row = fetch_key(cur, hash_if_needed(key))
            if row is None:
                raise ApiError(404, KEY_NOT_FOUND, "not_found_error", "key")
            return row
        cur.execute('SELECT * FROM "LiteLLM_VerificationToken" WHERE key_alias = %s LIMIT 2', (alias,))
        rows = cur.fetchall()
        if not rows:
            raise ApiError(404, f"Key not found. No key with key_alias='{alias}'.", "not_found_error", "key_alias")
        if len(rows) > 1:
            raise ApiError(
                400,
                f"Multiple keys share key_alias='{alias}', so it cannot be used as an identifier.",
                "bad_request_error",
                "key_alias",
            )
        return rows[0]

    # GET /key/info

    def info(self, caller: Caller, query: dict[str, str]) -> dict[str, Any]:
        key = query.get("key") or caller.api_key
        token = hash_if_needed(key)

        def work(cur: Any) -> dict[str, Any]:
            now = utcnow()
            reset_due_budgets(cur, now, token)
            live = fetch_key(cur, token)
            if live is not None:
                row, info = live, prisma_key_view(live, fetch_budget(cur, live.get("budget_id")))
                info["status"] = key_status(live, now)
            else:
                cur.execute(
                    'SELECT * FROM "LiteLLM_DeletedVerificationToken" WHERE token = %s '
                    "ORDER BY deleted_at DESC LIMIT 1",
                    (token,),
                )
                row = cur.fetchone()
                if row is None:
                    raise ApiError(404, "Key not found in database", "not_found_error", "key")
                info = deleted_key_view(row) | {"status": "deleted"}
            if not caller.is_admin and caller.api_key != key and row.get("user_id") != caller.user_id:
                raise http_error(403, "You are not allowed to access this key's info. Your role=None")
            info.pop("token", None)
            return jsonable({"key": key, "info": info}, z=False)

        return self.proxy.run_db(work)

    # GET /key/list

    LIST_QUERY = (("page", "int>=1", 1), ("size", "int1..100", 10), ("return_full_object", "bool", False))

    def list(self, caller: Caller, query: dict[str, str]) -> dict[str, Any]:
        params = validate_query(query, self.LIST_QUERY)
        status = query.get("status")
        if status is not None and status not in ("active", "expired", "revoked", "deleted"):
            raise http_error(
                400, {"error": "Invalid status value. Supported: 'active', 'expired', 'revoked', 'deleted'."}
            )
        expires_filter = query.get("expires")
        if expires_filter is not None and expires_filter not in ("active", "expired"):
            raise http_error(400, {"error": "Invalid expires value. Supported: 'active', 'expired'."})
        if not caller.is_admin:
            # A non-admin needs a user row, which this server never has.
            raise ApiError(
                403,
                "You are not authorized to access this endpoint. No 'user_id' is associated with your API key.",
                "bad_request_error",
                "user_id",
            )
        page, size = params["page"], params["size"]

        def work(cur: Any) -> dict[str, Any]:
            now = utcnow()
            reset_due_budgets(cur, now)
            table = "LiteLLM_DeletedVerificationToken" if status == "deleted" else "LiteLLM_VerificationToken"
            where = ["(team_id IS NULL OR team_id <> 'litellm-dashboard')"]
            args: list[Any] = []
            for column, name in (
                ("user_id", "user_id"),
                ("team_id", "team_id"),
                ("organization_id", "organization_id"),
                ("key_alias", "key_alias"),
                ("token", "key_hash"),
            ):
                if query.get(name):
                    where.append(f"{column} = %s")
                    args.append(query[name])
            not_blocked = "(blocked IS NULL OR blocked = false)"
            if status == "revoked":
                where.append("blocked = true")
            elif status == "expired":
                where.append(f"{not_blocked} AND expires IS NOT NULL AND expires < %s")
                args.append(now)
            elif status == "active":
                where.append(f"{not_blocked} AND (expires IS NULL OR expires >= %s)")
                args.append(now)
            if expires_filter == "expired":
                where.append("expires IS NOT NULL AND expires < %s")
                args.append(now)
            elif expires_filter == "active":
                where.append("(expires IS NULL OR expires >= %s)")
                args.append(now)
            condition = " AND ".join(where)
            cur.execute(f'SELECT count(*) AS n FROM "{table}" WHERE {condition}', args)
            total = cur.fetchone()["n"]
            cur.execute(
                f'SELECT * FROM "{table}" WHERE {condition} ORDER BY created_at DESC NULLS LAST, token DESC '
                "OFFSET %s LIMIT %s",
                [*args, (page - 1) * size, size],
            )
            rows = cur.fetchall()
            if params["return_full_object"]:
                if status == "deleted":
                    keys: list[Any] = [deleted_key_view(row) for row in rows]
                else:
                    keys = [pydantic_key_view(row, fetch_budget(cur, row.get("budget_id"))) for row in rows]
            else:
                keys = [row["token"] for row in rows]
            return jsonable(
                {"keys": keys, "total_count": total, "current_page": page, "total_pages": -(-total // size)}, z=True
            )

        return self.proxy.run_db(work)

    # POST /key/delete

    def delete(self, caller: Caller, body: dict[str, Any], changed_by: str | None) -> dict[str, Any]:
        if not body.get("keys") and not body.get("key_aliases"):
            raise Invalid(
                [
                    _error(
                        "value_error",
                        ["body"],
                        "Value error, At least one of 'keys' or 'key_aliases' must be provided.",
                    )
                ]
            )
        fields = validate(body, DELETE_REQUEST)

        def work(cur: Any) -> dict[str, Any]:
            if fields.get("keys"):
                named = fields["keys"]
                cur.execute(
                    'SELECT * FROM "LiteLLM_VerificationToken" WHERE token = ANY(%s)',
                    ([hash_if_needed(k) for k in named],),
                )
            else:
                named = fields["key_aliases"]
                cur.execute('SELECT * FROM "LiteLLM_VerificationToken" WHERE key_alias = ANY(%s)', (named,))
            rows = cur.fetchall()
            if not rows:
                raise http_error(404, {"error": "No keys found"})
            deleted_at = utcnow()
            for row in rows:
                archived = {name: row.get(name) for name, _ in DELETED_COLUMNS if name in row}
                archived |= {
                    "id": str(uuid.uuid4()),
                    "deleted_at": deleted_at,
                    "deleted_by": caller.user_id,
                    "deleted_by_api_key": caller.api_key,
                    "litellm_changed_by": changed_by,
                }
                insert_row(cur, "LiteLLM_DeletedVerificationToken", archived)
            cur.execute(
                'DELETE FROM "LiteLLM_VerificationToken" WHERE token = ANY(%s)', ([row["token"] for row in rows],)
            )
            return {"deleted_keys": named}

        return self.proxy.run_db(work)

    # POST /key/block, /key/unblock

    def set_blocked(self, caller: Caller, body: dict[str, Any], blocked: bool) -> dict[str, Any]:
        key = validate(body, BLOCK_REQUEST, required=("key",))["key"]
        if self.proxy.db is None:
            raise ApiError(500, DB_NOT_CONNECTED, "internal_server_error")
        if not (3 <= len(key) <= 100 and re.fullmatch(r"sk-[A-Za-z0-9_-]+|[a-fA-F0-9]{64}", key)):
            raise ApiError(400, "Invalid key format.", "bad_request_error", "key")
        token = hash_if_needed(key)

        def work(cur: Any) -> dict[str, Any]:
            if fetch_key(cur, token) is None:
                raise ApiError(404, KEY_NOT_FOUND, "not_found_error", "key")
            now = utcnow()
            row = update_key_row(cur, token, {"blocked": blocked, "settings_updated_at": now, "updated_at": now})
            return jsonable(pydantic_key_view(row), z=True)

        return self.proxy.run_db(work)

    # GET /spend/logs

    def spend_logs(self, query: dict[str, str]) -> list[dict[str, Any]]:
        where, args = [], []
        if query.get("api_key") is not None:
            where.append("api_key = %s")
            args.append(hash_if_needed(query["api_key"]))
        if query.get("request_id") is not None:
            where.append("(request_id = %s OR litellm_call_id = %s)")
            args += [query["request_id"], query["request_id"]]
        if query.get("user_id") is not None:
            where.append('"user" = %s')
            args.append(query["user_id"])
        if query.get("start_date") is not None and query.get("end_date") is not None:
            summarize = validate_query(query, (("summarize", "bool", True),))["summarize"]
            if summarize:
                raise ApiError(
                    400,
                    "litellm-sim does not summarise spend logs by day: pass summarize=false for the log rows",
                    "invalid_request_error",
                )
            try:
                start = datetime.strptime(query["start_date"], "%Y-%m-%d")
                end = datetime.strptime(query["end_date"], "%Y-%m-%d")
            except ValueError as exc:
                raise ApiError(500, f"/spend/logs Error{exc}", "internal_error") from exc
            where.append('"startTime" >= %s AND "startTime" <= %s')
            args += [start, end]
        condition = " WHERE " + " AND ".join(where) if where else ""

        def work(cur: Any) -> list[dict[str, Any]]:
            cur.execute(
                f'SELECT * FROM "LiteLLM_SpendLogs"{condition} ORDER BY "startTime" DESC LIMIT %s',
                [*args, SPEND_LOGS_CAP],
            )
            return [jsonable(dict(row), z=True) for row in cur.fetchall()]

        return self.proxy.run_db(work, atomic=False)

    # GET /global/spend/keys

    def global_spend_keys(self, query: dict[str, str]) -> list[dict[str, Any]]:
        limit = validate_query(query, (("limit", "int", None),))["limit"]
        if limit is not None and limit < 1:
            raise PlainError(422, {"error": f"Invalid limit: {limit}, error: Limit must be greater than 0"})

        def work(cur: Any) -> list[dict[str, Any]]:
            sql = 'SELECT * FROM "Last30dKeysBySpend"' + (" LIMIT %s" if limit is not None else "")
            cur.execute(sql, [limit] if limit is not None else [])
            return [dict(row) for row in cur.fetchall()]

        return self.proxy.run_db(work, atomic=False)


GET_ROUTES = {
    "/health/liveliness": "liveliness",
    "/health/liveness": "liveliness",
    "/health/readiness": "readiness",
    "/health": "health",
    "/v1/models": "models",
    "/models": "models",
    "/key/info": "key_info",
    "/key/list": "key_list",
    "/spend/logs": "spend_logs",
    "/global/spend/keys": "global_spend_keys",
}
POST_ROUTES = {
    "/chat/completions": "chat/completions",
    "/v1/chat/completions": "chat/completions",
    "/completions": "completions",
    "/v1/completions": "completions",
}
KEY_POST_ROUTES = {
    "/key/generate": "generate",
    "/key/update": "update",
    "/key/delete": "delete",
    "/key/block": "block",
    "/key/unblock": "unblock",
    "/key/regenerate": "regenerate",
}
REGENERATE_PATH = re.compile(r"/key/.+/regenerate")
# Parsed, but not a JSON value: told apart from a body that parses to something else than an object.
_MALFORMED = object()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: Server

    def version_string(self) -> str:
        return "uvicorn"

    def setup(self) -> None:
        super().setup()
        # As uvicorn does: headers and body leave at once, not held back until the client's
        # delayed acknowledgement of the headers (40 ms a request on keep-alive connections).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def proxy(self) -> Proxy:
        return self.server.proxy

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s - %s", self.address_string(), format % args)

    # dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        # FastAPI keeps the last of repeated query parameters.
        self.query = dict(parse_qsl(url.query, keep_blank_values=True))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        post_routes = POST_ROUTES.keys() | KEY_POST_ROUTES.keys()
        try:
            if method == "GET" and path in GET_ROUTES:
                getattr(self, "get_" + GET_ROUTES[path])()
            elif method == "POST" and path in POST_ROUTES:
                self.completion(POST_ROUTES[path], path, body)
            elif method == "POST" and (path in KEY_POST_ROUTES or REGENERATE_PATH.fullmatch(path)):
                self.key_post(path, body)
            elif path in GET_ROUTES or path in post_routes:
                allow = "GET" if path in GET_ROUTES else "POST"
                self.send_json(405, {"detail": "Method Not Allowed"}, {"allow": allow})
            else:
                self.send_json(404, {"detail": "Not Found"})
        except ApiError as exc:
            headers = dict(exc.headers)
            if exc.status == 429:
                headers |= {"x-litellm-call-id": str(uuid.uuid4()), "x-litellm-version": VERSION}
            self.send_json(exc.status, exc.body, headers)
        except Invalid as exc:
            self.send_json(422, {"detail": exc.errors})
        except Exception:
            # Answer as the real proxy would rather than drop the connection without a word.
            log.exception("%s %s failed", method, path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_json(500, ApiError(500, "Internal Server Error", "internal_server_error").body)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = dumps(body).encode()
        self.send_response(status)
        for name, value in {**(headers or {}), "content-type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def caller(self, route: str) -> Caller:
        """The caller, checked for `route` (for a request that names no model)."""
        caller = self.proxy.authenticate(self.headers.get("Authorization"))
        self.proxy.authorize(caller, route)
        return caller

    # endpoints

    def get_liveliness(self) -> None:
        if self.proxy.shutting_down:
            self.send_json(503, {"status": "shutting_down"})
        else:
            self.send_json(200, "I'm alive!")

    def get_readiness(self) -> None:
        if self.proxy.shutting_down:
            self.send_json(503, {"status": "shutting_down"})
            return
        db = self.proxy.db
        if db is None:
            self.send_json(200, {"status": "healthy", "db": "Not connected"})
            return
        try:
            db.ping()
        except DatabaseDown as exc:
            log.warning("readiness: database not connected: %s", exc)
            self.send_json(503, {"status": "healthy", "db": "disconnected"})
            return
        self.send_json(200, {"status": "healthy", "db": "connected"})

    def get_models(self) -> None:
        caller = self.caller(urlsplit(self.path).path)
        # A key limited to some models lists only those.
        allowed = list((caller.key or {}).get("models") or [])
        data = [
            {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "openai"}
            | self.proxy.token_limits(deployment)
            for name, deployment in self.proxy.settings.deployments.items()
            if model_allowed(name, allowed)
        ]
        self.send_json(200, {"data": data, "object": "list"})

    def get_health(self) -> None:
        self.caller("/health")
        healthy, unhealthy = [], []
        for deployment in self.proxy.settings.deployments.values():
            entry = {
                "api_base": deployment.api_base,
                "model": f"openai/{deployment.model}",
                "model_id": deployment.model_id,
            }
            payload = {
                "model": deployment.model,
                "messages": [{"role": "user", "content": HEALTH_PROMPT}],
                "max_tokens": HEALTH_MAX_TOKENS,
            }
            try:
                with self.proxy.backend(deployment, "/chat/completions", payload) as response:
                    response.read()
                healthy.append(entry)
            except (urllib.error.URLError, OSError) as exc:
                error = backend_error(exc, deployment.model_name)
                unhealthy.append({**entry, "error": error.body["error"]["message"], "exception_status": error.status})
        self.send_json(
            200,
            {
                "healthy_endpoints": healthy,
                "unhealthy_endpoints": unhealthy,
                "healthy_count": len(healthy),
                "unhealthy_count": len(unhealthy),
            },
        )

    # key management

    def get_key_info(self) -> None:
        caller = self.caller("/key/info")
        self.send_json(200, KeyManagement(self.proxy).info(caller, self.query))

    def get_key_list(self) -> None:
        caller = self.caller("/key/list")
        self.send_json(200, KeyManagement(self.proxy).list(caller, self.query))

    def get_spend_logs(self) -> None:
        self.caller("/spend/logs")
        self.send_json(200, KeyManagement(self.proxy).spend_logs(self.query))

    def get_global_spend_keys(self) -> None:
        self.caller("/global/spend/keys")
        self.send_json(200, KeyManagement(self.proxy).global_spend_keys(self.query))

    def key_post(self, path: str, raw: bytes) -> None:
        # The real proxy reads the body while checking the key: JSON that is not an object is
        # refused before the key is; a missing or malformed body after it, by FastAPI (422).
        parsed: Any = _MALFORMED
        if raw.strip():
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
            if parsed is not _MALFORMED and not isinstance(parsed, dict):
                raise ApiError(400, "Invalid JSON payload: expected an object", "invalid_request_error", "request_body")
        caller = self.caller(path)
        endpoint = KEY_POST_ROUTES.get(path, "regenerate")
        keys = KeyManagement(self.proxy)
        if endpoint == "regenerate":
            # Before anything else, without an Enterprise licence (a ValueError: 500).
            raise ApiError(
                500, f"Regenerating Virtual Keys is an Enterprise feature, {NOT_PREMIUM}", "internal_server_error"
            )
        body = read_json_body(raw)
        if endpoint == "generate":
            answer = keys.generate(caller, body)
        elif endpoint == "update":
            answer = keys.update(caller, body)
        elif endpoint == "delete":
            answer = keys.delete(caller, body, self.headers.get("litellm-changed-by"))
        else:
            answer = keys.set_blocked(caller, body, endpoint == "block")
        self.send_json(200, answer)

    # completions

    def completion(self, kind: str, route: str, raw: bytes) -> None:
        caller = self.proxy.authenticate(self.headers.get("Authorization"))
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(400, f"Invalid JSON payload: {exc}", "invalid_request_error", "request_body") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload: expected an object", "invalid_request_error", "request_body")
        model = body.get("model")
        self.proxy.authorize(caller, route, model if isinstance(model, str) else None)
        reservation = self.proxy.limiter.admit(caller, lambda tpm_limit: estimate_tokens(body, tpm_limit))
        try:
            self.proxy_completion(caller, kind, body, reservation)
        finally:
            # Given back unless the answer settled it with its usage.
            if reservation is not None:
                reservation.release()

    def proxy_completion(
        self, caller: Caller, kind: str, body: dict[str, Any], reservation: Reservation | None
    ) -> None:
        if kind == "chat/completions" and "messages" not in body:
            raise ApiError(
                400, "/chat/completions: Missing required parameter: 'messages'.", "invalid_request_error", "messages"
            )
        model_name = body.get("model")
        deployment = self.proxy.settings.deployments.get(model_name) if isinstance(model_name, str) else None
        if deployment is None:
            raise ApiError(
                400,
                f"/{kind}: Invalid model name passed in model={model_name}. "
                "Call `/v1/models` to view available models for your key.",
                "invalid_request_error",
            )
        payload = {**body, "model": deployment.model}
        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        if stream:
            # Spend needs the usage, which a stream carries only when asked for it.
            payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        call_id = str(uuid.uuid4())
        started = utcnow()
        try:
            upstream = self.proxy.backend(deployment, "/" + kind, payload)
        except (urllib.error.URLError, OSError) as exc:
            raise backend_error(exc, deployment.model_name) from exc
        end_user = body.get("user") if isinstance(body.get("user"), str) else None
        spend = SpendRecord(
            self.proxy, caller, deployment, kind, call_id, started, self.client_address[0], end_user, reservation
        )
        headers = {
            "x-litellm-call-id": call_id,
            "x-litellm-model-id": deployment.model_id,
            "x-litellm-model-group": deployment.model_name,
            "x-litellm-version": VERSION,
        }
        with upstream:
            if stream:
                self.relay_stream(upstream, spend, headers, wants_usage)
            else:
                try:
                    answer = json.loads(upstream.read())
                except (OSError, ValueError) as exc:
                    raise backend_error(exc, deployment.model_name) from exc
                # The real proxy answers with the model name the client called, not the backend's.
                answer["model"] = deployment.model_name
                cost = spend.finish(answer.get("id"), answer.get("usage"))
                self.send_json(200, answer, {**headers, "x-litellm-response-cost": repr(cost)})

    def relay_stream(self, upstream: Any, spend: SpendRecord, headers: dict[str, str], wants_usage: bool) -> None:
        """Pass the backend's events on as they arrive, under the model name the client called. The
        usage chunk, which the proxy asks for to price the request, reaches only clients that asked."""
        self.send_response(200)
        stream_headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        for name, value in {**headers, **stream_headers, "transfer-encoding": "chunked"}.items():
            self.send_header(name, value)
        self.end_headers()
        response_id, usage, first_token = None, None, None
        try:
            for event in read_events(upstream):
                first_token = first_token or utcnow()
                data = event.strip().removeprefix(b"data:").strip()
                if data.startswith(b"{"):
                    chunk = json.loads(data)
                    response_id = response_id or chunk.get("id")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                        if not wants_usage and not chunk.get("choices"):
                            continue
                    chunk["model"] = spend.deployment.model_name
                    event = b"data: " + dumps(chunk).encode() + b"\n\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        except (OSError, ValueError) as exc:
            # The client left or the backend broke off: without the final usage there is nothing to price.
            log.warning("stream %s ended early: %s", spend.call_id, exc)
            self.close_connection = True
            return
        # Record before the terminating chunk, so a client that saw the stream end finds the row.
        spend.finish(response_id, usage, first_token)
        self.wfile.write(b"0\r\n\r\n")


def read_events(response: Any) -> Iterator[bytes]:
    """Server-sent events of a streamed response, each as soon as its closing blank line arrives."""
    event = b""
    while line := response.readline():
        event += line
        if not line.strip():
            yield event
            event = b""
    if event.strip():
        yield event


@dataclass(frozen=True)
class SpendRecord:
    """One request's spend: priced from the usage and written to the spend log once it is known."""

    proxy: Proxy
    caller: Caller
    deployment: Deployment
    kind: str
    call_id: str
    started: datetime
    ip: str
    end_user: str | None  # the request's `user`
    reservation: Reservation | None = None  # the key's rate-limit reservation, settled by the usage

    def finish(
        self, response_id: str | None, usage: dict[str, Any] | None, first_token: datetime | None = None
    ) -> float:
        """Price the request and log it; `first_token` is when a stream's first chunk came."""
        usage = usage or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cost = prompt * self.deployment.input_cost_per_token + completion * self.deployment.output_cost_per_token
        ended = utcnow()
        total_tokens = int(usage.get("total_tokens") or prompt + completion)
        if self.reservation is not None:
            self.reservation.settle(total_tokens)
        self.proxy.record_spend(
            {
                "request_id": response_id or self.call_id,
                "call_type": "acompletion" if self.kind == "chat/completions" else "atext_completion",
                "api_key": self.caller.api_key,
                "spend": cost,
                "total_tokens": total_tokens,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "start": self.started,
                "end": ended,
                "duration_ms": int((ended - self.started).total_seconds() * 1000),
                "completion_start": first_token or ended,
                "model": self.deployment.model,
                "model_id": self.deployment.model_id,
                "model_group": self.deployment.model_name,
                "api_base": self.deployment.api_base,
                "user": self.caller.user_id or "",
                "end_user": self.end_user,
                "ip": self.ip,
                "call_id": self.call_id,
            }
        )
        return cost


class Server(ThreadingHTTPServer):
    # Request threads are joined on shutdown, so that SIGTERM drains requests in flight.
    daemon_threads = False

    def __init__(self, address: tuple[str, int], proxy: Proxy) -> None:
        self.proxy = proxy
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drain(self) -> None:
        """Stop accepting, then end every connection once its request in flight is answered."""
        self.shutdown()
        with self._connections_lock:
            for connection in self._connections:
                # Reading ends, writing does not: an idle keep-alive connection closes at once, a
                # busy one after its answer.
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RD)


# --- start-up ------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="litellm", description="litellm-sim: a stand-in for the LiteLLM proxy")
    parser.add_argument("--config", help="the proxy's config.yaml")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--num_workers", type=int, default=1, help="accepted; requests are served by threads")
    parser.add_argument("--detailed_debug", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.detailed_debug else logging.INFO,
        format="%(asctime)s %(levelname)s litellm-sim: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 1
    refusal = master_key_refusal(settings)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return REFUSAL_EXIT
    if not os.environ.get("LITELLM_SALT_KEY"):
        log.warning("LITELLM_SALT_KEY is not set: stored credentials are encrypted with the master key")
    proxy = Proxy(settings)
    if proxy.db is not None:
        try:
            proxy.db.ping()
        except DatabaseDown as exc:
            log.warning("database not reachable yet, readiness answers 503 until it is: %s", exc)
    try:
        server = Server((args.host, args.port), proxy)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1

    def stop(signum: int, _frame: Any) -> None:
        log.info("%s: finishing requests in flight", signal.Signals(signum).name)
        proxy.shutting_down = True
        threading.Thread(target=server.drain).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("litellm %s proxying %s on http://%s:%s", VERSION, ", ".join(settings.deployments), args.host, args.port)
    # Polled for shutdown 10 times a second: SIGTERM with nothing in flight ends the server at once.
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

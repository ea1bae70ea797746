"""Key management: /key/*, /spend/logs and /global/spend/keys over the proxy's database."""

from __future__ import annotations

import math
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import MINIMUM_CUSTOM_KEY_LENGTH, PROXY_ADMIN_NAME, abbreviate_key, aware, hash_key, utcnow
from .db import (
    DELETED_COLUMNS,
    budget_view,
    deleted_key_view,
    fetch_budget,
    fetch_key,
    insert_row,
    key_status,
    prisma_key_view,
    pydantic_key_view,
    reset_due_budgets,
    update_key_row,
)
from .durations import budget_duration_error, duration_in_seconds, next_budget_reset
from .errors import ApiError, PlainError, http_error
from .proxy import DB_NOT_CONNECTED, Caller, Proxy
from .validation import (
    BLOCK_REQUEST,
    DELETE_REQUEST,
    GENERATE_REQUEST,
    UPDATE_REQUEST,
    Invalid,
    field_error,
    validate,
    validate_query,
)

# LiteLLM's constants (litellm/constants.py, 1.109.1).
GENERATED_KEY_BYTES = 16  # LENGTH_OF_LITELLM_GENERATED_KEY, for secrets.token_urlsafe
SPEND_LOGS_CAP = 10000
NOT_PREMIUM = (
    "You must be a LiteLLM Enterprise user to use this feature. If you have a license please set `LITELLM_LICENSE` "
    "in your env. Get a 7 day trial key here: https://www.litellm.ai/enterprise#trial. \n"
    "Pricing: https://www.litellm.ai/#pricing"
)
# Key settings LiteLLM keeps in the key's metadata rather than in columns, in its order: those that
# need an Enterprise licence when set to a non-empty value (LiteLLM_ManagementEndpoint_MetadataFields_Premium)
# and the others (LiteLLM_ManagementEndpoint_MetadataFields), each as far as the request models carry them
# and this server reads them (see validation.GENERATE_REQUEST).
PREMIUM_KEY_FIELDS = (
    "disable_global_guardrails",
    "guardrails",
    "policies",
    "tags",
    "prompts",
    "allowed_passthrough_routes",
    "denied_passthrough_routes",
)
METADATA_KEY_FIELDS = (
    "model_rpm_limit",
    "model_tpm_limit",
    "default_estimated_output_tokens",
    "mcp_rpm_limit",
    "tag_rpm_limit",
    "rpm_limit_type",
    "tpm_limit_type",
    "enforced_params",
    "throttle_on_budget_exceeded",
    "enable_prompt_caching",
)
KEY_NOT_FOUND = "Key not found."
# Metadata entries that never change once set (LiteLLM_Reserved_Metadata_Fields).
RESERVED_METADATA_FIELDS = ("service_account_id",)
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


def hash_if_needed(key: str) -> str:
    """LiteLLM's hash_token_if_needed: `sk-` keys are hashed, anything else is taken as a hash."""
    return hash_key(key) if key.startswith("sk-") else key


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


def _with_key_settings(metadata: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The metadata with the key settings LiteLLM keeps there (premium ones get this far only empty);
    a setting sent as null leaves the metadata alone."""
    settings = {
        name: fields[name] for name in (*PREMIUM_KEY_FIELDS, *METADATA_KEY_FIELDS) if fields.get(name) is not None
    }
    return metadata | settings


def _check_service_account_team(metadata: dict[str, Any] | None, team_id: str | None) -> None:
    """A key with metadata.service_account_id belongs to a team (validate_team_id_used_in_service_account_request)."""
    if metadata is not None and metadata.get("service_account_id") is not None and team_id is None:
        raise http_error(
            400, "team_id is required for service account keys. Please specify `team_id` in the request body."
        )


def _keep_reserved_metadata(metadata: dict[str, Any] | None, stored: dict[str, Any]) -> dict[str, Any]:
    """prepare_metadata_fields: a reserved entry once set is kept when the new metadata leaves it out;
    another value for it, or metadata sent as null, is 400."""
    kept = dict(metadata or {})
    for name in RESERVED_METADATA_FIELDS:
        value = stored.get(name)
        if value is None:
            continue
        if metadata is None or kept.get(name, value) != value:
            raise http_error(400, f"{name} is immutable once set and cannot be changed via update.")
        kept[name] = value
    return kept


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
        _check_service_account_team(fields.get("metadata"), fields.get("team_id"))
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
            metadata = _with_key_settings(dict(fields.get("metadata") or {}), fields)
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
            raise Invalid(
                [field_error("value_error", ["body"], "Value error, either key or key_alias must be provided")]
            )
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
            _check_service_account_team(fields.get("metadata"), fields.get("team_id") or existing.get("team_id"))
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
            # metadata replaces what is stored, but for its reserved entries; the settings sent are merged into it.
            stored_metadata = dict(existing.get("metadata") or {})
            metadata = _keep_reserved_metadata(fields.get("metadata", stored_metadata), stored_metadata)
            values["metadata"] = _with_key_settings(metadata, fields)
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
                    field_error(
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

"""What the request handlers share: authentication and the checks on a key, the database, the backends."""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2

from .common import MASTER_KEY_ALIAS, PROXY_ADMIN_NAME, abbreviate_key, aware, hash_key, log
from .config import Deployment, Settings
from .db import Database, DatabaseDown
from .errors import ApiError, http_error
from .limits import Limiter
from .router import HEALTH_MAX_TOKENS, HEALTH_PROMPTS, Failure, Router

DB_DOWN_MESSAGE = "Service Unavailable, the authentication database is temporarily unreachable. Please retry shortly."
# The real proxy reads each backend's context length from its /v1/models for the model listing, and
# refreshes it every 5 minutes (after a minute when the backend did not answer).
MODEL_INFO_TTL = 300
MODEL_INFO_RETRY = 60
MODEL_INFO_TIMEOUT = 5
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


def model_allowed(model: str, allowed: list[str]) -> bool:
    """Whether a key whose `models` are `allowed` may call `model` (check_model_access_helper): an
    empty list, "*" and "all-proxy-models" allow all, and "prefix*" patterns match."""
    if not allowed or "*" in allowed or "all-proxy-models" in allowed or model in allowed:
        return True
    return any("*" in pattern and re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), model) for pattern in allowed)


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


class Proxy:
    """What the request handlers share: the settings, the database and the shutdown state."""

    def __init__(self, settings: Settings, workers: int = 1) -> None:
        self.settings = settings
        self.router = Router(settings.router, settings.groups, workers)
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

    def probe(self, deployment: Deployment) -> Failure | None:
        """A health check: a short completion straight to the deployment, not through the router."""
        payload = {
            "model": deployment.model,
            "messages": [{"role": "user", "content": self.router.rng.choice(HEALTH_PROMPTS)}],
            "max_tokens": HEALTH_MAX_TOKENS,
        }
        try:
            with self.backend(deployment, "/chat/completions", payload) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            return backend_failure(exc, deployment.model_name)
        return None

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


def backend_failure(exc: Exception, model_name: str) -> Failure:
    """A failed attempt on a backend, with the Retry-After it sent."""
    retry_after = None
    if isinstance(exc, urllib.error.HTTPError):
        with contextlib.suppress(TypeError, ValueError):
            retry_after = float(exc.headers.get("retry-after"))
    return Failure(backend_error(exc, model_name), retry_after)


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

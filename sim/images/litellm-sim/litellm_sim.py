#!/usr/bin/env python3
"""litellm-sim: the LiteLLM proxy 1.109.1 in database mode, as the thorfleet collection uses it.

The real proxy cannot use PostgreSQL on these machines (its Prisma engines download at run time),
so this server speaks the part of its HTTP contract the collection relies on
(shared/LITELLM_CONTRACT.md) over a real PostgreSQL, with only the standard library, PyYAML and
psycopg2: start-up checks, master-key auth, health and readiness, model listing, proxying
completions (streaming too) to vLLM, and spend logging. tests/contract/test_litellm_real.py runs
the same requests against the real proxy (without a database) and against this one.

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
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
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
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

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

log = logging.getLogger("litellm-sim")

# Prisma's names and types from litellm's schema.prisma, so that what the collection reads from
# PostgreSQL is laid out as on a real unit. The key columns beyond `token` and `spend` are there
# for key management, limits and budgets.
SCHEMA = """
CREATE TABLE IF NOT EXISTS "LiteLLM_VerificationToken" (
    token TEXT PRIMARY KEY,
    key_name TEXT,
    key_alias TEXT,
    spend DOUBLE PRECISION NOT NULL DEFAULT 0,
    expires TIMESTAMP(3),
    models TEXT[] NOT NULL DEFAULT '{}',
    aliases JSONB NOT NULL DEFAULT '{}',
    config JSONB NOT NULL DEFAULT '{}',
    user_id TEXT,
    team_id TEXT,
    permissions JSONB NOT NULL DEFAULT '{}',
    max_parallel_requests INTEGER,
    metadata JSONB NOT NULL DEFAULT '{}',
    blocked BOOLEAN,
    tpm_limit BIGINT,
    rpm_limit BIGINT,
    max_budget DOUBLE PRECISION,
    budget_duration TEXT,
    budget_reset_at TIMESTAMP(3),
    model_spend JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP,
    created_by TEXT,
    updated_at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP,
    updated_by TEXT,
    last_active TIMESTAMP(3)
);
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
"""

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
UPDATE "LiteLLM_VerificationToken" SET spend = spend + %(spend)s, last_active = %(end)s WHERE token = %(api_key)s
"""


def dumps(value: Any) -> str:
    """JSON as the real proxy writes it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def hash_key(key: str) -> str:
    """The `token` LiteLLM stores for a key: sha256 over the whole string, `sk-` included."""
    return hashlib.sha256(key.encode()).hexdigest()


def utcnow() -> datetime:
    # Prisma stores naive UTC timestamps.
    return datetime.now(UTC).replace(tzinfo=None)


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


# --- database ------------------------------------------------------------------------------------


class DatabaseDown(Exception):
    pass


class Database:
    """One autocommit connection, made (with the schema) on first use and again after any failure."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Any = None
        self._lock = threading.Lock()

    def _run(self, work: Callable[[Any], Any]) -> Any:
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
                            cur.execute(SCHEMA)
                        log.info("database connected")
                    with self._conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                        return work(cur)
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
                    if fresh:
                        raise DatabaseDown(str(exc).strip()) from exc

    def ping(self) -> None:
        self._run(lambda cur: cur.execute("SELECT 1"))

    def find_key(self, token: str) -> dict[str, Any] | None:
        def work(cur: Any) -> Any:
            cur.execute('SELECT * FROM "LiteLLM_VerificationToken" WHERE token = %s', (token,))
            return cur.fetchone()

        return self._run(work)

    def record_spend(self, row: dict[str, Any]) -> None:
        self._run(lambda cur: cur.execute(RECORD_SPEND, row))


# --- HTTP ----------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in LiteLLM's envelope, {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, err_type: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": err_type, "param": param, "code": str(status)}}


@dataclass(frozen=True)
class Caller:
    token: str  # sha256 of the presented key: what spend logs and the token table are keyed by
    is_admin: bool
    key: dict[str, Any] | None  # the key's row in LiteLLM_VerificationToken; None for the master key


class Proxy:
    """What the request handlers share: the settings, the database and the shutdown state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url) if settings.database_url else None
        self.shutting_down = False
        self._token_limits: dict[str, tuple[float, dict[str, int]]] = {}  # model_name -> (expiry, limits)
        # Backends are on the unit's network: an HTTP(S)_PROXY in the environment must not apply.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def authenticate(self, authorization: str | None) -> Caller:
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
            return Caller(hash_key(key), True, None)
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
        return Caller(token, False, row)

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


GET_ROUTES = {
    "/health/liveliness": "liveliness",
    "/health/liveness": "liveliness",
    "/health/readiness": "readiness",
    "/health": "health",
    "/v1/models": "models",
    "/models": "models",
}
POST_ROUTES = {
    "/chat/completions": "chat/completions",
    "/v1/chat/completions": "chat/completions",
    "/completions": "completions",
    "/v1/completions": "completions",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: Server

    def version_string(self) -> str:
        return "uvicorn"

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
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if method == "GET" and path in GET_ROUTES:
                getattr(self, "get_" + GET_ROUTES[path])()
            elif method == "POST" and path in POST_ROUTES:
                self.completion(POST_ROUTES[path], body)
            elif path in GET_ROUTES or path in POST_ROUTES:
                allow = "GET" if path in GET_ROUTES else "POST"
                self.send_json(405, {"detail": "Method Not Allowed"}, {"allow": allow})
            else:
                self.send_json(404, {"detail": "Not Found"})
        except ApiError as exc:
            self.send_json(exc.status, exc.body)
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

    def caller(self) -> Caller:
        return self.proxy.authenticate(self.headers.get("Authorization"))

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
        self.caller()
        data = [
            {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "openai"}
            | self.proxy.token_limits(deployment)
            for name, deployment in self.proxy.settings.deployments.items()
        ]
        self.send_json(200, {"data": data, "object": "list"})

    def get_health(self) -> None:
        self.caller()
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

    def completion(self, kind: str, raw: bytes) -> None:
        caller = self.caller()
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(400, f"Invalid JSON payload: {exc}", "invalid_request_error", "request_body") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid JSON payload: expected an object", "invalid_request_error", "request_body")
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
        spend = SpendRecord(self.proxy, caller, deployment, kind, call_id, started, self.client_address[0], end_user)
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

    def finish(
        self, response_id: str | None, usage: dict[str, Any] | None, first_token: datetime | None = None
    ) -> float:
        """Price the request and log it; `first_token` is when a stream's first chunk came."""
        usage = usage or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        cost = prompt * self.deployment.input_cost_per_token + completion * self.deployment.output_cost_per_token
        ended = utcnow()
        self.proxy.record_spend(
            {
                "request_id": response_id or self.call_id,
                "call_type": "acompletion" if self.kind == "chat/completions" else "atext_completion",
                "api_key": self.caller.token,
                "spend": cost,
                "total_tokens": int(usage.get("total_tokens") or prompt + completion),
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
                "user": (self.caller.key or {}).get("user_id") or "",
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
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

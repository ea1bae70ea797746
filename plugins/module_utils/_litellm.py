# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""The one client for the LiteLLM proxy's admin API used by this collection.

Written against LiteLLM 1.109.1 and docs/litellm-contract.md:

- keys are stored hashed: ``token = sha256(raw.encode()).hexdigest()``; a raw key is only ever sent in
  the body of ``POST /key/generate``. Lookups, updates and deletes use the hash, and a raw key never goes
  into a query string;
- errors are decided by the HTTP status alone, never by the ``type`` or the text of the answer;
- connection errors and 503 are retried with exponential backoff, nothing else is;
- every raw key (the master key, keys handed to ``generate_key``, keys the proxy generated) is redacted
  from every message this client builds.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import socket
import ssl
import threading
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, make_context

DEFAULT_API_URL = "http://127.0.0.1:12434"
USER_AGENT = "thorfleet.llm-litellm"

# Metadata entry this collection adds to every key it manages; `exclusive` only ever deletes keys carrying it.
MANAGED_MARKER = "thorfleet_managed"

# GET /key/list accepts size 1..100.
MAX_PAGE_SIZE = 100

# Upper bound of the thread pools the modules send requests from.
MAX_CONCURRENCY = 64

# The connection options of every module that talks to the proxy (documented in doc_fragments/litellm.py).
CONNECTION_SPEC = dict(
    api_url=dict(type="str", default=DEFAULT_API_URL),
    master_key=dict(type="str", required=True, no_log=True),
    timeout=dict(type="int", default=30),
    validate_certs=dict(type="bool", default=True),
    retries=dict(type="int", default=3),
)

# Raw keys are `sk-` + URL-safe base64 (generated) or `sk-` + [A-Za-z0-9_-] (custom): redact anything shaped so.
_RAW_KEY_RE = re.compile(r"sk-[A-Za-z0-9_-]{4,}")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
REDACTED = "********"


def hash_key(raw_key: str) -> str:
    """The `token` LiteLLM stores for a raw key: sha256 over the whole string, `sk-` included."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def is_hash(value: object) -> bool:
    return isinstance(value, str) and bool(_HASH_RE.match(value))


def error_message(raw: bytes | str | None, default: str = "") -> str:
    """The message of a LiteLLM error answer: the `{"error": {...}}` envelope, `{"error": "..."}`,
    FastAPI's `{"detail": ...}` (422 validation lists included) or the bare text."""
    if raw is None:
        return default
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:500] or default
    message = _message_of(data)
    return message if message else (text.strip()[:500] or default)


def _message_of(data: object) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        parts = []
        for item in data:
            if isinstance(item, dict) and "msg" in item:
                location = ".".join(str(part) for part in item.get("loc", []) if part != "body")
                parts.append(f"{location}: {item['msg']}" if location else str(item["msg"]))
            else:
                parts.append(_message_of(item))
        return "; ".join(part for part in parts if part)
    if isinstance(data, dict):
        for field in ("error", "detail", "message"):
            if field in data and data[field] not in (None, "", {}, []):
                return _message_of(data[field])
        return json.dumps(data, sort_keys=True)
    return "" if data is None else str(data)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def open_url(url: str, method: str = "GET", context: ssl.SSLContext | None = None, **kwargs):
    """`ansible.module_utils.urls.open_url`, with an SSL context made once and passed in.

    `open_url` builds a new context, loading the whole CA bundle, for every request: about 50 ms of CPU that
    holds the GIL, which would serialise a bulk run's threads. This is the client's only way out.
    (`Request.open` installs its opener process-wide before using it; every request of a client builds an
    identical one, so concurrent requests are not affected.)
    """
    return Request().open(method, url, context=context, **kwargs)


class LiteLLMError(Exception):
    """A request that failed: `status` is the HTTP status, None when the proxy could not be reached."""

    def __init__(self, method: str, path: str, status: int | None, message: str, attempts: int = 1) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        self.attempts = attempts
        super().__init__(str(self))

    def __str__(self) -> str:
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        if self.status is None:
            return f"{self.method} {self.path}: cannot reach the LiteLLM proxy{tries}: {self.message}"
        return f"{self.method} {self.path} answered HTTP {self.status}{tries}: {self.message}"


def _connection_reason(exc: BaseException) -> BaseException:
    reason = getattr(exc, "reason", None) if isinstance(exc, URLError) else None
    return reason if isinstance(reason, BaseException) else exc


def _is_tls_failure(exc: BaseException) -> bool:
    """Certificate and TLS failures do not heal by retrying."""
    reason = _connection_reason(exc)
    return isinstance(reason, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _never_sent(exc: BaseException) -> bool:
    """True when the request cannot have reached the proxy (refused, name not resolved)."""
    reason = _connection_reason(exc)
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


class LiteLLMClient:
    """LiteLLM's admin API, authenticated with the master key (proxy_admin)."""

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        master_key: str = "",
        timeout: float = 30,
        validate_certs: bool = True,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        if not master_key:
            raise ValueError("the master key is required")
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._master_key = master_key
        self._secrets = {master_key}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        """One context for every request. A plain-HTTP proxy gets one without CA certificates (no cost to
        build), which fails closed should the proxy ever redirect to HTTPS."""
        with self._lock:
            if self._context is None:
                if self.api_url.lower().startswith("https:"):
                    self._context = make_context(validate_certs=self.validate_certs)
                else:
                    self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            return self._context

    # --- secrets ------------------------------------------------------------------------------------

    def add_secret(self, value: str | None) -> None:
        """Redact `value` from every message this client builds from now on."""
        if value:
            with self._lock:
                self._secrets.add(value)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return _RAW_KEY_RE.sub("sk-" + REDACTED, text)

    # --- transport ----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: dict | None = None,
        body: dict | None = None,
        retry_if_maybe_sent: bool = True,
    ) -> object:
        """Send one request, retrying connection errors and 503; the parsed JSON answer, or LiteLLMError.

        `retry_if_maybe_sent=False` is for requests that must not run twice: they are retried only when
        they cannot have reached the proxy (connection refused, unresolved name) or were answered 503.
        """
        target = path + ("?" + urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": "Bearer " + self._master_key, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            try:
                response = open_url(
                    self.api_url + target,
                    data=data,
                    headers=headers,
                    method=method,
                    timeout=self.timeout,
                    validate_certs=self.validate_certs,
                    context=self._ssl_context(),
                    http_agent=USER_AGENT,
                    use_netrc=False,
                )
                raw = response.read()
                status = getattr(response, "status", None) or response.getcode()
            except HTTPError as exc:
                status = exc.code
                if status == 503 and attempt <= self.retries:
                    self._wait(attempt)
                    continue
                message = error_message(_read_error_body(exc), default=str(exc.reason or ""))
                raise LiteLLMError(method, target, status, self.redact(message), attempt) from None
            except (URLError, OSError, http.client.HTTPException, UrlsConnectionError) as exc:
                retryable = not _is_tls_failure(exc) and (retry_if_maybe_sent or _never_sent(exc))
                if retryable and attempt <= self.retries:
                    self._wait(attempt)
                    continue
                reason = _connection_reason(exc)
                message = f"{type(reason).__name__}: {reason}"
                raise LiteLLMError(method, target, None, self.redact(message), attempt) from None
            if not 200 <= status < 300:  # open_url raises HTTPError for these; a stand-in might not
                raise LiteLLMError(method, target, status, self.redact(error_message(raw)), attempt)
            if not raw:
                return {}
            try:
                return json.loads(raw)
            except ValueError:
                raise LiteLLMError(method, target, status, "the answer is not JSON", attempt) from None

    def _wait(self, attempt: int) -> None:
        delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        _sleep(delay * (1 + random.random() / 4))

    # --- keys ---------------------------------------------------------------------------------------

    def key_info(self, token: str) -> dict | None:
        """The key stored under `token` (its sha256), or None when there is none or it was deleted."""
        _require_hash(token)
        try:
            answer = self.request("GET", "/key/info", {"key": token})
        except LiteLLMError as exc:
            if exc.status == 404:
                return None
            raise
        info = answer.get("info") if isinstance(answer, dict) else None
        if not isinstance(info, dict):
            raise LiteLLMError("GET", "/key/info?" + urlencode({"key": token}), 200, "the answer has no 'info' object")
        if info.get("status") == "deleted":
            return None
        row = dict(info)
        row["token"] = token
        return row

    def list_keys(self, page_size: int = MAX_PAGE_SIZE, **filters: str | None) -> list[dict]:
        """Every key matching the exact-match `filters` (key_alias, key_hash, user_id, team_id), all pages."""
        return self._list_pages(page_size, filters)[0]

    def find_by_alias(self, key_alias: str) -> list[dict]:
        return self.list_keys(key_alias=key_alias)

    def find_by_hash(self, token: str) -> list[dict]:
        _require_hash(token)
        return self.list_keys(key_hash=token)

    def list_all_keys(self, page_size: int = MAX_PAGE_SIZE, scans: int = 3) -> list[dict]:
        """Every live key. Pages shift when keys are deleted meanwhile: rescan (up to `scans` times in all)
        until the keys seen match the count the proxy reports."""
        keys: list[dict] = []
        for _scan in range(max(1, scans)):
            keys, totals = self._list_pages(page_size, {})
            if len(set(totals)) == 1 and len(keys) == totals[0]:
                break
        return keys

    def list_managed_keys(self, marker: str = MANAGED_MARKER) -> list[dict]:
        """Keys whose metadata carries `marker: true` (LiteLLM cannot filter on metadata: a full scan)."""
        return [key for key in self.list_all_keys() if is_managed(key, marker)]

    def _list_pages(self, page_size: int, filters: dict) -> tuple[list[dict], list[int]]:
        """The keys of every page, and the total count each page reported."""
        size = max(1, min(MAX_PAGE_SIZE, int(page_size)))
        query = {name: value for name, value in filters.items() if value is not None}
        query["return_full_object"] = "true"
        rows: list[dict] = []
        seen: set = set()
        totals: list[int] = []
        page = 1
        while True:
            answer = self.request("GET", "/key/list", {**query, "page": page, "size": size})
            if not isinstance(answer, dict) or not isinstance(answer.get("keys"), list):
                raise LiteLLMError("GET", "/key/list", 200, "the answer has no 'keys' list")
            for key in answer["keys"]:
                if not isinstance(key, dict) or not is_hash(key.get("token")):
                    raise LiteLLMError("GET", "/key/list", 200, "a listed key has no token (return_full_object?)")
                if key["token"] not in seen:
                    seen.add(key["token"])
                    rows.append(key)
            totals.append(int(answer.get("total_count") or 0))
            if not answer["keys"] or page >= int(answer.get("total_pages") or 0):
                return rows, totals
            page += 1

    def spend_logs(self, token: str) -> list[dict]:
        """The spend log rows of the key stored under `token` (GET /spend/logs?api_key=<hash>), newest first."""
        _require_hash(token)
        answer = self.request("GET", "/spend/logs", {"api_key": token})
        if not isinstance(answer, list):
            raise LiteLLMError("GET", "/spend/logs", 200, "the answer is not a list of spend log rows")
        return [row for row in answer if isinstance(row, dict)]

    def generate_key(self, body: dict) -> dict:
        """POST /key/generate. A caller-chosen raw key in `body["key"]` is the only raw key ever sent.

        LiteLLM answers 200 to a duplicate custom key without storing anything: look it up by hash first.
        Without a custom key the request is not resent once it may have reached the proxy, so that a lost
        answer cannot create a second key.
        """
        raw_key = body.get("key")
        self.add_secret(raw_key)
        answer = self.request("POST", "/key/generate", body=body, retry_if_maybe_sent=raw_key is not None)
        if not isinstance(answer, dict):
            raise LiteLLMError("POST", "/key/generate", 200, "the answer is not an object")
        self.add_secret(answer.get("key"))
        return answer

    def update_key(self, token: str, fields: dict) -> dict:
        """POST /key/update by hash with only `fields` (patch semantics; `metadata` replaces)."""
        _require_hash(token)
        answer = self.request("POST", "/key/update", body={"key": token, **fields})
        return answer if isinstance(answer, dict) else {}

    def delete_keys(self, tokens: list[str] | None = None, key_aliases: list[str] | None = None) -> list:
        """POST /key/delete by hashes or by aliases; what was deleted ([] when none of them exists: 404)."""
        if bool(tokens) == bool(key_aliases):
            raise ValueError("delete_keys takes tokens or key_aliases")
        if tokens:
            for token in tokens:
                _require_hash(token)
            body = {"keys": list(tokens)}
        else:
            body = {"key_aliases": list(key_aliases or [])}
        try:
            answer = self.request("POST", "/key/delete", body=body)
        except LiteLLMError as exc:
            if exc.status == 404:
                return []
            raise
        deleted = answer.get("deleted_keys") if isinstance(answer, dict) else None
        return deleted if isinstance(deleted, list) else []


def client_from_params(params: dict) -> LiteLLMClient:
    """The client a module's CONNECTION_SPEC options describe."""
    return LiteLLMClient(**{name: params[name] for name in CONNECTION_SPEC})


def is_managed(key: dict, marker: str = MANAGED_MARKER) -> bool:
    metadata = key.get("metadata")
    return isinstance(metadata, dict) and metadata.get(marker) is True


def _require_hash(token: object) -> None:
    """Refuse anything but a sha256 hex digest where the API is given a key (never a raw key)."""
    if not is_hash(token):
        raise ValueError("expected a key's sha256 hash (64 hex digits), never a raw key")


def _read_error_body(exc: HTTPError) -> bytes | None:
    try:
        return exc.read()
    except Exception:  # a body that cannot be read leaves the status to speak
        return None

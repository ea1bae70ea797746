"""An in-process LiteLLM admin API that stands in for `open_url`: keeps keys, records every request.

It answers as docs/litellm-contract.md says LiteLLM 1.109.1 does, traps included: keys stored by
sha256 only, unique aliases (400), a duplicate custom key answered 200 with nothing stored, patch
semantics on update with metadata replaced, `budget_duration` restarting the budget window and `duration`
moving `expires` whenever they are sent, deleted keys answering /key/info with status deleted, 404 for
unknown keys, FastAPI's 422 for negative rpm/tpm limits and page sizes over 100.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl, urlsplit

MASTER_KEY = "sk-master-0123456789abcdef"
API_URL = "http://litellm.test:12434"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 30 * 86400}
_WORDS = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
PAGE_DEFAULT = 10


def sha256(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def seconds(duration: str) -> int | None:
    match = re.match(r"^(\d+)(mo|s|m|h|d|w)$", _WORDS.get(duration.strip().lower(), duration))
    if not match or int(match.group(1)) <= 0:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def envelope(message: str, err_type: str, param: str | None, code: int) -> dict:
    return {"error": {"message": message, "type": err_type, "param": param, "code": str(code)}}


class Answer(Exception):
    def __init__(self, status: int, body: object) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass
class Request:
    method: str
    path: str
    query: dict
    body: dict | None
    url: str
    headers: dict

    @property
    def target(self) -> str:
        return self.url.split(API_URL, 1)[-1]


@dataclass
class Fault:
    method: str
    path: str
    times: int
    status: int | None = None
    body: object = None
    exception: BaseException | None = None
    after_processing: bool = False  # the request reaches the proxy, the answer is lost


class Response:
    def __init__(self, status: int, payload: bytes) -> None:
        self.status = status
        self._payload = payload

    def read(self) -> bytes:
        return self._payload

    def getcode(self) -> int:
        return self.status


@dataclass
class FakeLiteLLM:
    master_key: str = MASTER_KEY
    keys: dict = field(default_factory=dict)  # token -> stored row (no raw key anywhere)
    deleted: dict = field(default_factory=dict)  # token -> archived row
    requests: list = field(default_factory=list)
    faults: list = field(default_factory=list)
    budget_window_restarts: dict = field(default_factory=dict)  # token -> times budget_reset_at was recomputed
    expiry_moves: dict = field(default_factory=dict)  # token -> times expires was recomputed
    raw_keys: set = field(default_factory=set)  # every raw key the fake has seen or generated
    spend_logs: dict = field(default_factory=dict)  # token -> spend log rows, newest first
    disable_custom_api_keys: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._clock = 0

    # --- what tests use -------------------------------------------------------------------------------

    def fail(self, method, path, status=None, times=1, body=None, exception=None, after_processing=False):
        """Answer the next `times` requests to `method path` with `status`, or raise `exception` (after the
        proxy handled the request, when `after_processing`)."""
        self.faults.append(Fault(method, path, times, status, body, exception, after_processing))

    def add_key(self, raw_key: str | None = None, **fields) -> str:
        """Store a key directly (as if an earlier run or the admin UI had made it); its raw key."""
        raw_key = raw_key or "sk-" + secrets.token_urlsafe(16)
        self.raw_keys.add(raw_key)
        self._store(raw_key, fields)
        return raw_key

    def log_request(self, raw_key: str, **row) -> None:
        """A request made with `raw_key`: a spend log row, and the key's running spend."""
        token = sha256(raw_key)
        self.spend_logs.setdefault(token, []).insert(0, {"api_key": token, **row})
        self.keys[token]["spend"] = self.keys[token].get("spend", 0.0) + row.get("spend", 0.0)

    def row(self, alias: str) -> dict:
        rows = [row for row in self.keys.values() if row.get("key_alias") == alias]
        assert len(rows) == 1, f"{len(rows)} keys with alias {alias!r}"
        return rows[0]

    def mutations(self) -> list[Request]:
        return [request for request in self.requests if request.method != "GET"]

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        return [r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)]

    def wipe(self) -> None:
        """The unit's PostgreSQL volume is lost."""
        self.keys.clear()
        self.deleted.clear()

    # --- open_url -------------------------------------------------------------------------------------

    def __call__(self, url, data=None, headers=None, method=None, **kwargs):
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = json.loads(data) if data else None
        request = Request(method or "GET", parts.path, query, body, url, dict(headers or {}))
        with self._lock:
            self.requests.append(request)
            fault = self._fault(request)
            if fault is not None:
                if fault.exception is not None:
                    if fault.after_processing:
                        with contextlib.suppress(Answer):
                            self._route(request)
                    raise fault.exception
                self._raise(url, fault.status, fault.body if fault.body is not None else self._default_body(fault))
            try:
                status, payload = self._route(request)
            except Answer as answer:
                self._raise(url, answer.status, answer.body)
        return Response(status, json.dumps(payload).encode())

    def _fault(self, request: Request) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == request.method and fault.path == request.path:
                fault.times -= 1
                return fault
        return None

    @staticmethod
    def _default_body(fault: Fault) -> object:
        kinds = {
            400: "bad_request_error",
            401: "auth_error",
            403: "forbidden",
            404: "not_found_error",
            422: "unprocessable_entity",
            429: "throttling_error",
            500: "internal_server_error",
            503: "service_unavailable",
        }
        return envelope(f"injected {fault.status}", kinds.get(fault.status, "error"), None, fault.status)

    @staticmethod
    def _raise(url: str, status: int, body: object) -> None:
        raise HTTPError(url, status, "error", Message(), io.BytesIO(json.dumps(body).encode()))

    # --- the API --------------------------------------------------------------------------------------

    def _route(self, request: Request) -> tuple[int, object]:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer ") :] != self.master_key:
            raise Answer(401, envelope("Authentication Error, Invalid API key provided.", "auth_error", "key", 401))
        routes = {
            ("GET", "/key/info"): self._info,
            ("GET", "/key/list"): self._list,
            ("POST", "/key/generate"): self._generate,
            ("POST", "/key/update"): self._update,
            ("POST", "/key/delete"): self._delete,
            ("GET", "/spend/logs"): self._spend_logs,
        }
        handler = routes.get((request.method, request.path))
        if handler is None:
            raise Answer(404, {"detail": "Not Found"})
        return 200, handler(request)

    def _status(self, row: dict) -> str:
        if row.get("blocked"):
            return "revoked"
        expires = row.get("expires")
        if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
            return "expired"
        return "active"

    def _info(self, request: Request) -> dict:
        key = request.query.get("key", "")
        token = sha256(key) if key.startswith("sk-") else key
        if token in self.keys:
            info = {k: v for k, v in self.keys[token].items() if k != "token"}
            return {"key": key, "info": {**info, "status": self._status(self.keys[token])}}
        if token in self.deleted:
            info = {k: v for k, v in self.deleted[token].items() if k != "token"}
            return {"key": key, "info": {**info, "status": "deleted"}}
        raise Answer(404, envelope("Key not found in database", "not_found_error", "key", 404))

    def _list(self, request: Request) -> dict:
        query = request.query
        page = int(query.get("page", 1))
        size = int(query.get("size", PAGE_DEFAULT))
        if not 1 <= size <= 100:
            raise Answer(422, {"detail": [{"loc": ["query", "size"], "msg": "Input should be <= 100", "type": "x"}]})
        rows = sorted(self.keys.values(), key=lambda row: row["_order"], reverse=True)
        filters = (("key_alias", "key_alias"), ("key_hash", "token"), ("user_id", "user_id"), ("team_id", "team_id"))
        for name, column in filters:
            if query.get(name) is not None:
                rows = [row for row in rows if row.get(column) == query[name]]
        chunk = rows[(page - 1) * size : page * size]
        full = query.get("return_full_object") == "true"
        return {
            "keys": [self._public(row) for row in chunk] if full else [row["token"] for row in chunk],
            "total_count": len(rows),
            "current_page": page,
            "total_pages": -(-len(rows) // size),
        }

    def _spend_logs(self, request: Request) -> list:
        key = request.query.get("api_key")
        if key is None:
            return [row for rows in self.spend_logs.values() for row in rows]
        return self.spend_logs.get(sha256(key) if key.startswith("sk-") else key, [])

    @staticmethod
    def _public(row: dict) -> dict:
        return {k: v for k, v in row.items() if not k.startswith("_")}

    @staticmethod
    def _limits(body: dict) -> None:
        for name in ("rpm_limit", "tpm_limit"):
            if body.get(name) is not None and body[name] < 0:
                raise Answer(
                    422,
                    {"detail": [{"loc": ["body", name], "msg": "Input should be >= 0", "type": "greater_than_equal"}]},
                )

    @staticmethod
    def _budgets(body: dict) -> None:
        for name in ("max_budget", "soft_budget"):
            if body.get(name) is not None and body[name] < 0:
                raise Answer(400, {"error": f"{name} must be a non-negative finite number. Received: {body[name]}"})
        duration = body.get("budget_duration")
        if duration is not None and seconds(duration) is None:
            message = f"Invalid budget_duration '{duration}'. Use a format like '1h', '24h', '7d', or '30d'."
            raise Answer(400, {"error": message})

    def _alias_free(self, alias: str | None, except_token: str | None = None) -> None:
        if alias is None:
            return
        for row in self.keys.values():
            if row.get("key_alias") == alias and row["token"] != except_token:
                message = f"Key with alias '{alias}' already exists. Unique key aliases across all keys are required."
                raise Answer(400, envelope(message, "bad_request_error", "key_alias", 400))

    def _generate(self, request: Request) -> dict:
        body = dict(request.body or {})
        self._limits(body)
        self._budgets(body)
        self._alias_free(body.get("key_alias"))
        raw_key = body.get("key")
        if raw_key is not None:
            self.raw_keys.add(raw_key)
            if self.disable_custom_api_keys:
                message = "Custom API key values are disabled by your administrator. Keys must be auto-generated."
                raise Answer(403, {"error": message})
            if not raw_key.startswith("sk-") or len(raw_key) < 16:
                raise Answer(400, {"error": "Invalid key format. LiteLLM Virtual Key must start with 'sk-'."})
            if sha256(raw_key) in self.keys:
                # The trap: 200, an answer built from the request, nothing stored.
                return {**body, "key": raw_key, "token": sha256(raw_key), "key_name": "sk-..." + raw_key[-4:]}
        else:
            raw_key = "sk-" + secrets.token_urlsafe(16)
            self.raw_keys.add(raw_key)
        row = self._store(raw_key, {k: v for k, v in body.items() if k != "key"})
        answer = {**self._public(row), "key": raw_key, "token_id": row["token"]}
        if body.get("soft_budget") is not None:
            answer["soft_budget"] = body["soft_budget"]
        if body.get("duration") is not None:
            answer["duration"] = body["duration"]
        return answer

    def _store(self, raw_key: str, fields: dict) -> dict:
        token = sha256(raw_key)
        self._clock += 1
        row = {
            "token": token,
            "key_name": "sk-..." + raw_key[-4:],
            "key_alias": None,
            "spend": 0.0,
            "max_budget": None,
            "expires": None,
            "models": [],
            "user_id": None,
            "team_id": None,
            "max_parallel_requests": None,
            "metadata": {},
            "tpm_limit": None,
            "rpm_limit": None,
            "budget_duration": None,
            "budget_reset_at": None,
            "blocked": None,
            "litellm_budget_table": None,
            "_order": self._clock,
        }
        for name, value in fields.items():
            self._set(row, name, value)
        self.keys[token] = row
        return row

    def _set(self, row: dict, name: str, value: object) -> None:
        token = row["token"]
        if name == "duration":
            expires = None if value is None else datetime.now(UTC) + timedelta(seconds=seconds(value))
            row["expires"] = expires and expires.isoformat()
            self.expiry_moves[token] = self.expiry_moves.get(token, 0) + 1
        elif name == "budget_duration":
            row["budget_duration"] = value
            row["budget_reset_at"] = (
                None if value is None else (datetime.now(UTC) + timedelta(seconds=seconds(value))).isoformat()
            )
            self.budget_window_restarts[token] = self.budget_window_restarts.get(token, 0) + 1
        elif name == "soft_budget":
            row["litellm_budget_table"] = {**(row["litellm_budget_table"] or {}), "soft_budget": value}
        elif name == "metadata":
            row["metadata"] = dict(value or {})
        else:
            row[name] = value

    def _update(self, request: Request) -> dict:
        body = dict(request.body or {})
        self._limits(body)
        if body.get("key") is None and body.get("key_alias") is None:
            raise Answer(422, {"detail": [{"loc": ["body"], "msg": "either key or key_alias must be provided"}]})
        self._budgets(body)
        if body.get("key") is not None:
            key = body.pop("key")
            token = sha256(key) if key.startswith("sk-") else key
            row = self.keys.get(token)
            if row is None:
                raise Answer(404, envelope("Key not found.", "not_found_error", "key", 404))
        else:
            rows = [row for row in self.keys.values() if row.get("key_alias") == body["key_alias"]]
            if not rows:
                raise Answer(404, envelope("Key not found.", "not_found_error", "key_alias", 404))
            row, key = rows[0], rows[0]["token"]
        self._alias_free(body.get("key_alias"), except_token=row["token"])
        for name, value in body.items():
            self._set(row, name, value)
        return {"key": key, **self._public(row)}

    def _delete(self, request: Request) -> dict:
        body = request.body or {}
        if body.get("keys"):
            tokens = [sha256(key) if key.startswith("sk-") else key for key in body["keys"]]
            found = [token for token in tokens if token in self.keys]
            done = body["keys"]
        elif body.get("key_aliases"):
            found = [token for token, row in self.keys.items() if row.get("key_alias") in body["key_aliases"]]
            done = body["key_aliases"]
        else:
            raise Answer(400, envelope("Invalid request type", "bad_request_error", None, 400))
        if not found:
            raise Answer(404, {"error": "No keys found"})
        for token in found:
            self.deleted[token] = self.keys.pop(token)
        return {"deleted_keys": done}


def refused() -> URLError:
    return URLError(ConnectionRefusedError(111, "Connection refused"))


def timed_out() -> URLError:
    return URLError(TimeoutError("timed out"))

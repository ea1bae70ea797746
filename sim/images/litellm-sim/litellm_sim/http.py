"""The HTTP server: routes, endpoints, completions relayed to the backend with their spend, and draining on SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import re
import socket
import threading
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .common import VERSION, log, utcnow
from .config import Deployment
from .db import DatabaseDown
from .errors import ApiError
from .keys import NOT_PREMIUM, KeyManagement
from .limits import Reservation, estimate_tokens
from .proxy import Caller, Proxy, backend_failure, model_allowed
from .router import Failure, Worker
from .validation import Invalid, read_json_body

MODEL_CREATED = 1677610602
# What the real proxy tells a client whose stream's backend broke off, however it did.
BROKEN_STREAM = "litellm.APIConnectionError: APIConnectionError: OpenAIException - Connection error."
# uvicorn's keep-alive timeout.
IDLE_TIMEOUT = 5


def dumps(value: Any) -> str:
    """JSON as the real proxy writes it: no spaces."""
    return json.dumps(value, separators=(",", ":"))


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
        # The worker process this connection reached, with its own router.
        self.worker: Worker = self.proxy.router.worker()

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
            | self.proxy.token_limits(group[0])
            for name, group in self.proxy.settings.groups.items()
            if model_allowed(name, allowed)
        ]
        self.send_json(200, {"data": data, "object": "list"})

    def get_health(self) -> None:
        """With background health checks, their last results ({} before the first cycle ends); otherwise every
        deployment is probed now."""
        self.caller("/health")
        if self.proxy.router.checks_in_background:
            self.send_json(200, self.worker.health_results)
            return
        self.send_json(200, self.proxy.router.health_check(self.proxy.probe)[0])

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
        if not isinstance(model_name, str) or model_name not in self.proxy.settings.groups:
            raise ApiError(
                400,
                f"/{kind}: Invalid model name passed in model={model_name}. "
                "Call `/v1/models` to view available models for your key.",
                "invalid_request_error",
            )
        payload = dict(body)
        stream = bool(body.get("stream"))
        options = body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage") is True
        if stream:
            # Spend needs the usage, which a stream carries only when asked for it.
            payload["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        call_id = str(uuid.uuid4())
        started = utcnow()

        def attempt(deployment: Deployment) -> tuple[Any, Any]:
            """One deployment's answer, or a stream with its first event read: what fails before the first chunk
            is retried, as the real router reads the first chunk before it answers."""
            try:
                upstream = self.proxy.backend(deployment, "/" + kind, {**payload, "model": deployment.model})
            except (urllib.error.URLError, OSError) as exc:
                raise backend_failure(exc, deployment.model_name) from exc
            try:
                if stream:
                    events = read_events(upstream)
                    return upstream, itertools.chain([next(events)], events)
                with upstream:
                    return None, json.loads(upstream.read())
            except (OSError, ValueError, StopIteration) as exc:
                upstream.close()
                raise backend_failure(exc, deployment.model_name) from exc

        deployment, (upstream, answer), routing = self.worker.route(model_name, attempt)
        try:
            end_user = body.get("user") if isinstance(body.get("user"), str) else None
            spend = SpendRecord(
                self.proxy, caller, deployment, kind, call_id, started, self.client_address[0], end_user, reservation
            )
            headers = {"x-litellm-call-id": call_id, **routing, "x-litellm-version": VERSION}
            if stream:
                with upstream:
                    self.relay_stream(answer, spend, headers, wants_usage)
            else:
                # The real proxy answers with the model name the client called, not the backend's.
                answer["model"] = deployment.model_name
                cost = spend.finish(answer.get("id"), answer.get("usage"))
                self.send_json(200, answer, {**headers, "x-litellm-response-cost": repr(cost)})
        finally:
            self.worker.release(deployment)

    def relay_stream(
        self, events: Iterator[bytes], spend: SpendRecord, headers: dict[str, str], wants_usage: bool
    ) -> None:
        """Pass the backend's events on as they arrive, under the model name the client called. The
        usage chunk, which the proxy asks for to price the request, reaches only clients that asked. A backend
        that breaks off is reported in the stream (an error event, then [DONE]), never retried: the client has
        its first chunks."""
        self.send_response(200)
        stream_headers = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        for name, value in {**headers, **stream_headers, "transfer-encoding": "chunked"}.items():
            self.send_header(name, value)
        self.end_headers()
        response_id, usage, first_token, done = None, None, utcnow(), False
        try:
            while True:
                try:
                    event = next(events, None)
                except (OSError, http.client.HTTPException) as exc:
                    self.stream_failed(spend, exc)
                    return
                if event is None:
                    if not done:
                        # A backend that dies mid-stream may close its connection cleanly, never sending [DONE].
                        self.stream_failed(spend, ConnectionError("closed before [DONE]"))
                        return
                    break
                data = event.strip().removeprefix(b"data:").strip()
                done = data == b"[DONE]"
                if data.startswith(b"{"):
                    chunk = json.loads(data)
                    response_id = response_id or chunk.get("id")
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                        if not wants_usage and not chunk.get("choices"):
                            continue
                    chunk["model"] = spend.deployment.model_name
                    event = b"data: " + dumps(chunk).encode() + b"\n\n"
                self.send_chunk(event)
        except (OSError, ValueError) as exc:
            # The client left: without the final usage there is nothing to price.
            log.warning("stream %s ended early: %s", spend.call_id, exc)
            self.close_connection = True
            return
        # Record before the terminating chunk, so a client that saw the stream end finds the row.
        spend.finish(response_id, usage, first_token)
        self.wfile.write(b"0\r\n\r\n")

    def send_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def stream_failed(self, spend: SpendRecord, exc: Exception) -> None:
        """The backend broke off mid-stream: counted against the deployment, though it never cools it (the real
        router sees an APIConnectionError), and told to the client in the stream."""
        log.warning("stream %s: the backend broke off: %s", spend.call_id, exc)
        error = ApiError(500, BROKEN_STREAM, "internal_server_error")
        self.worker.failed(spend.deployment, Failure(error, cools=False))
        with contextlib.suppress(OSError):
            self.send_chunk(b"data: " + dumps(error.body).encode() + b"\n\n")
            self.send_chunk(b"data: [DONE]\n\n")
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

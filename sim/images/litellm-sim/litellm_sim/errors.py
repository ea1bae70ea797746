"""The errors the proxy answers: LiteLLM's envelope, or FastAPI's own {"detail": ...}."""

from __future__ import annotations

from typing import Any


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

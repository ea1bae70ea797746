"""Per-key rpm, tpm and parallel-request limits, counted in memory as LiteLLM's parallel_request_limiter_v3 does."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import ApiError

if TYPE_CHECKING:
    from .proxy import Caller

# LiteLLM's constants (litellm/constants.py, 1.109.1).
RATE_LIMIT_WINDOW = int(os.environ.get("LITELLM_RATE_LIMIT_WINDOW_SIZE", "60"))
DEFAULT_MAX_TOKENS_ESTIMATE = 4096
NO_MAX_TOKENS_TPM_RESERVATION_FRACTION = 0.25
CHARS_PER_TOKEN = 4


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

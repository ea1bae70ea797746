"""The real proxy's Router (LiteLLM 1.109.1, simple-shuffle) as far as a fleet gateway relies on it: several
deployments under one model name, picked at random by weight; retries; cooldowns; each deployment's cap on requests
in flight; background health checks and health-check routing.

Read from its code (router_python_core.py, router_utils/cooldown_handlers.py, router_strategy/simple_shuffle.py,
router_utils/client_initalization_utils.py, proxy/proxy_server.py's health loop) and checked side by side against the
real proxy by tests/contract/test_litellm_router_real.py. Each worker process of the real proxy has a router of its
own, learning cooldowns and health on its own: so has each `Worker` here, one per --num_workers, and a client
connection is served by one of them at random, as the kernel hands connections to uvicorn's workers.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .common import log
from .config import Deployment, RouterSettings
from .errors import ApiError

T = TypeVar("T")

# litellm.should_retry: these statuses and every 5xx.
RETRIED = frozenset({408, 409, 429})
# _should_run_cooldown_logic: of the 4xx, only these may cool a deployment.
COOLING_4XX = frozenset({401, 402, 404, 408, 429})
# The v2 cooldown's failure rate over a fixed window that opens at a deployment's first failure (or success).
WINDOW = 60.0
FAILURE_RATE = 0.5
MINIMUM_REQUESTS = 5
ALL_FAILED_REQUESTS = 1000
# calculate_retry_after: INITIAL_RETRY_DELAY, MAX_RETRY_DELAY, JITTER.
BACKOFF = 0.5
BACKOFF_MAX = 8.0
JITTER = 0.75
# A health check result older than this no longer steers routing (DEFAULT_HEALTH_CHECK_INTERVAL * 2).
HEALTH_STALE = 600.0
HEALTH_PROMPTS = ("Hey how's it going?", "What's 1 + 1?")
HEALTH_MAX_TOKENS = 16


@dataclass
class Failure(Exception):
    """One attempt on a deployment that failed: the error the client would get, the backend's Retry-After, and
    whether it may cool the deployment (an error while reading a stream, an APIConnectionError, never does)."""

    error: ApiError
    retry_after: float | None = None
    cools: bool = True


def deployment_headers(deployment: Deployment) -> dict[str, str]:
    return {
        "x-litellm-model-id": deployment.model_id,
        "x-litellm-model-api-base": deployment.api_base,
        "x-litellm-model-group": deployment.model_name,
    }


@dataclass
class Counter:
    """A count with a fixed lifetime that opens at its first increment (InMemoryCache keeps a live key's TTL)."""

    ttl: float
    expires: float = 0.0
    count: int = 0

    def add(self, now: float) -> int:
        if now >= self.expires:
            self.expires, self.count = now + self.ttl, 0
        self.count += 1
        return self.count

    def value(self, now: float) -> int:
        return self.count if now < self.expires else 0


@dataclass
class Worker:
    """One worker process's router state."""

    settings: RouterSettings
    groups: dict[str, list[Deployment]]
    rng: random.Random
    clock: Callable[[], float] = time.monotonic
    lock: threading.Lock = field(default_factory=threading.Lock)
    cooling: dict[str, tuple[float, float]] = field(default_factory=dict)  # id -> (until, cooldown time)
    fails: dict[str, Counter] = field(default_factory=dict)
    successes: dict[str, Counter] = field(default_factory=dict)
    allowed_fails: dict[str, Counter] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    health: dict[str, tuple[float, bool]] = field(default_factory=dict)  # id -> (when, healthy)
    health_results: dict[str, Any] = field(default_factory=dict)  # what /health answers with background checks

    # candidates

    def cooling_ids(self, now: float) -> list[str]:
        return [model_id for model_id, (until, _time) in self.cooling.items() if until > now]

    def candidates(self, group: list[Deployment], skipped: set[str]) -> list[Deployment]:
        """_core_async_get_healthy_deployments: the health filter (all of them when none is healthy), then cooldown,
        then the ids a retry skips (unless that would leave none)."""
        now = self.clock()
        found = group
        if self.settings.health_check_routing:
            healthy = [d for d in found if self.health.get(d.model_id, (0.0, True))[1] or self.stale(d, now)]
            found = healthy or found
        cooling = set(self.cooling_ids(now))
        found = [d for d in found if d.model_id not in cooling]
        kept = [d for d in found if d.model_id not in skipped]
        return kept or found

    def stale(self, deployment: Deployment, now: float) -> bool:
        return now - self.health.get(deployment.model_id, (now, True))[0] > HEALTH_STALE

    def pick(self, candidates: list[Deployment]) -> Deployment:
        """simple_shuffle: by the first of weight, rpm, tpm that any candidate sets, else uniformly."""
        for name in ("weight", "rpm", "tpm"):
            weights = [getattr(d, name) or 0 for d in candidates]
            if max(weights) > 0:
                return self.rng.choices(candidates, weights=weights)[0]
        return self.rng.choice(candidates)

    def no_deployment(self, model_name: str, group: list[Deployment]) -> ApiError:
        """RouterRateLimitError: 429, retry-after the group's shortest cooldown time; the list names every deployment
        cooling on this worker, of any model."""
        now = self.clock()
        cooling = self.cooling_ids(now)
        times = [self.cooling[d.model_id][1] for d in group if d.model_id in cooling]
        cooldown = min(times) if times else self.settings.cooldown_time
        every = {d.model_id for d in group} <= set(cooling)
        reason = " All deployments for selected model are in cooldown." if every else ""
        message = (
            f"No deployments available for selected model, Try again in {cooldown} seconds.{reason} "
            f"Passed model={model_name}. pre-call-checks=False, cooldown_list={cooling}"
        )
        err_type = "all_deployments_in_cooldown" if every else "rate_limit_error"
        return ApiError(429, message, err_type, headers={"retry-after": str(math.ceil(cooldown))})

    # slots

    def acquire(self, deployment: Deployment) -> None:
        """MaxParallelRequestsLimit: a full deployment refuses at once (429), it never queues."""
        limit = deployment.parallel_limit
        with self.lock:
            if limit is not None and self.in_flight.get(deployment.model_id, 0) >= limit:
                raise Failure(
                    ApiError(
                        429,
                        "litellm.RateLimitError: Deployment has all max_parallel_requests slots in use. Deployment "
                        f"model_group={deployment.model_name}, id={deployment.model_id} already has "
                        f"max_parallel_requests={limit} requests in flight. Raise max_parallel_requests (or the "
                        "rpm/tpm it is derived from) for this deployment",
                        "throttling_error",
                    ),
                    cools=False,
                )
            self.in_flight[deployment.model_id] = self.in_flight.get(deployment.model_id, 0) + 1

    def release(self, deployment: Deployment) -> None:
        with self.lock:
            self.in_flight[deployment.model_id] -= 1

    # outcomes

    def succeeded(self, deployment: Deployment) -> None:
        with self.lock:
            self.successes.setdefault(deployment.model_id, Counter(WINDOW)).add(self.clock())

    def failed(self, deployment: Deployment, failure: Failure) -> None:
        """deployment_callback_on_failure, run before the retry picks again."""
        status = failure.error.status
        if not failure.cools or (400 <= status < 500 and status not in COOLING_4XX):
            with self.lock:
                self.fails.setdefault(deployment.model_id, Counter(WINDOW)).add(self.clock())
            return
        with self.lock:
            now = self.clock()
            fails = self.fails.setdefault(deployment.model_id, Counter(WINDOW)).add(now)
            group = self.groups[deployment.model_name]
            if not self.should_cool(deployment, len(group), status, fails, now):
                return
            if deployment.cooldown_time is not None and deployment.cooldown_time >= 0:
                cooldown = deployment.cooldown_time
            elif failure.retry_after is not None and failure.retry_after >= 0:
                cooldown = failure.retry_after
            else:
                cooldown = self.settings.cooldown_time
            self.cooling[deployment.model_id] = (now + cooldown, cooldown)
            log.info("deployment %s of %s cools down for %s s", deployment.model_id, deployment.model_name, cooldown)

    def should_cool(self, deployment: Deployment, group_size: int, status: int, fails: int, now: float) -> bool:
        """_should_cooldown_deployment: v1 (allowed_fails set) counts failures within a cooldown time; v2 (the
        default) cools on a 429, on a failure rate, or on a status that is never retried."""
        if self.settings.allowed_fails is not None:
            if group_size == 1:
                return False
            counter = self.allowed_fails.setdefault(deployment.model_id, Counter(self.settings.cooldown_time))
            return counter.add(now) > self.settings.allowed_fails
        total = fails + self.successes.setdefault(deployment.model_id, Counter(WINDOW)).value(now)
        rate = fails / total
        if status == 429 and group_size > 1:
            return True
        if rate == 1.0 and total >= ALL_FAILED_REQUESTS:
            return True
        if rate > FAILURE_RATE and total >= MINIMUM_REQUESTS and group_size > 1:
            return True
        return not (status in RETRIED or status >= 500)

    # the retry loop

    def backoff(self, group_size: int, healthy: int, failure: Failure, retried: int) -> float:
        """_time_to_sleep_before_retry: none while another deployment of a larger group is healthy."""
        if group_size > 1 and healthy > 0:
            return 0.0
        jitter = JITTER * self.rng.random()
        if failure.retry_after is not None and 0 < failure.retry_after <= 60:
            return failure.retry_after + jitter
        return min(max(BACKOFF * 2**retried, self.settings.retry_after), BACKOFF_MAX) + jitter

    def route(self, model_name: str, attempt: Callable[[Deployment], T]) -> tuple[Deployment, T, dict[str, str]]:
        """Run `attempt` on a deployment of `model_name`, retrying as the real router does. Returns the deployment
        (its slot held: release() it when the answer has been sent), attempt's result and the routing headers; raises
        the last attempt's error, with the last deployment's id in its headers."""
        group = self.groups[model_name]
        skipped: set[str] = set()
        retries = self.settings.num_retries
        retried = 0
        while True:
            candidates = self.candidates(group, skipped)
            if not candidates:
                raise self.no_deployment(model_name, group)
            deployment = self.pick(candidates)
            try:
                self.acquire(deployment)
                try:
                    result = attempt(deployment)
                except Failure:
                    self.release(deployment)
                    raise
            except Failure as failure:
                self.failed(deployment, failure)
                status = failure.error.status
                retryable = status in RETRIED or status >= 500 or (status in (401, 403) and len(group) > 1)
                if status in (401, 403):
                    skipped.add(deployment.model_id)
                healthy = len(self.candidates(group, set()))
                failure.error.headers.update(deployment_headers(deployment))
                if retries == 0 or not retryable or not healthy:
                    raise failure.error from None
                time.sleep(self.backoff(len(group), healthy, failure, retried))
                if retried == retries:
                    raise failure.error from None
                retried += 1
                continue
            self.succeeded(deployment)
            headers = deployment_headers(deployment) | {"x-litellm-attempted-retries": str(retried)}
            if retried:
                headers["x-litellm-max-retries"] = str(retries)
            return deployment, result, headers

    # health

    def record_health(self, results: dict[str, Any], outcomes: list[tuple[Deployment, Failure | None]]) -> None:
        now = self.clock()
        self.health_results = results
        for deployment, failure in outcomes:
            if self.settings.health_check_routing:
                self.health[deployment.model_id] = (now, failure is None)
                if failure is not None:
                    self.failed(deployment, failure)


class Router:
    """Every worker's router, and their background health checks."""

    def __init__(self, settings: RouterSettings, groups: dict[str, list[Deployment]], workers: int) -> None:
        self.settings = settings
        self.groups = groups
        self.rng = random.Random()
        self.workers = [Worker(settings, groups, random.Random()) for _ in range(max(workers, 1))]

    @property
    def checks_in_background(self) -> bool:
        return self.settings.background_health_checks

    def worker(self) -> Worker:
        return self.rng.choice(self.workers)

    def start_health_checks(self, probe: Callable[[Deployment], Failure | None]) -> None:
        """The proxy's background loop, in each worker: a cycle at once, then one every health_check_interval seconds.
        An interval that is no whole number stops the real loop before its first cycle, without a word."""
        if not self.settings.background_health_checks or not isinstance(self.settings.health_check_interval, int):
            return
        for worker in self.workers:
            threading.Thread(target=self._health_loop, args=(worker, probe), daemon=True).start()

    def health_check(self, probe: Callable[[Deployment], Failure | None]) -> tuple[dict[str, Any], list]:
        """One cycle: every deployment probed; /health's answer and each deployment's outcome."""
        outcomes = [(deployment, probe(deployment)) for group in self.groups.values() for deployment in group]
        healthy = [health_entry(deployment) for deployment, failure in outcomes if failure is None]
        unhealthy = [
            health_entry(deployment)
            | {"error": failure.error.body["error"]["message"], "exception_status": failure.error.status}
            for deployment, failure in outcomes
            if failure is not None
        ]
        results = {
            "healthy_endpoints": healthy,
            "unhealthy_endpoints": unhealthy,
            "healthy_count": len(healthy),
            "unhealthy_count": len(unhealthy),
        }
        return results, outcomes

    def _health_loop(self, worker: Worker, probe: Callable[[Deployment], Failure | None]) -> None:
        while True:
            worker.record_health(*self.health_check(probe))
            time.sleep(self.settings.health_check_interval)


def health_entry(deployment: Deployment) -> dict[str, Any]:
    """An endpoint as /health lists it: rpm and tpm only where the deployment sets them."""
    entry: dict[str, Any] = {"api_base": deployment.api_base, "model": f"openai/{deployment.model}"}
    entry |= {name: getattr(deployment, name) for name in ("rpm", "tpm") if getattr(deployment, name) is not None}
    return entry | {"model_id": deployment.model_id}

"""litellm-sim's router on its own, over attempts that succeed or fail as told and a clock the test moves: what the
real router's code does (see litellm_sim/router.py) where the side-by-side contract test
(tests/contract/test_litellm_router_real.py) cannot make it happen on demand."""

from __future__ import annotations

import random

import pytest
from litellm_sim.config import Deployment, RouterSettings
from litellm_sim.errors import ApiError
from litellm_sim.router import Failure, Router, Worker


def deployment(model_id: str, group: str = "g", **extra) -> Deployment:
    return Deployment(group, model_id, "m", f"http://{model_id}:8000/v1", None, 0.0, 0.0, **extra)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def worker(*deployments: Deployment, **settings) -> tuple[Worker, Clock]:
    groups: dict[str, list[Deployment]] = {}
    for d in deployments:
        groups.setdefault(d.model_name, []).append(d)
    clock = Clock()
    return Worker(RouterSettings(**settings), groups, random.Random(7), clock), clock


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr("litellm_sim.router.time.sleep", slept.append)
    return slept


def fails(status: int, *dead: str, retry_after: float | None = None):
    """An attempt that fails with `status` on the `dead` deployments and answers "ok" on the others."""

    def attempt(d: Deployment) -> str:
        if d.model_id in dead:
            raise Failure(ApiError(status, f"failed {status}", "internal_server_error"), retry_after)
        return "ok"

    return attempt


def test_a_failure_is_retried_at_once_on_another_deployment_and_allowed_fails_0_cools_it(no_sleep):
    w, _clock = worker(deployment("a"), deployment("b"), allowed_fails=0)
    served = [w.route("g", fails(500, "a")) for _ in range(20)]
    assert {d.model_id for d, _result, _headers in served} == {"b"}
    retried = [headers for _d, _r, headers in served if headers["x-litellm-attempted-retries"] != "0"]
    # The first failure cooled "a": at most one request met it.
    assert len(retried) <= 1 and all(h["x-litellm-max-retries"] == "2" for h in retried)
    assert no_sleep == [0.0] * len(retried)
    assert w.cooling_ids(_clock()) == (["a"] if retried else [])


def test_without_allowed_fails_a_deployment_cools_at_more_than_half_failed_of_five():
    w, clock = worker(deployment("a"), deployment("b"))
    a = w.groups["g"][0]
    for _ in range(3):
        w.succeeded(a)
    for count in range(4):
        w.failed(a, Failure(ApiError(500, "x", "internal_server_error")))
        # 3 successes and 1, 2, 3 failures: not more than half; 4 of 7 is.
        assert (w.cooling_ids(clock()) == ["a"]) == (count == 3)
    clock.now += 5.0
    assert w.cooling_ids(clock()) == []
    # The fixed 60 s window is still open: the next failure cools it again at once.
    w.failed(a, Failure(ApiError(500, "x", "internal_server_error")))
    assert w.cooling_ids(clock()) == ["a"]


@pytest.mark.parametrize(
    ("status", "group", "cools"),
    [
        (429, 2, True),
        (429, 1, False),
        (404, 1, True),
        (401, 2, True),
        (400, 2, False),
        (403, 2, False),
        (500, 1, False),
    ],
)
def test_which_single_failure_cools_a_deployment(status, group, cools):
    w, clock = worker(*[deployment(i) for i in "ab"[:group]])
    w.failed(w.groups["g"][0], Failure(ApiError(status, "x", "e")))
    assert (w.cooling_ids(clock()) == ["a"]) == cools


def test_a_stream_that_broke_off_never_cools():
    w, clock = worker(deployment("a"), deployment("b"), allowed_fails=0)
    w.failed(w.groups["g"][0], Failure(ApiError(500, "x", "e"), cools=False))
    assert w.cooling_ids(clock()) == []


def test_the_cooldown_is_the_deployments_own_else_the_backends_retry_after_else_the_routers():
    w, clock = worker(deployment("a", cooldown_time=9.0), deployment("b"), deployment("c"), allowed_fails=0)
    a, b, c = w.groups["g"]
    w.failed(a, Failure(ApiError(500, "x", "e"), retry_after=2.0))
    w.failed(b, Failure(ApiError(500, "x", "e"), retry_after=2.0))
    w.failed(c, Failure(ApiError(500, "x", "e")))
    assert {i: until - clock() for i, (until, _t) in w.cooling.items()} == {"a": 9.0, "b": 2.0, "c": 5.0}


def test_with_every_deployment_cooling_the_answer_is_429_with_the_shortest_cooldown():
    others = deployment("x", "other"), deployment("y", "other")
    w, _clock = worker(deployment("a"), deployment("b"), *others, allowed_fails=0, cooldown_time=3)
    for d in [*w.groups["g"], w.groups["other"][0]]:
        w.failed(d, Failure(ApiError(500, "x", "e")))
    with pytest.raises(ApiError) as raised:
        w.route("g", fails(500))
    assert raised.value.status == 429 and raised.value.headers == {"retry-after": "3"}
    assert raised.value.body["error"] == {
        "message": "No deployments available for selected model, Try again in 3 seconds. All deployments for selected "
        "model are in cooldown. Passed model=g. pre-call-checks=False, cooldown_list=['a', 'b', 'x']",
        "type": "all_deployments_in_cooldown",
        "param": None,
        "code": "429",
    }


def test_a_lone_deployment_backs_off_after_every_attempt_and_the_last_error_is_the_answer(no_sleep):
    w, _clock = worker(deployment("a"))
    with pytest.raises(ApiError) as raised:
        w.route("g", fails(503, "a"))
    assert raised.value.status == 503 and raised.value.headers["x-litellm-model-id"] == "a"
    # 0.5, 1 and 2 s, each with up to 0.75 s of jitter: a sleep after the last attempt too.
    assert len(no_sleep) == 3
    assert all(base <= s < base + 0.75 for base, s in zip([0.5, 1.0, 2.0], no_sleep, strict=True)), no_sleep


def test_a_backends_retry_after_is_the_backoff(no_sleep):
    w, _clock = worker(deployment("a"), num_retries=1)
    with pytest.raises(ApiError):
        w.route("g", fails(429, "a", retry_after=4.0))
    assert len(no_sleep) == 2 and all(4.0 <= s < 4.75 for s in no_sleep)


def test_a_client_error_is_not_retried(no_sleep):
    w, _clock = worker(deployment("a"), deployment("b"))
    with pytest.raises(ApiError) as raised:
        w.route("g", fails(400, "a", "b"))
    assert raised.value.status == 400 and no_sleep == []


def test_a_full_deployment_refuses_at_once_and_is_not_cooled():
    # Each retry picks at random, the full deployment too: enough retries that the other is always found.
    w, clock = worker(
        deployment("a", max_parallel_requests=1), deployment("b", max_parallel_requests=1), num_retries=30
    )
    held = [w.route("g", fails(500)) for _ in range(2)]
    assert {d.model_id for d, _r, _h in held} == {"a", "b"}
    with pytest.raises(ApiError) as raised:
        w.route("g", fails(500))
    assert raised.value.status == 429 and raised.value.body["error"]["type"] == "throttling_error"
    assert "already has max_parallel_requests=1 requests in flight" in raised.value.body["error"]["message"]
    assert w.cooling_ids(clock()) == []
    w.release(held[0][0])
    assert w.route("g", fails(500))[0] == held[0][0]
    # Without max_parallel_requests, rpm caps the requests in flight, else tpm / 1000 * 6.
    assert [deployment("c", **cap).parallel_limit for cap in ({"rpm": 3}, {"tpm": 1000}, {"tpm": 10}, {})] == [
        3,
        6,
        1,
        None,
    ]


def test_weights_are_the_first_of_weight_rpm_tpm_that_any_deployment_sets():
    w, _clock = worker(deployment("a", rpm=10), deployment("b"))
    assert {w.pick(w.groups["g"]).model_id for _ in range(50)} == {"a"}
    w, _clock = worker(deployment("a"), deployment("b"))
    assert {w.pick(w.groups["g"]).model_id for _ in range(50)} == {"a", "b"}


def test_health_routing_leaves_out_unhealthy_deployments_unless_all_are():
    w, _clock = worker(deployment("a"), deployment("b"), health_check_routing=True)
    a, b = w.groups["g"]
    down = Failure(ApiError(500, "x", "e"))
    w.record_health({}, [(a, down), (b, None)])
    assert [d.model_id for d in w.candidates(w.groups["g"], set())] == ["b"]
    w.record_health({}, [(a, down), (b, down)])
    assert [d.model_id for d in w.candidates(w.groups["g"], set())] == ["a", "b"]


def test_a_failed_health_check_counts_as_a_failure():
    w, clock = worker(deployment("a"), deployment("b"), health_check_routing=True, allowed_fails=0)
    w.record_health({}, [(w.groups["g"][0], Failure(ApiError(500, "x", "e")))])
    assert w.cooling_ids(clock()) == ["a"]


def test_a_health_check_interval_that_is_no_whole_number_runs_no_check():
    router = Router(RouterSettings(background_health_checks=True, health_check_interval=2.5), {}, 2)
    probed = []
    router.start_health_checks(probed.append)
    assert probed == []
    assert len(router.workers) == 2 and router.workers[0] is not router.workers[1]

"""The same requests to the real LiteLLM proxy 1.109.1 and to litellm-sim: same statuses and shapes.

The real proxy runs without a database (its Prisma engines cannot be fetched here) and litellm-sim
with PostgreSQL, both in front of one vllm-sim. Where the database makes the answers differ, each
side's answer is pinned down. Skipped only with THORFLEET_SKIP_LITELLM_CONTRACT=1.
"""

from __future__ import annotations

import secrets

import pytest
import requests

pytest_plugins = ["conftest_litellm"]


def statuses(responses: dict[str, requests.Response]) -> dict[str, int]:
    return {name: response.status_code for name, response in responses.items()}


def bodies(responses: dict[str, requests.Response]) -> dict[str, object]:
    return {name: response.json() for name, response in responses.items()}


def error_types(responses: dict[str, requests.Response]) -> dict[str, tuple[int, str, str]]:
    return {
        name: (r.status_code, r.json()["error"]["type"], r.json()["error"]["code"]) for name, r in responses.items()
    }


def test_liveliness(ask):
    responses = ask("GET", "/health/liveliness", headers={})
    assert statuses(responses) == {"real": 200, "sim": 200}
    assert bodies(responses) == {"real": "I'm alive!", "sim": "I'm alive!"}


def test_readiness_reports_the_database(ask):
    responses = ask("GET", "/health/readiness", headers={})
    assert statuses(responses) == {"real": 200, "sim": 200}
    assert bodies(responses) == {
        "real": {"status": "healthy", "db": "Not connected"},
        "sim": {"status": "healthy", "db": "connected"},
    }


@pytest.mark.parametrize("path", ["/v1/models", "/models"])
def test_model_listing(ask, litellm_harness, path):
    responses = ask("GET", path)
    assert statuses(responses) == {"real": 200, "sim": 200}
    real, sim = bodies(responses).values()
    assert real == sim
    # The live backend's context length is listed, the dead one's is not.
    assert [(m["id"], m.get("max_input_tokens")) for m in sim["data"]] == [
        (litellm_harness.MODEL, 4096),
        (litellm_harness.DEAD_MODEL, None),
    ]


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/models"), ("GET", "/health"), ("POST", "/chat/completions")])
def test_no_key_is_401(ask, litellm_harness, method, path):
    responses = ask(method, path, headers={}, json=litellm_harness.chat_body())
    assert statuses(responses) == {"real": 401, "sim": 401}
    real, sim = bodies(responses).values()
    assert real == sim


def test_a_key_without_bearer_is_401(ask, litellm_harness):
    responses = ask("GET", "/v1/models", headers={"Authorization": litellm_harness.MASTER_KEY})
    assert statuses(responses) == {"real": 401, "sim": 401}
    real, sim = bodies(responses).values()
    assert real == sim


def test_wrong_key_depends_on_the_database(ask):
    responses = ask("GET", "/v1/models", key="sk-wrong-" + secrets.token_hex(8))
    # Without a database the real proxy cannot look a key up at all; with one the key is not found.
    assert error_types(responses) == {
        "real": (400, "no_db_connection", "400"),
        "sim": (401, "token_not_found_in_db", "401"),
    }


def test_unknown_routes_and_methods(ask):
    missing = ask("GET", "/nonexistent")
    assert statuses(missing) == {"real": 404, "sim": 404}
    assert bodies(missing)["real"] == bodies(missing)["sim"]
    wrong = ask("GET", "/v1/chat/completions")
    assert statuses(wrong) == {"real": 405, "sim": 405}
    assert {name: r.headers["allow"] for name, r in wrong.items()} == {"real": "POST", "sim": "POST"}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions"])
def test_chat_completion(ask, litellm_harness, path):
    responses = ask("POST", path, json=litellm_harness.chat_body())
    assert statuses(responses) == {"real": 200, "sim": 200}
    real, sim = (litellm_harness.completion_view(body) for body in bodies(responses).values())
    assert real == sim
    assert sim["model"] == litellm_harness.MODEL and sim["usage"]["completion_tokens"] == 5
    # Both name the deployment alike: the real router's id, rebuilt by litellm-sim.
    ids = {name: r.headers["x-litellm-model-id"] for name, r in responses.items()}
    assert ids["real"] == ids["sim"]


@pytest.mark.parametrize("path", ["/v1/completions", "/completions"])
def test_text_completion(ask, litellm_harness, path):
    responses = ask("POST", path, json={"model": litellm_harness.MODEL, "prompt": "once upon", "max_tokens": 3})
    assert statuses(responses) == {"real": 200, "sim": 200}
    real, sim = (litellm_harness.completion_view(body) for body in bodies(responses).values())
    assert real == sim


@pytest.mark.parametrize("include_usage", [True, None, False], ids=["usage", "default", "no-usage"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_streaming(ask, litellm_harness, path, include_usage):
    if "chat" in path:
        body = litellm_harness.chat_body(True, include_usage)
    else:
        body = {"model": litellm_harness.MODEL, "prompt": "once upon", "max_tokens": 3, "stream": True}
        if include_usage is not None:
            body["stream_options"] = {"include_usage": include_usage}
    responses = ask("POST", path, json=body, stream=True)
    assert statuses(responses) == {"real": 200, "sim": 200}
    views = {}
    for name, response in responses.items():
        assert response.headers["content-type"].startswith("text/event-stream")
        views[name] = litellm_harness.stream_view(list(litellm_harness.stream_events(response)))
    assert views["real"] == views["sim"]
    assert (views["sim"]["usage"] is not None) == (include_usage is True)


def test_unknown_or_missing_model_is_400_before_any_backend_call(ask, litellm_harness):
    unknown = ask("POST", "/v1/chat/completions", json=litellm_harness.chat_body(model="nope"))
    assert error_types(unknown) == {
        "real": (400, "invalid_request_error", "400"),
        "sim": (400, "invalid_request_error", "400"),
    }
    real, sim = (body["error"]["message"] for body in bodies(unknown).values())
    assert real == sim
    missing = ask("POST", "/v1/chat/completions", json={"messages": litellm_harness.chat_body()["messages"]})
    assert statuses(missing) == {"real": 400, "sim": 400}
    text = ask("POST", "/v1/completions", json={"model": "nope", "prompt": "x"})
    assert statuses(text) == {"real": 400, "sim": 400}


def test_invalid_json_is_400(ask):
    responses = ask("POST", "/v1/chat/completions", data=b'{"model":')
    assert error_types(responses) == {
        "real": (400, "invalid_request_error", "400"),
        "sim": (400, "invalid_request_error", "400"),
    }
    assert {name: r.json()["error"]["param"] for name, r in responses.items()} == {
        "real": "request_body",
        "sim": "request_body",
    }


def test_backend_errors(ask, litellm_harness):
    rejected = ask("POST", "/v1/chat/completions", json=litellm_harness.chat_body(max_tokens=10**6))
    assert error_types(rejected) == {
        "real": (400, "invalid_request_error", "400"),
        "sim": (400, "invalid_request_error", "400"),
    }
    unreachable = ask("POST", "/v1/chat/completions", json=litellm_harness.chat_body(model=litellm_harness.DEAD_MODEL))
    assert error_types(unreachable) == {
        "real": (500, "internal_server_error", "500"),
        "sim": (500, "internal_server_error", "500"),
    }


def test_health_calls_the_backends_and_answers_200(ask):
    responses = ask("GET", "/health")
    assert statuses(responses) == {"real": 200, "sim": 200}
    real, sim = bodies(responses).values()
    assert real["healthy_endpoints"] == sim["healthy_endpoints"]
    assert (sim["healthy_count"], sim["unhealthy_count"]) == (real["healthy_count"], real["unhealthy_count"]) == (1, 1)
    (real_dead,), (sim_dead,) = real["unhealthy_endpoints"], sim["unhealthy_endpoints"]
    assert set(sim_dead) <= set(real_dead)
    assert {k: v for k, v in sim_dead.items() if k != "error"} == {k: real_dead[k] for k in sim_dead if k != "error"}


@pytest.mark.parametrize("case", ["unset", "empty", "sk-1234"])
def test_refuses_to_start_with_a_weak_master_key(litellm_refusals, case):
    real, sim = litellm_refusals[case]["real"], litellm_refusals[case]["sim"]
    assert real.returncode == sim.returncode == 3
    assert real.message() == sim.message()


def test_the_observed_refusal_messages(litellm_refusals):
    """What the real proxy says, recorded: a change in a new version shows here first."""
    assert [litellm_refusals[case]["real"].message()[0] for case in ("unset", "empty", "sk-1234")] == [
        "LiteLLM proxy refused to start: no master key is set, so every request would be accepted without "
        "authentication.",
        "LiteLLM proxy refused to start: the master key is empty.",
        "LiteLLM proxy refused to start: the master key is a publicly known default.",
    ]
    source = litellm_refusals["sk-1234"]["real"].message()[1]
    assert source == "It comes from the LITELLM_MASTER_KEY environment variable."

"""litellm-sim against a real PostgreSQL and vllm-sim, as the collection uses the LiteLLM proxy."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator

import psycopg2
import pytest
import yaml
from litellm_harness import (
    DEAD_MODEL,
    LITELLM_SIM,
    MASTER_KEY,
    MODEL,
    SERVED,
    Sim,
    auth,
    chat_body,
    completion_view,
    database,
    error,
    expected_spend,
    free_port,
    http,
    litellm_sim,
    sim_env,
    stream_events,
    stream_view,
    write_config,
)

# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def sim(tmp_path, postgres, backend) -> Iterator[Sim]:
    with database(postgres) as url, litellm_sim(tmp_path, backend, url, LITELLM_SALT_KEY="sk-salt-test") as running:
        yield running


# --- start-up ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "headline", "source"),
    [
        (
            {},
            "no master key is set, so every request would be accepted without authentication.",
            "general_settings.master_key in {config} is blank, or points at an environment variable that is not set.",
        ),
        (
            {"LITELLM_MASTER_KEY": ""},
            "the master key is empty.",
            "It comes from the LITELLM_MASTER_KEY environment variable.",
        ),
        (
            {"LITELLM_MASTER_KEY": "sk-1234"},
            "the master key is a publicly known default.",
            "It comes from the LITELLM_MASTER_KEY environment variable.",
        ),
        (
            {"LITELLM_MASTER_KEY": " sk-1234 "},
            "the master key is a publicly known default.",
            "It comes from the LITELLM_MASTER_KEY environment variable.",
        ),
    ],
    ids=["unset", "empty", "sk-1234", "sk-1234-padded"],
)
def test_refuses_to_start_with_a_weak_master_key(tmp_path, env, headline, source):
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9/v1")
    cmd = [*LITELLM_SIM, "--config", str(config), "--port", str(free_port())]
    result = subprocess.run(cmd, env=sim_env(**env), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 3
    assert f"LiteLLM proxy refused to start: {headline}\n{source.format(config=config)}\n" in result.stderr


def test_a_master_key_written_into_the_config_is_blamed_on_the_config(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"general_settings": {"master_key": "sk-1234"}}))
    cmd = [*LITELLM_SIM, "--config", str(config), "--port", str(free_port())]
    result = subprocess.run(cmd, env=sim_env(), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 3
    assert f"It comes from general_settings.master_key in {config}." in result.stderr


def test_starts_creates_its_tables_and_is_ready(sim):
    assert http().get(f"{sim.url}/health/liveliness").json() == "I'm alive!"
    readiness = http().get(f"{sim.url}/health/readiness")
    assert (readiness.status_code, readiness.json()) == (200, {"status": "healthy", "db": "connected"})
    tables = sim.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    assert {"LiteLLM_VerificationToken", "LiteLLM_SpendLogs"} <= {row["table_name"] for row in tables}
    assert "LITELLM_SALT_KEY" not in sim.log.read_text()


def test_warns_without_a_salt_key(tmp_path, postgres, backend):
    with database(postgres) as url, litellm_sim(tmp_path, backend, url) as running:
        assert "WARNING litellm-sim: LITELLM_SALT_KEY is not set" in running.log.read_text()


def test_sigterm_finishes_requests_in_flight_and_drops_idle_connections(sim):
    idle = http()
    assert idle.get(f"{sim.url}/health/liveliness").status_code == 200  # leaves a keep-alive connection open
    body = chat_body(True, True, max_tokens=20)  # half a second of tokens
    with http().post(f"{sim.url}/chat/completions", headers=auth(MASTER_KEY), json=body, stream=True) as response:
        events = stream_events(response)
        first = next(events)
        stopped = time.monotonic()
        sim.proc.terminate()
        rest = list(events)
    assert rest[-1] == "[DONE]" and stream_view([first, *rest])["usage"]["completion_tokens"] == 20
    assert sim.proc.wait(10) == 0
    # Not held up by the idle connection until its keep-alive timeout (5 s).
    assert time.monotonic() - stopped < 3
    assert spend_log(sim, json.loads(first)["id"])["completion_tokens"] == 20


# --- auth and listing ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/models", "/models", "/health", "/chat/completions", "/v1/completions"])
def test_every_api_route_needs_a_key(sim, path):
    method = http().get if "models" in path or path == "/health" else http().post
    response = method(f"{sim.url}{path}", json=chat_body())
    assert (response.status_code, response.json()) == error(
        401, "Authentication Error, No api key passed in.", "auth_error"
    )


def test_bad_keys_are_401(sim):
    session = http()
    for header in (MASTER_KEY, "Bearer "):
        malformed = session.get(f"{sim.url}/v1/models", headers={"Authorization": header})
        assert (malformed.status_code, malformed.json()["error"]["type"]) == (401, "auth_error")
    unknown = session.get(f"{sim.url}/v1/models", headers=auth("sk-unknown-" + secrets.token_hex(8)))
    assert (unknown.status_code, unknown.json()) == error(
        401, "Authentication Error, Invalid API key provided.", "token_not_found_in_db", "key"
    )
    # A token hash is not a key: only sk- keys are looked up.
    not_sk = session.get(f"{sim.url}/v1/models", headers=auth(hashlib.sha256(MASTER_KEY.encode()).hexdigest()))
    assert (not_sk.status_code, not_sk.json()["error"]["type"]) == (401, "auth_error")


def test_master_key_lists_the_models(sim):
    listed = {"object": "model", "created": 1677610602, "owned_by": "openai"}
    # The context length comes from the backend's own listing (max_model_len); the dead one has none.
    limits = {"max_input_tokens": 4096, "max_output_tokens": 4096}
    expected = {"data": [{"id": MODEL, **listed, **limits}, {"id": DEAD_MODEL, **listed}], "object": "list"}
    for path in ("/v1/models", "/models"):
        response = http().get(f"{sim.url}{path}", headers=auth(MASTER_KEY))
        assert (response.status_code, response.json()) == (200, expected)


def test_unknown_routes_and_methods(sim):
    missing = http().get(f"{sim.url}/nonexistent", headers=auth(MASTER_KEY))
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    wrong = http().get(f"{sim.url}/v1/chat/completions", headers=auth(MASTER_KEY))
    assert (wrong.status_code, wrong.json(), wrong.headers["allow"]) == (405, {"detail": "Method Not Allowed"}, "POST")


def insert_key(sim: Sim, raw_key: str) -> str:
    """A key row as /key/generate would store it: only the hash of the key."""
    token = hashlib.sha256(raw_key.encode()).hexdigest()
    sim.query(
        'INSERT INTO "LiteLLM_VerificationToken" (token, key_name, key_alias, user_id) VALUES (%s, %s, %s, %s)',
        (token, f"sk-...{raw_key[-4:]}", "alice", "alice-id"),
    )
    return token


# --- completions and spend -----------------------------------------------------------------------


def spend_log(sim: Sim, request_id: str) -> dict:
    rows = sim.query('SELECT * FROM "LiteLLM_SpendLogs" WHERE request_id = %s', (request_id,))
    assert len(rows) == 1, f"no spend log row for {request_id}"
    return rows[0]


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
def test_chat_completion_is_proxied_and_its_spend_logged(sim, path):
    response = http().post(f"{sim.url}{path}", headers=auth(MASTER_KEY), json=chat_body())
    assert response.status_code == 200, response.text
    body = response.json()
    view = completion_view(body)
    assert view["model"] == MODEL  # the name the client called, not the backend's
    assert (view["object"], view["role"], view["usage"]["completion_tokens"]) == ("chat.completion", "assistant", 5)
    assert view["text"]
    row = spend_log(sim, body["id"])
    # The master key is logged under an alias, never as a hash of itself.
    assert (row["api_key"], row["user"]) == ("litellm_proxy_master_key", "default_user_id")
    assert (row["call_type"], row["model"], row["model_group"]) == ("acompletion", SERVED, MODEL)
    assert row["model_id"] == response.headers["x-litellm-model-id"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == tuple(
        body["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    )
    assert row["spend"] == pytest.approx(expected_spend(body["usage"]))
    assert float(response.headers["x-litellm-response-cost"]) == pytest.approx(row["spend"])
    assert row["startTime"] <= row["endTime"]


@pytest.mark.parametrize("path", ["/completions", "/v1/completions"])
def test_text_completion_is_proxied_and_its_spend_logged(sim, path):
    body = {"model": MODEL, "prompt": "once upon", "max_tokens": 3}
    response = http().post(f"{sim.url}{path}", headers=auth(MASTER_KEY), json=body)
    assert response.status_code == 200, response.text
    view = completion_view(response.json())
    assert (view["object"], view["model"], view["usage"]["completion_tokens"]) == ("text_completion", MODEL, 3)
    row = spend_log(sim, response.json()["id"])
    assert (row["call_type"], row["completion_tokens"]) == ("atext_completion", 3)


def test_stream_is_relayed_as_it_comes_with_usage_when_asked(sim):
    arrivals = []
    with http().post(
        f"{sim.url}/v1/chat/completions", headers=auth(MASTER_KEY), json=chat_body(True, True), stream=True
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = []
        for event in stream_events(response):
            arrivals.append(time.monotonic())
            events.append(event)
    view = stream_view(events)
    assert (view["objects"], view["models"], view["ids"]) == (["chat.completion.chunk"], [MODEL], 1)
    assert view["usage"]["completion_tokens"] == 5 and view["usage_last"]
    # 5 tokens at 40 tokens/s: a relay that waited for the whole answer would deliver all at once.
    assert arrivals[-1] - arrivals[0] > 0.05
    row = spend_log(sim, json.loads(events[0])["id"])
    assert row["completion_tokens"] == 5
    assert row["spend"] == pytest.approx(expected_spend(view["usage"]))


def test_stream_usage_is_logged_but_not_sent_unless_asked(sim):
    for include_usage in (None, False):
        with http().post(
            f"{sim.url}/chat/completions",
            headers=auth(MASTER_KEY),
            json=chat_body(True, include_usage),
            stream=True,
        ) as response:
            events = list(stream_events(response))
        view = stream_view(events)
        assert view["usage"] is None and view["finish_reasons"] == ["length"]
        row = spend_log(sim, json.loads(events[0])["id"])
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] == 5


def test_a_key_in_the_token_table_authenticates_and_accrues_its_spend(sim):
    raw = "sk-" + secrets.token_urlsafe(16)
    token = insert_key(sim, raw)
    assert http().get(f"{sim.url}/v1/models", headers=auth(raw)).status_code == 200
    first = http().post(f"{sim.url}/chat/completions", headers=auth(raw), json=chat_body(user="bob")).json()
    with http().post(
        f"{sim.url}/chat/completions", headers=auth(raw), json=chat_body(True, True), stream=True
    ) as response:
        second = stream_view(list(stream_events(response)))
    rows = sim.query('SELECT * FROM "LiteLLM_SpendLogs" ORDER BY "startTime"')
    assert [row["api_key"] for row in rows] == [token, token]
    # "user" is the key's owner, end_user the request's `user`.
    assert [(row["user"], row["end_user"]) for row in rows] == [("alice-id", "bob"), ("alice-id", None)]
    for row in rows:
        assert row["startTime"] <= row["completionStartTime"] <= row["endTime"]
    (key,) = sim.query('SELECT spend, last_active FROM "LiteLLM_VerificationToken" WHERE token = %s', (token,))
    assert key["spend"] == pytest.approx(expected_spend(first["usage"]) + expected_spend(second["usage"]))
    assert key["last_active"] is not None


def test_unknown_or_missing_model_is_400_and_costs_nothing(sim):
    for body, shown in ((chat_body(model="nope"), "nope"), ({"messages": chat_body()["messages"]}, "None")):
        response = http().post(f"{sim.url}/v1/chat/completions", headers=auth(MASTER_KEY), json=body)
        assert (response.status_code, response.json()["error"]["type"]) == (400, "invalid_request_error")
        assert f"model={shown}." in response.json()["error"]["message"]
    assert sim.query('SELECT * FROM "LiteLLM_SpendLogs"') == []


def test_a_body_that_is_not_a_json_object_is_400(sim):
    for data in (b'{"model":', b"[1, 2]"):
        response = http().post(f"{sim.url}/chat/completions", headers=auth(MASTER_KEY), data=data)
        assert (response.status_code, response.json()["error"]["param"]) == (400, "request_body")


def test_backend_errors_keep_their_status(sim):
    too_long = http().post(f"{sim.url}/v1/chat/completions", headers=auth(MASTER_KEY), json=chat_body(max_tokens=10**6))
    assert (too_long.status_code, too_long.json()["error"]["type"], too_long.json()["error"]["code"]) == (
        400,
        "invalid_request_error",
        "400",
    )
    down = http().post(f"{sim.url}/v1/chat/completions", headers=auth(MASTER_KEY), json=chat_body(model=DEAD_MODEL))
    assert (down.status_code, down.json()["error"]["type"]) == (500, "internal_server_error")
    assert sim.query('SELECT * FROM "LiteLLM_SpendLogs"') == []


def test_health_calls_each_backend_and_answers_200(sim, backend):
    response = http().get(f"{sim.url}/health", headers=auth(MASTER_KEY))
    assert response.status_code == 200
    body = response.json()
    assert (body["healthy_count"], body["unhealthy_count"]) == (1, 1)
    assert [(e["model"], e["api_base"]) for e in body["healthy_endpoints"]] == [(f"openai/{SERVED}", backend)]
    (dead,) = body["unhealthy_endpoints"]
    assert (dead["model"], dead["exception_status"]) == ("openai/dead", 500)
    assert "Connection error" in dead["error"]


# --- the database going away ---------------------------------------------------------------------


def test_database_outage_is_503_for_keys_and_readiness_until_it_is_back(sim, postgres):
    raw = "sk-" + secrets.token_urlsafe(16)
    insert_key(sim, raw)
    name = sim.database_url.rsplit("/", 1)[1]
    admin = psycopg2.connect(postgres)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            # Its sessions cut and the database renamed, litellm-sim finds it neither on its old
            # connection nor on a new one.
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            cur.execute(f"ALTER DATABASE {name} RENAME TO {name}_away")
        readiness = http().get(f"{sim.url}/health/readiness")
        assert (readiness.status_code, readiness.json()) == (503, {"status": "healthy", "db": "disconnected"})
        key_request = http().get(f"{sim.url}/v1/models", headers=auth(raw))
        assert (key_request.status_code, key_request.json()["error"]["type"]) == (503, "no_db_connection")
        # The master key needs no database; the answer is served, its spend log is lost.
        served = http().post(f"{sim.url}/chat/completions", headers=auth(MASTER_KEY), json=chat_body())
        assert served.status_code == 200
        assert "not recorded" in sim.log.read_text()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"ALTER DATABASE {name}_away RENAME TO {name}")
        admin.close()
    readiness = http().get(f"{sim.url}/health/readiness")
    assert (readiness.status_code, readiness.json()) == (200, {"status": "healthy", "db": "connected"})
    assert http().get(f"{sim.url}/v1/models", headers=auth(raw)).status_code == 200


def test_a_connection_cut_by_a_database_restart_is_replaced_without_an_error(sim, postgres):
    raw = "sk-" + secrets.token_urlsafe(16)
    insert_key(sim, raw)
    assert http().get(f"{sim.url}/v1/models", headers=auth(raw)).status_code == 200  # litellm-sim is connected
    admin = psycopg2.connect(postgres)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            name = sim.database_url.rsplit("/", 1)[1]
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    finally:
        admin.close()
    assert http().get(f"{sim.url}/v1/models", headers=auth(raw)).status_code == 200


def test_starts_without_its_database_and_connects_when_it_comes(tmp_path, postgres, backend):
    name = "t_" + secrets.token_hex(6)
    url = postgres.rsplit("/", 1)[0] + "/" + name
    with litellm_sim(tmp_path, backend, url) as running:
        assert http().get(f"{running.url}/health/readiness").status_code == 503
        assert "database not reachable yet" in running.log.read_text()
        admin = psycopg2.connect(postgres)
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name}")
            readiness = http().get(f"{running.url}/health/readiness")
            assert (readiness.status_code, readiness.json()["db"]) == (200, "connected")
            assert running.query('SELECT count(*) AS n FROM "LiteLLM_SpendLogs"') == [{"n": 0}]
        finally:
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
            admin.close()

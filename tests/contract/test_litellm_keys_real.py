"""The requests the litellm_key module makes, to the real LiteLLM proxy 1.109.1 and to litellm-sim.

The real proxy runs without a database (its Prisma engines cannot be fetched here), so it answers
for real only what comes before the database: FastAPI's 422s, the 400 for a body that is no
object, 401 without a key, the budget checks of /key/update, 405s. Those must be the same from
both, byte for byte. For what needs the database the real proxy's answer (a 500) is pinned, with
what a proxy built with its Prisma client would say recorded alongside, and litellm-sim's
answer is checked for its shape.

What LiteLLM would answer with a database is also taken from its own code: litellm_own.py runs
the pinned /key/generate handler with a stand-in for the database, and LiteLLM's duration and
budget-reset functions, in the venv of the real proxy; litellm-sim must agree with both, and its
responses must use the field names of LiteLLM's response models.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest
from litellm_sim import common, db, durations
from litellm_sim.keys import GENERATE_RESPONSE_FIELDS

pytest_plugins = ["conftest_litellm"]

HERE = Path(__file__).resolve().parent
OWN_TIMEOUT = 300


def statuses(responses) -> dict[str, int]:
    return {name: response.status_code for name, response in responses.items()}


def bodies(responses) -> dict[str, object]:
    return {name: response.json() for name, response in responses.items()}


def same(responses, status: int) -> object:
    """Both answered `status` with the same JSON body; returns it."""
    assert statuses(responses) == {"real": status, "sim": status}, {n: r.text[:500] for n, r in responses.items()}
    real, sim = bodies(responses).values()
    assert real == sim
    return sim


def alias() -> str:
    return "contract-" + secrets.token_hex(5)


# --- what the real proxy answers without a database: the same from both ---------------------------

VALIDATION_422 = [
    ("POST", "/key/generate", {"json": {"rpm_limit": -1}}),
    ("POST", "/key/generate", {"json": {"rpm_limit": -1, "tpm_limit": -5}}),
    ("POST", "/key/generate", {"json": {"rpm_limit": "abc"}}),
    ("POST", "/key/generate", {"json": {"rpm_limit": 1.5}}),
    ("POST", "/key/generate", {"data": b'{"rpm_limit": NaN}'}),
    ("POST", "/key/generate", {"json": {"tpm_limit": -1, "max_budget": "abc", "key_alias": 5}}),
    ("POST", "/key/generate", {"json": {"models": "x", "metadata": [1], "blocked": "maybe"}}),
    ("POST", "/key/generate", {"json": {"tags": ["a", 1], "duration": 30, "budget_duration": 1}}),
    ("POST", "/key/generate", {"json": {"max_parallel_requests": "two", "user_id": 7, "key": ["sk-x"]}}),
    ("POST", "/key/generate", {"json": {"default_estimated_output_tokens": 0, "rpm_limit_type": "fast"}}),
    ("POST", "/key/generate", {"json": {"mcp_rpm_limit": {"s": "x"}, "enforced_params": ["a", 1]}}),
    ("POST", "/key/generate", {"data": b'{"x":'}),
    ("POST", "/key/generate", {"data": b""}),
    ("POST", "/key/update", {"json": {}}),
    ("POST", "/key/update", {"json": {"rpm_limit": 5}}),
    ("POST", "/key/update", {"json": {"key": None, "key_alias": None}}),
    ("POST", "/key/update", {"json": {"key": "sk-abc", "rpm_limit": -1}}),
    ("POST", "/key/update", {"json": {"key_alias": "x", "duration": 5, "metadata": "m"}}),
    ("POST", "/key/update", {"data": b'{"x":'}),
    ("POST", "/key/delete", {"json": {}}),
    ("POST", "/key/delete", {"json": {"keys": []}}),
    ("POST", "/key/delete", {"json": {"keys": "sk-abc"}}),
    ("POST", "/key/delete", {"json": {"key_aliases": [1]}}),
    ("POST", "/key/block", {"json": {}}),
    ("POST", "/key/unblock", {"json": {"key": None}}),
    ("GET", "/key/list", {"params": {"size": 0}}),
    ("GET", "/key/list", {"params": {"size": 101, "page": 0}}),
    ("GET", "/key/list", {"params": {"page": "x"}}),
    ("GET", "/key/list", {"params": {"return_full_object": "maybe"}}),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), VALIDATION_422, ids=[f"{m} {p}" for m, p, _kwargs in VALIDATION_422]
)
def test_request_validation_is_the_same_422(ask, method, path, kwargs):
    body = same(ask(method, path, **kwargs), 422)
    assert body["detail"] and all(set(error) == {"type", "loc", "msg"} for error in body["detail"])


@pytest.mark.parametrize("path", ["/key/generate", "/key/update", "/key/delete", "/key/block", "/key/unblock"])
@pytest.mark.parametrize("data", [b"[1]", b"null", b"5"])
@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
def test_a_body_that_is_no_object_is_the_same_400(ask, litellm_harness, path, data, with_key):
    headers = litellm_harness.auth(litellm_harness.MASTER_KEY) if with_key else {}
    assert same(ask("POST", path, headers=headers, data=data), 400) == {
        "error": {
            "message": "Invalid JSON payload: expected an object",
            "type": "invalid_request_error",
            "param": "request_body",
            "code": "400",
        }
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/key/generate"),
        ("POST", "/key/update"),
        ("POST", "/key/delete"),
        ("POST", "/key/block"),
        ("POST", "/key/regenerate"),
        ("GET", "/key/info"),
        ("GET", "/key/list"),
        ("GET", "/spend/logs"),
        ("GET", "/global/spend/keys"),
    ],
)
def test_no_key_is_the_same_401(ask, method, path):
    # Even with an invalid body: the key is checked before FastAPI validates the body.
    same(ask(method, path, headers={}, json={"rpm_limit": -1}), 401)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "sk-abc", "max_budget": -1}, "max_budget must be a non-negative finite number. Received: -1.0"),
        ({"key": "sk-abc", "max_budget": "nan"}, "max_budget must be a non-negative finite number. Received: nan"),
        ({"key": "sk-abc", "max_budget": "Infinity"}, "max_budget must be a non-negative finite number. Received: inf"),
        ({"key_alias": "x", "soft_budget": -1}, "soft_budget must be a non-negative finite number. Received: -1.0"),
    ],
)
def test_update_checks_budgets_first_the_same(ask, body, message):
    # Before the key is looked up: the real proxy answers them without its database.
    assert same(ask("POST", "/key/update", json=body), 400) == {
        "error": {"message": str({"error": message}), "type": "invalid_request_error", "param": None, "code": "400"}
    }


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/key/generate", "POST"),
        ("GET", "/key/update", "POST"),
        ("GET", "/key/delete", "POST"),
        ("POST", "/key/info", "GET"),
        ("POST", "/key/list", "GET"),
    ],
)
def test_wrong_methods_are_the_same_405(ask, method, path, allow):
    responses = ask(method, path)
    assert same(responses, 405) == {"detail": "Method Not Allowed"}
    assert {name: r.headers["allow"] for name, r in responses.items()} == {"real": allow, "sim": allow}


# --- what needs the database: the module's requests, the real proxy's 500s pinned -----------------


def test_the_key_modules_requests(ask, litellm_harness, litellm_sim_server):
    """generate with a supplied key -> info by hash -> list by alias and by hash (full objects) ->
    update -> delete -> info of the deleted key, as the litellm_key module sends them."""
    raw = "sk-contract-" + secrets.token_hex(12)
    token = common.hash_key(raw)
    name = alias()
    settings = {
        "key_alias": name,
        "models": [litellm_harness.MODEL],
        "rpm_limit": 10,
        "tpm_limit": 50000,
        "max_parallel_requests": 2,
        "max_budget": 5.0,
        "budget_duration": "30d",
        "metadata": {"managed_by": "thorfleet.llm", "email": "a@example.com"},
        "user_id": "attendee-01",
    }

    # The module looks the key up by its hash first (never by the raw key in a URL).
    missing = ask("GET", "/key/info", params={"key": token})
    # Real, no database: any /key/info is this 500.
    assert (missing["real"].status_code, missing["real"].json()) == (
        500,
        {
            "error": {
                "message": "Internal server error from /key/info. Details are in the proxy server logs.",
                "type": "internal_error",
                "param": None,
                "code": "500",
            }
        },
    )
    assert (missing["sim"].status_code, missing["sim"].json()) == (
        404,
        {"error": {"message": "Key not found in database", "type": "not_found_error", "param": "key", "code": "404"}},
    )
    listed = ask("GET", "/key/list", params={"key_alias": name, "return_full_object": "true"})
    # Real, no database: {"error": {"message": "Database not connected", "type": "internal_server_error", ...}}.
    assert (listed["real"].status_code, listed["real"].json()["error"]["message"]) == (500, "Database not connected")
    assert listed["sim"].json() == {"keys": [], "total_count": 0, "current_page": 1, "total_pages": 0}

    created = ask("POST", "/key/generate", json={"key": raw, **settings})
    # Real, no database: 500. A proxy with its Prisma client installed answers {"error": {"message":
    # "{'error': 'DB not connected. This endpoint needs a database; set DATABASE_URL ...'}",
    # "type": "internal_server_error", "param": null, "code": "500"}}; this venv has no Prisma
    # client, so its error handler fails and uvicorn answers "Internal Server Error" as text.
    assert created["real"].status_code == 500
    assert created["sim"].status_code == 200, created["sim"].text
    generated = created["sim"].json()
    assert (generated["key"], generated["token"], generated["token_id"]) == (raw, token, token)
    assert {k: generated[k] for k in settings} == settings

    info = ask("GET", "/key/info", params={"key": token})
    assert info["real"].status_code == 500
    body = info["sim"].json()
    assert body["key"] == token and "token" not in body["info"]
    assert {k: body["info"][k] for k in settings} == settings
    assert body["info"]["status"] == "active"

    for params in ({"key_alias": name}, {"key_hash": token}):
        listed = ask("GET", "/key/list", params={**params, "return_full_object": "true"})
        assert listed["real"].status_code == 500
        page = listed["sim"].json()
        assert (page["total_count"], page["current_page"], page["total_pages"]) == (1, 1, 1)
        (full,) = page["keys"]
        assert full["token"] == token and {k: full[k] for k in settings} == settings

    updated = ask("POST", "/key/update", json={"key": token, "rpm_limit": 20, "metadata": {"managed_by": "x"}})
    # Real, no database: the key lookup fails first.
    assert (updated["real"].status_code, updated["real"].json()) == (
        500,
        {
            "error": {
                "message": "{'error': 'Database not connected'}",
                "type": "internal_server_error",
                "param": None,
                "code": "500",
            }
        },
    )
    changed = updated["sim"].json()
    assert (changed["key"], changed["rpm_limit"], changed["tpm_limit"], changed["metadata"]) == (
        token,
        20,
        50000,
        {"managed_by": "x"},
    )

    deleted = ask("POST", "/key/delete", json={"keys": [token]})
    # Real, no database: 500 ("Not connected to DB!", or text without the Prisma client).
    assert deleted["real"].status_code == 500
    assert deleted["sim"].json() == {"deleted_keys": [token]}
    gone = ask("GET", "/key/info", params={"key": token})
    assert gone["sim"].json()["info"]["status"] == "deleted"
    again = ask("POST", "/key/delete", json={"keys": [token]})
    assert again["sim"].status_code == 404


@pytest.mark.parametrize("params", [{}, {"api_key": "0" * 64}], ids=["all", "one key (litellm_spend_info)"])
def test_spend_reports_need_the_database(ask, params):
    logs = ask("GET", "/spend/logs", params=params)
    assert (logs["real"].status_code, logs["real"].json()) == (
        500,
        {
            "error": {
                "message": "/spend/logs ErrorDatabase not connected. Connect a database to your proxy - "
                "https://docs.litellm.ai/docs/simple_proxy#managing-auth---virtual-keys",
                "type": "internal_error",
                "param": None,
                "code": "500",
            }
        },
    )
    assert logs["sim"].status_code == 200 and isinstance(logs["sim"].json(), list)


def test_spend_by_key_needs_the_database(ask):
    by_key = ask("GET", "/global/spend/keys")
    assert (by_key["real"].status_code, by_key["real"].json()) == (500, {"detail": {"error": "No db connected"}})
    assert by_key["sim"].status_code == 200 and isinstance(by_key["sim"].json(), list)


def test_regenerate_is_enterprise_only(ask):
    responses = ask("POST", "/key/regenerate", json={"key": "sk-" + secrets.token_hex(10)})
    # Both 500; the real proxy's error handler needs the Prisma client this venv lacks, so its body
    # is text here. With it: the same envelope as litellm-sim's.
    assert statuses(responses) == {"real": 500, "sim": 500}
    assert (
        responses["sim"]
        .json()["error"]["message"]
        .startswith("Regenerating Virtual Keys is an Enterprise feature, You must be a LiteLLM Enterprise user")
    )


# --- LiteLLM's own code, run in its venv, against litellm-sim -------------------------------------

OK_BODIES = [
    {
        "models": ["tiny-chat"],
        "rpm_limit": 10,
        "tpm_limit": 50000,
        "max_parallel_requests": 2,
        "max_budget": 5.0,
        "budget_duration": "30d",
        "duration": "30d",
        "metadata": {"team": "engineering", "email": "alice@example.com"},
        "user_id": "alice-id",
    },
    {},
    {"key": "sk-own-custom-key-0123456789", "blocked": True, "tpd_limit": 5},
    {"tags": [], "guardrails": []},
    {"spend": 2.5, "aliases": {"a": "b"}, "config": {"c": 1}, "permissions": {"p": True}},
    {"rpm_limit": "7", "blocked": "no", "max_budget": "2.5", "tpm_limit": 100.0},
    {"metadata": None, "models": None, "key_alias": None, "blocked": None},
    {"budget_duration": "daily", "duration": "1h"},
    {"rpm_limt": 5, "unknown": {"x": 1}},
    {"key_alias": "release-1.0..2 (a..b)"},
    {
        "metadata": {"team": "a", "model_rpm_limit": {"old": 1}},
        "model_rpm_limit": {"tiny-chat": 5},
        "model_tpm_limit": {"tiny-chat": 500},
        "mcp_rpm_limit": {"search": 3},
        "tag_rpm_limit": {"batch": "4"},
        "default_estimated_output_tokens": 64,
        "rpm_limit_type": "best_effort_throughput",
        "tpm_limit_type": "dynamic",
        "enforced_params": ["user"],
        "throttle_on_budget_exceeded": True,
        "enable_prompt_caching": False,
        "disable_global_guardrails": False,
        "allowed_passthrough_routes": [],
        "denied_passthrough_routes": [],
    },
]
ERROR_BODIES = [
    {"max_budget": -1},
    {"max_budget": float("nan")},
    {"soft_budget": -0.5},
    {"budget_duration": "x"},
    {"budget_duration": "0d"},
    {"budget_duration": "2mo"},
    {"max_budget": -2, "budget_duration": "x"},
    {"tags": ["a"]},
    {"guardrails": ["g"], "tags": ["t"]},
    {"key_alias": "tab\there"},
    {"key_alias": "../up"},
    {"key_alias": "x/.."},
    {"key_alias": "line\u2028separator"},
    {"key": "abc"},
    {"key": "pk-0123456789abcdef"},
    {"key": "sk-short"},
    {"duration": "30"},
    {"duration": "-1"},
    {"duration": ""},
    {"budget_duration": ""},
    {"budget_duration": "x", "tags": ["t"]},
    {"metadata": {"service_account_id": "sa-1"}},
    {"disable_global_guardrails": True},
    {"denied_passthrough_routes": ["/x"], "allowed_passthrough_routes": ["/y"]},
]
# LiteLLM 1.109.1 accepts these; docs/litellm-contract.md (and so litellm-sim) refuses them.
CONTRACT_ONLY_BODIES = [{"key": "sk-has.a.dot-0123456789"}]
DURATIONS = [
    *("30s", "45s", "1m", "7m", "15m", "1h", "5h", "7h", "24h", "1d", "2d", "7d", "14d", "30d", "90d"),
    *("1w", "2w", "1mo", "2mo", "hourly", "daily", "weekly", "monthly", "Daily", "0d", "0h", "x", "30"),
    *("30dx", "1y", "-1", " 1h", "1H", "10000000000d"),
]
MOMENTS = [
    "2026-01-31T23:59:30+00:00",
    "2026-03-02T10:17:05.500000+00:00",
    "2026-06-01T00:00:00+00:00",
    "2026-11-23T00:00:00+00:00",  # a Monday, at midnight
    "2026-12-31T23:00:00+00:00",
    "2028-02-29T12:45:59.999999+00:00",
]
# Differ from run to run, or are the database's.
VOLATILE = {"key", "token", "token_id", "key_name", "expires", "created_at", "updated_at", "budget_id"}


@pytest.fixture(scope="module")
def litellm_own(litellm_python):
    """LiteLLM's own answers (litellm_own.py in the real proxy's venv)."""
    request = {"generate": OK_BODIES + ERROR_BODIES + CONTRACT_ONLY_BODIES, "durations": DURATIONS, "moments": MOMENTS}
    result = subprocess.run(
        [str(litellm_python), str(HERE / "litellm_own.py")],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=OWN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def sim_generate(litellm_harness, sim, body: dict) -> tuple[int, dict]:
    body = {"key_alias": alias(), **body} if "key_alias" not in body else body
    response = litellm_harness.http().post(
        sim.url + "/key/generate",
        headers={**litellm_harness.auth(litellm_harness.MASTER_KEY), "content-type": "application/json"},
        data=json.dumps(body),
        timeout=30,
    )
    return response.status_code, response.json()


def stable(body: dict) -> dict:
    return {k: ("<set>" if v is not None else None) if k in VOLATILE else v for k, v in body.items()}


@pytest.mark.parametrize("index", range(len(OK_BODIES)))
def test_generate_answers_as_litellms_own_handler(litellm_own, litellm_harness, litellm_sim_server, index):
    own = litellm_own["generate"][index]
    assert own["status"] == 200, own
    status, body = sim_generate(litellm_harness, litellm_sim_server, OK_BODIES[index])
    assert status == 200, body
    expected = stable(own["body"])
    if "key_alias" not in OK_BODIES[index]:
        expected["key_alias"] = body["key_alias"]  # litellm-sim's run names its keys apart
    assert list(body) == list(own["body"])  # the same fields, in the same order
    assert stable(body) == expected


@pytest.mark.parametrize("index", range(len(ERROR_BODIES)))
def test_generate_refuses_as_litellms_own_handler(litellm_own, litellm_harness, litellm_sim_server, index):
    own = litellm_own["generate"][len(OK_BODIES) + index]
    assert own["status"] != 200, own
    assert sim_generate(litellm_harness, litellm_sim_server, ERROR_BODIES[index]) == (own["status"], own["body"])


def test_custom_key_characters_are_the_contracts_rule_not_litellms(litellm_own, litellm_harness, litellm_sim_server):
    (own,) = litellm_own["generate"][len(OK_BODIES) + len(ERROR_BODIES) :]
    assert own["status"] == 200  # LiteLLM 1.109.1 stores it
    status, body = sim_generate(litellm_harness, litellm_sim_server, CONTRACT_ONLY_BODIES[0])
    assert (status, body["error"]["type"], body["error"]["code"]) == (400, "invalid_request_error", "400")


def outcome(function, *args) -> dict:
    try:
        value = function(*args)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"value": value.isoformat() if hasattr(value, "isoformat") else value}


def test_durations_are_parsed_as_litellm_does(litellm_own):
    mine = [outcome(durations.duration_in_seconds, d) for d in DURATIONS if "mo" not in d]
    assert mine == litellm_own["duration_in_seconds"]


def test_budget_durations_are_accepted_as_litellm_does(litellm_own):
    assert [outcome(durations.budget_duration_error, d) for d in DURATIONS] == litellm_own["budget_duration_error"]


def test_budget_reset_times_are_litellms(litellm_own):
    from datetime import datetime

    mine = [outcome(durations.next_budget_reset, d, datetime.fromisoformat(m)) for d in DURATIONS for m in MOMENTS]
    cases = [f"{d} @ {m}" for d in DURATIONS for m in MOMENTS]
    differing = {case: (a, b) for case, a, b in zip(cases, mine, litellm_own["next_reset"], strict=True) if a != b}
    assert not differing


def test_responses_use_litellms_field_names(litellm_own):
    fields = litellm_own["fields"]
    assert list(GENERATE_RESPONSE_FIELDS) == fields["GenerateKeyResponse"]
    # /key/info and /key/update answer Prisma rows; /key/block and full /key/list objects the
    # pydantic models; deleted keys LiteLLM_DeletedVerificationToken.
    assert list(db.PRISMA_TOKEN_FIELDS) == fields["prisma:LiteLLM_VerificationToken"]
    assert list(db.PRISMA_BUDGET_FIELDS) == fields["prisma:LiteLLM_BudgetTable"]
    assert list(db.PYDANTIC_TOKEN_FIELDS) == fields["LiteLLM_VerificationToken"]
    assert list(db.DELETED_TOKEN_FIELDS) == fields["LiteLLM_DeletedVerificationToken"]
    # The archive table stores every column of a key, and when and by whom it was deleted.
    archive = {name for name, _type in db.DELETED_COLUMNS} | {"id"}
    assert archive == set(fields["prisma:LiteLLM_DeletedVerificationToken"])
    # The real /key/list?return_full_object=true dumps UserAPIKeyAuth, which starts with the key's
    # fields and adds ~70 more about the caller's team, user and budgets (all null for these keys);
    # litellm-sim answers the key's fields only.
    assert fields["UserAPIKeyAuth"][: len(db.PYDANTIC_TOKEN_FIELDS)] == list(db.PYDANTIC_TOKEN_FIELDS)

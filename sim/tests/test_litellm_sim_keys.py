"""litellm-sim's virtual keys against a real PostgreSQL: /key/*, limits, budgets and spend.

Every status and message pinned here was read from LiteLLM 1.109.1's code (and, where it needs no
database, observed on the real proxy: tests/contract/test_litellm_keys_real.py runs those against
both). One PostgreSQL container, one vllm-sim and one litellm-sim serve the module; tests that
need a clean database or a restart start their own litellm-sim.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import litellm_harness as h
import pytest
import requests

NOT_PREMIUM = (
    "You must be a LiteLLM Enterprise user to use this feature. If you have a license please set `LITELLM_LICENSE` "
    "in your env. Get a 7 day trial key here: https://www.litellm.ai/enterprise#trial. \nPricing: "
    "https://www.litellm.ai/#pricing"
)
TOKEN_TABLE = '"LiteLLM_VerificationToken"'


# --- harness -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(postgres, backend, tmp_path_factory) -> Iterator[h.Sim]:
    workdir = tmp_path_factory.mktemp("litellm-sim")
    with h.database(postgres) as url, h.litellm_sim(workdir, backend, url, LITELLM_SALT_KEY="sk-salt-test") as running:
        yield running


def alias() -> str:
    """A key_alias no other test uses: the module's tests share one database."""
    return "alias-" + secrets.token_hex(5)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def call(sim: h.Sim, method: str, path: str, key: str | None = h.MASTER_KEY, **kwargs) -> requests.Response:
    headers = h.auth(key) if key is not None else {}
    return h.http().request(method, sim.url + path, headers=headers, timeout=30, **kwargs)


def generate(sim: h.Sim, **body) -> dict:
    response = call(sim, "POST", "/key/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def stored(sim: h.Sim, token: str) -> dict:
    (row,) = sim.query(f"SELECT * FROM {TOKEN_TABLE} WHERE token = %s", (token,))
    return row


def detail_error(status: int, detail: str, err_type: str) -> tuple[int, dict]:
    """An HTTPException(detail={"error": detail}) handed on by LiteLLM: the message is the dict's repr."""
    return h.error(status, str({"error": detail}), err_type)


def answer(response: requests.Response) -> tuple[int, object]:
    return response.status_code, response.json()


def complete(sim: h.Sim, key: str, **extra) -> requests.Response:
    return call(sim, "POST", "/chat/completions", key=key, json=h.chat_body(**extra))


# --- /key/generate -------------------------------------------------------------------------------


def test_generate_answers_the_raw_key_once_and_stores_only_its_hash(sim):
    name = alias()
    before = datetime.now(UTC)
    body = generate(
        sim,
        key_alias=name,
        models=[h.MODEL],
        rpm_limit=10,
        tpm_limit=50000,
        max_parallel_requests=2,
        max_budget=5.0,
        budget_duration="30d",
        duration="30d",
        metadata={"team": "engineering", "email": "alice@example.com"},
        user_id="alice-id",
    )
    raw = body["key"]
    assert re.fullmatch(r"sk-[A-Za-z0-9_-]{22}", raw)  # sk- + secrets.token_urlsafe(16)
    assert body["token"] == body["token_id"] == sha(raw)
    assert body["key_name"] == f"sk-...{raw[-4:]}"
    echoed = {k: body[k] for k in ("key_alias", "models", "rpm_limit", "tpm_limit", "max_parallel_requests")}
    assert echoed == {
        "key_alias": name,
        "models": [h.MODEL],
        "rpm_limit": 10,
        "tpm_limit": 50000,
        "max_parallel_requests": 2,
    }
    assert (body["max_budget"], body["budget_duration"], body["spend"], body["duration"]) == (5.0, "30d", 0.0, None)
    assert body["metadata"] == {"team": "engineering", "email": "alice@example.com"}
    assert (body["user_id"], body["key_type"], body["created_by"], body["blocked"]) == (
        "alice-id",
        "default",
        "default_user_id",
        None,
    )
    # A pydantic response model: timestamps end in Z; the key lives 30 days from now.
    assert body["expires"].endswith("Z") and body["created_at"].endswith("Z")
    expires = datetime.fromisoformat(body["expires"])
    assert timedelta(days=30) <= expires - before < timedelta(days=30, seconds=30)
    assert "budget_reset_at" not in body and "soft_budget" not in body
    row = stored(sim, sha(raw))
    assert (row["key_name"], row["key_alias"], row["user_id"], row["spend"]) == (body["key_name"], name, "alice-id", 0)
    # 30d budgets reset on the 1st of the month, at midnight UTC.
    reset = row["budget_reset_at"]
    assert (reset.day, reset.hour, reset.minute) == (1, 0, 0) and reset > before.replace(tzinfo=None)
    # The raw key is nowhere in the database.
    dump = json.dumps(sim.query(f"SELECT * FROM {TOKEN_TABLE}"), default=str)
    assert raw not in dump
    # ... and it works.
    assert complete(sim, raw).status_code == 200


def test_generate_with_nothing_makes_an_unrestricted_key(sim):
    body = generate(sim)
    assert (body["key_alias"], body["models"], body["expires"], body["max_budget"], body["metadata"]) == (
        None,
        [],
        None,
        None,
        {},
    )
    assert call(sim, "GET", "/v1/models", key=body["key"]).status_code == 200
    assert complete(sim, body["key"]).status_code == 200


def test_unknown_fields_are_ignored(sim):
    name = alias()
    body = generate(sim, key_alias=name, rpm_limt=5, max_budjet=1)  # misspelled: silently dropped
    assert (body["rpm_limit"], body["max_budget"]) == (None, None)
    row = stored(sim, body["token"])
    assert (row["rpm_limit"], row["max_budget"]) == (None, None)


def test_values_are_coerced_as_pydantic_does(sim):
    body = generate(sim, key_alias=alias(), rpm_limit="7", tpm_limit=100.0, blocked="no", max_budget="2.5")
    assert (body["rpm_limit"], body["tpm_limit"], body["blocked"], body["max_budget"]) == (7, 100, False, 2.5)


def test_a_custom_key_is_stored_by_its_hash(sim):
    raw = "sk-custom-" + secrets.token_hex(8)
    body = generate(sim, key=raw, key_alias=alias())
    assert (body["key"], body["token"], body["key_name"]) == (raw, sha(raw), f"sk-...{raw[-4:]}")
    assert complete(sim, raw).status_code == 200


@pytest.mark.parametrize(
    ("key", "detail"),
    [
        ("abc", "Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: ****"),
        (
            "pk-0123456789abcdef",
            "Invalid key format. LiteLLM Virtual Key must start with 'sk-'. Received: pk-0****cdef",
        ),
        ("sk-short", "Invalid key format. LiteLLM Virtual Key must be at least 16 characters long."),
        # The contract's rule; LiteLLM 1.109.1 itself accepts these.
        (
            "sk-has.a.dot-0123456",
            "Invalid key format. LiteLLM Virtual Key may only use letters, digits, '_' and '-' after 'sk-'.",
        ),
        (
            "sk-has space-0123456",
            "Invalid key format. LiteLLM Virtual Key may only use letters, digits, '_' and '-' after 'sk-'.",
        ),
    ],
    ids=["no-prefix", "other-prefix", "short", "dot", "space"],
)
def test_bad_custom_keys_are_400(sim, key, detail):
    response = call(sim, "POST", "/key/generate", json={"key": key, "key_alias": alias()})
    assert answer(response) == detail_error(400, detail, "invalid_request_error")
    assert sim.query(f"SELECT count(*) AS n FROM {TOKEN_TABLE} WHERE token = %s", (sha(key),)) == [{"n": 0}]


def test_a_duplicate_custom_key_answers_200_from_the_request_and_changes_nothing(sim):
    raw = "sk-dup-" + secrets.token_hex(8)
    first_alias, second_alias = alias(), alias()
    first = generate(sim, key=raw, key_alias=first_alias, rpm_limit=1, metadata={"v": 1})
    before = stored(sim, sha(raw))
    second = generate(sim, key=raw, key_alias=second_alias, rpm_limit=99, metadata={"v": 2}, models=["x"])
    # The answer echoes the second request, under the same token ...
    assert (second["key"], second["token"], second["key_alias"], second["rpm_limit"]) == (
        raw,
        sha(raw),
        second_alias,
        99,
    )
    assert (second["metadata"], second["models"]) == ({"v": 2}, ["x"])
    # ... with the stored row's timestamps, while the row itself is untouched.
    assert second["created_at"] == first["created_at"]
    assert stored(sim, sha(raw)) == before
    assert (before["key_alias"], before["rpm_limit"], before["metadata"]) == (first_alias, 1, {"v": 1})
    assert sim.query(f"SELECT count(*) AS n FROM {TOKEN_TABLE} WHERE key_alias = %s", (second_alias,)) == [{"n": 0}]


def test_a_duplicate_alias_is_400(sim):
    name = alias()
    generate(sim, key_alias=name)
    for extra in ({}, {"key": "sk-other-" + secrets.token_hex(8)}):
        response = call(sim, "POST", "/key/generate", json={"key_alias": name, **extra})
        assert answer(response) == h.error(
            400,
            f"Key with alias '{name}' already exists. Unique key aliases across all keys are required.",
            "bad_request_error",
            "key_alias",
        )
    assert sim.query(f"SELECT count(*) AS n FROM {TOKEN_TABLE} WHERE key_alias = %s", (name,)) == [{"n": 1}]


def test_the_same_custom_key_under_its_own_alias_is_a_duplicate_alias(sim):
    """The alias check comes first: re-sending the very same request is a 400, not the silent 200."""
    raw, name = "sk-again-" + secrets.token_hex(8), alias()
    generate(sim, key=raw, key_alias=name)
    response = call(sim, "POST", "/key/generate", json={"key": raw, "key_alias": name})
    assert response.status_code == 400 and response.json()["error"]["param"] == "key_alias"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"max_budget": -1}, "max_budget must be a non-negative finite number. Received: -1.0"),
        ({"max_budget": "nan"}, "max_budget must be a non-negative finite number. Received: nan"),
        ({"soft_budget": -0.5}, "soft_budget must be a non-negative finite number. Received: -0.5"),
        ({"budget_duration": "x"}, "Invalid budget_duration 'x'. Use a format like '1h', '24h', '7d', or '30d'."),
        ({"budget_duration": "0d"}, "Invalid budget_duration '0d'. Use a format like '1h', '24h', '7d', or '30d'."),
        ({"budget_duration": "2mo"}, "Invalid budget_duration '2mo'. Use a format like '1h', '24h', '7d', or '30d'."),
        ({"budget_duration": "30"}, "Invalid budget_duration '30'. Use a format like '1h', '24h', '7d', or '30d'."),
        # The checks run in order: the budget before its duration.
        ({"max_budget": -2, "budget_duration": "x"}, "max_budget must be a non-negative finite number. Received: -2.0"),
    ],
    ids=["negative", "nan", "soft", "word", "zero", "2mo", "no-unit", "order"],
)
def test_bad_budgets_are_400(sim, body, detail):
    response = call(sim, "POST", "/key/generate", json={"key_alias": alias(), **body})
    assert answer(response) == detail_error(400, detail, "invalid_request_error")


def test_nan_in_the_json_is_read_as_python_does(sim):
    assert call(sim, "POST", "/key/generate", key=None, data=b'{"max_budget": NaN}').status_code == 401
    response = call(sim, "POST", "/key/generate", data=b'{"max_budget": NaN}')
    assert answer(response) == detail_error(
        400, "max_budget must be a non-negative finite number. Received: nan", "invalid_request_error"
    )


@pytest.mark.parametrize("duration", ["daily", "1h", "7d", "1mo", "30dx"])
def test_good_budget_durations_are_accepted(sim, duration):
    body = generate(sim, key_alias=alias(), budget_duration=duration)
    assert stored(sim, body["token"])["budget_reset_at"] > datetime.now(UTC).replace(tzinfo=None)


@pytest.mark.parametrize(
    ("field", "value", "empty"),
    [
        ("tags", ["a"], []),
        ("guardrails", ["a"], []),
        ("disable_global_guardrails", True, False),
        ("allowed_passthrough_routes", ["/x"], []),
        ("denied_passthrough_routes", ["/x"], []),
    ],
)
def test_premium_fields_need_a_licence(sim, field, value, empty):
    response = call(sim, "POST", "/key/generate", json={"key_alias": alias(), field: value})
    assert answer(response) == detail_error(
        403, f"This feature is only available for LiteLLM Enterprise users: {field}. {NOT_PREMIUM}", "auth_error"
    )
    # Empty, they are kept in the metadata.
    body = generate(sim, key_alias=alias(), **{field: empty})
    assert (body["metadata"], body[field]) == ({field: empty}, None)


# Key settings LiteLLM 1.109.1 keeps in the key's metadata, not in columns (values as pydantic reads them).
METADATA_SETTINGS = {
    "model_rpm_limit": {h.MODEL: 5},
    "model_tpm_limit": {h.MODEL: 500},
    "mcp_rpm_limit": {"search": 3},
    "tag_rpm_limit": {"batch": "4"},
    "default_estimated_output_tokens": 64,
    "rpm_limit_type": "best_effort_throughput",
    "tpm_limit_type": "dynamic",
    "enforced_params": ["user"],
    "throttle_on_budget_exceeded": True,
    "enable_prompt_caching": False,
}
METADATA_STORED = {**METADATA_SETTINGS, "tag_rpm_limit": {"batch": 4}}


def test_generate_keeps_those_settings_in_the_metadata(sim):
    body = generate(sim, key_alias=alias(), metadata={"team": "a", "model_rpm_limit": {"old": 1}}, **METADATA_SETTINGS)
    assert body["metadata"] == {"team": "a", **METADATA_STORED}
    assert {name: body.get(name) for name in METADATA_SETTINGS} == dict.fromkeys(METADATA_SETTINGS)
    assert stored(sim, body["token"])["metadata"] == {"team": "a", **METADATA_STORED}


@pytest.mark.parametrize("name", ["tab\there", "new\nline", "../up", "x/..", "line\u2028separator"])
def test_aliases_with_control_characters_or_dot_dot_segments_are_400(sim, name):
    response = call(sim, "POST", "/key/generate", json={"key_alias": name})
    assert answer(response) == h.error(
        400,
        'Invalid key_alias: must not contain control characters (such as tab or newline) or a ".." path segment',
        "bad_request_error",
        "key_alias",
    )


def test_dots_inside_an_alias_are_fine(sim):
    name = "release-1.0..2-" + secrets.token_hex(3)
    assert generate(sim, key_alias=name)["key_alias"] == name


@pytest.mark.parametrize(
    ("duration", "message"),
    [("30", "Unsupported duration unit, passed duration: 30"), ("-1", "Invalid duration format")],
)
def test_an_unparsable_duration_is_a_500(sim, duration, message):
    response = call(sim, "POST", "/key/generate", json={"key_alias": alias(), "duration": duration})
    assert answer(response) == h.error(500, message, "internal_server_error")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {"rpm_limit": -1},
            [["greater_than_equal", ["body", "rpm_limit"], "Input should be greater than or equal to 0"]],
        ),
        (
            {"rpm_limit": -1, "tpm_limit": -5},
            [
                ["greater_than_equal", ["body", "tpm_limit"], "Input should be greater than or equal to 0"],
                ["greater_than_equal", ["body", "rpm_limit"], "Input should be greater than or equal to 0"],
            ],
        ),
        (
            {"rpm_limit": "abc"},
            [
                [
                    "int_parsing",
                    ["body", "rpm_limit"],
                    "Input should be a valid integer, unable to parse string as an integer",
                ]
            ],
        ),
        (
            {"rpm_limit": 1.5},
            [
                [
                    "int_from_float",
                    ["body", "rpm_limit"],
                    "Input should be a valid integer, got a number with a fractional part",
                ]
            ],
        ),
        (
            {"max_budget": "abc"},
            [
                [
                    "float_parsing",
                    ["body", "max_budget"],
                    "Input should be a valid number, unable to parse string as a number",
                ]
            ],
        ),
        ({"models": "x"}, [["list_type", ["body", "models"], "Input should be a valid list"]]),
        ({"metadata": [1]}, [["dict_type", ["body", "metadata"], "Input should be a valid dictionary"]]),
        (
            {"blocked": "maybe"},
            [["bool_parsing", ["body", "blocked"], "Input should be a valid boolean, unable to interpret input"]],
        ),
        ({"key_alias": 5}, [["string_type", ["body", "key_alias"], "Input should be a valid string"]]),
        ({"tags": ["a", 1]}, [["string_type", ["body", "tags", 1], "Input should be a valid string"]]),
        (
            {"default_estimated_output_tokens": 0},
            [["greater_than", ["body", "default_estimated_output_tokens"], "Input should be greater than 0"]],
        ),
        (
            {"tpm_limit_type": "fast", "mcp_rpm_limit": {"s": "x"}},
            [
                [
                    "int_parsing",
                    ["body", "mcp_rpm_limit", "s"],
                    "Input should be a valid integer, unable to parse string as an integer",
                ],
                [
                    "literal_error",
                    ["body", "tpm_limit_type"],
                    "Input should be 'guaranteed_throughput', 'best_effort_throughput' or 'dynamic'",
                ],
            ],
        ),
    ],
    ids=[
        "rpm",
        "both-in-field-order",
        "int-string",
        "fraction",
        "float",
        "list",
        "dict",
        "bool",
        "str",
        "list-item",
        "positive",
        "dict-value-and-literal",
    ],
)
def test_invalid_fields_are_422(sim, body, detail):
    response = call(sim, "POST", "/key/generate", json=body)
    expected = [{"type": kind, "loc": loc, "msg": msg} for kind, loc, msg in detail]
    assert answer(response) == (422, {"detail": expected})


@pytest.mark.parametrize("path", ["/key/generate", "/key/update", "/key/delete", "/key/block", "/key/unblock"])
def test_bodies_that_are_not_objects_are_400_before_the_key_is_checked(sim, path):
    for data in (b"[1]", b"null", b"5"):
        for key in (h.MASTER_KEY, None):
            response = call(sim, "POST", path, key=key, data=data)
            assert answer(response) == h.error(
                400, "Invalid JSON payload: expected an object", "invalid_request_error", "request_body"
            )
    missing = call(sim, "POST", path, data=b"")
    assert answer(missing) == (422, {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required"}]})
    malformed = call(sim, "POST", path, data=b'{"x":')
    assert answer(malformed) == (
        422,
        {"detail": [{"type": "json_invalid", "loc": ["body", 5], "msg": "JSON decode error"}]},
    )
    # Without a key, a missing or malformed body is not looked at.
    assert call(sim, "POST", path, key=None, data=b'{"x":').status_code == 401


# --- /key/update ---------------------------------------------------------------------------------


def test_update_changes_only_what_it_is_sent(sim):
    name = alias()
    key = generate(
        sim, key_alias=name, models=[h.MODEL], rpm_limit=10, tpm_limit=100, max_budget=5.0, metadata={"a": 1}
    )
    response = call(sim, "POST", "/key/update", json={"key_alias": name, "rpm_limit": 20})
    assert response.status_code == 200, response.text
    row = stored(sim, key["token"])
    assert (row["rpm_limit"], row["tpm_limit"], row["models"], row["max_budget"], row["metadata"]) == (
        20,
        100,
        [h.MODEL],
        5.0,
        {"a": 1},
    )
    # An explicit null clears; metadata is replaced whole.
    call(sim, "POST", "/key/update", json={"key_alias": name, "tpm_limit": None, "metadata": {"b": 2}})
    row = stored(sim, key["token"])
    assert (row["rpm_limit"], row["tpm_limit"], row["metadata"]) == (20, None, {"b": 2})
    # Unknown fields are ignored here too.
    assert call(sim, "POST", "/key/update", json={"key_alias": name, "rpm_limt": 1}).status_code == 200
    assert stored(sim, key["token"])["rpm_limit"] == 20


def test_update_finds_the_key_by_raw_key_hash_or_alias_and_echoes_it(sim):
    name = alias()
    key = generate(sim, key_alias=name)
    raw, token = key["key"], key["token"]
    for ident, echoed, value in (({"key": raw}, raw, 1), ({"key": token}, token, 2), ({"key_alias": name}, token, 3)):
        response = call(sim, "POST", "/key/update", json={**ident, "rpm_limit": value})
        assert response.status_code == 200, response.text
        body = response.json()
        # {"key": what identified it, **the stored row}: a raw key comes back, treat it as secret.
        assert (body["key"], body["token"], body["rpm_limit"], body["key_alias"]) == (echoed, token, value, name)
        assert body["updated_at"].endswith("+00:00") and body["litellm_budget_table"] is None
    assert stored(sim, token)["rpm_limit"] == 3


def test_update_can_rename_a_key_but_not_onto_another_alias(sim):
    name, other = alias(), alias()
    key = generate(sim, key_alias=name)
    generate(sim, key_alias=other)
    taken = call(sim, "POST", "/key/update", json={"key": key["token"], "key_alias": other})
    assert answer(taken) == h.error(
        400,
        f"Key with alias '{other}' already exists. Unique key aliases across all keys are required.",
        "bad_request_error",
        "key_alias",
    )
    assert call(sim, "POST", "/key/update", json={"key": key["token"], "key_alias": name}).status_code == 200
    renamed = alias()
    assert call(sim, "POST", "/key/update", json={"key": key["token"], "key_alias": renamed}).status_code == 200
    assert stored(sim, key["token"])["key_alias"] == renamed


def test_update_of_an_unknown_key_is_404(sim):
    for ident in ("sk-unknown-" + secrets.token_hex(8), "0" * 64):
        response = call(sim, "POST", "/key/update", json={"key": ident, "rpm_limit": 1})
        assert answer(response) == h.error(404, "Key not found.", "not_found_error", "key")
    name = alias()
    response = call(sim, "POST", "/key/update", json={"key_alias": name, "rpm_limit": 1})
    assert answer(response) == h.error(
        404, f"Key not found. No key with key_alias='{name}'.", "not_found_error", "key_alias"
    )


@pytest.mark.parametrize("body", [{}, {"rpm_limit": 5}, {"key": None, "key_alias": None}])
def test_update_without_key_or_alias_is_422(sim, body):
    response = call(sim, "POST", "/key/update", json=body)
    assert answer(response) == (
        422,
        {
            "detail": [
                {"type": "value_error", "loc": ["body"], "msg": "Value error, either key or key_alias must be provided"}
            ]
        },
    )


def test_update_checks_budgets_before_finding_the_key(sim):
    unknown = "sk-unknown-" + secrets.token_hex(8)
    for field in ("max_budget", "soft_budget"):
        response = call(sim, "POST", "/key/update", json={"key": unknown, field: -1})
        assert answer(response) == detail_error(
            400, f"{field} must be a non-negative finite number. Received: -1.0", "invalid_request_error"
        )
    name = alias()
    generate(sim, key_alias=name)
    bad = call(sim, "POST", "/key/update", json={"key_alias": name, "budget_duration": "x"})
    assert answer(bad) == detail_error(
        400, "Invalid budget_duration 'x'. Use a format like '1h', '24h', '7d', or '30d'.", "invalid_request_error"
    )
    tags = call(sim, "POST", "/key/update", json={"key_alias": name, "tags": ["t"]})
    assert answer(tags) == detail_error(
        403, f"This feature is only available for LiteLLM Enterprise users: tags. {NOT_PREMIUM}", "auth_error"
    )


def test_any_budget_duration_sent_recomputes_the_reset_time(sim):
    name = alias()
    key = generate(sim, key_alias=name, budget_duration="1d", max_budget=1.0)
    token = key["token"]
    moved = datetime(2031, 1, 1)
    sim.query(f"UPDATE {TOKEN_TABLE} SET budget_reset_at = %s WHERE token = %s", (moved, token))
    call(sim, "POST", "/key/update", json={"key_alias": name, "rpm_limit": 4})
    assert stored(sim, token)["budget_reset_at"] == moved  # left alone when not sent
    call(sim, "POST", "/key/update", json={"key_alias": name, "budget_duration": "1d"})  # unchanged, yet ...
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert stored(sim, token)["budget_reset_at"] == tomorrow.replace(tzinfo=None)
    call(sim, "POST", "/key/update", json={"key_alias": name, "budget_duration": None})
    row = stored(sim, token)
    assert (row["budget_duration"], row["budget_reset_at"]) == (None, None)


def test_duration_recomputes_expiry_from_now(sim):
    name = alias()
    key = generate(sim, key_alias=name, duration="30d")
    token = key["token"]
    call(sim, "POST", "/key/update", json={"key_alias": name, "rpm_limit": 1})
    first = stored(sim, token)["expires"]
    time.sleep(0.01)
    call(sim, "POST", "/key/update", json={"key_alias": name, "duration": "30d"})
    second = stored(sim, token)["expires"]
    assert second > first  # the same duration moves the expiry
    call(sim, "POST", "/key/update", json={"key_alias": name, "duration": "1h"})
    expires = stored(sim, token)["expires"]
    assert abs((expires - datetime.now(UTC).replace(tzinfo=None)) - timedelta(hours=1)) < timedelta(seconds=30)
    for never in (None, "-1"):
        call(sim, "POST", "/key/update", json={"key_alias": name, "duration": "1h"})
        call(sim, "POST", "/key/update", json={"key_alias": name, "duration": never})
        assert stored(sim, token)["expires"] is None
    bad = call(sim, "POST", "/key/update", json={"key_alias": name, "duration": "soon"})
    assert answer(bad) == h.error(400, "Invalid duration format", "invalid_request_error")


def test_changing_max_budget_leaves_spend_alone(sim):
    name = alias()
    key = generate(sim, key_alias=name, max_budget=1.0)
    sim.query(f"UPDATE {TOKEN_TABLE} SET spend = 0.75 WHERE token = %s", (key["token"],))
    call(sim, "POST", "/key/update", json={"key_alias": name, "max_budget": 10.0})
    row = stored(sim, key["token"])
    assert (row["max_budget"], row["spend"]) == (10.0, 0.75)
    call(sim, "POST", "/key/update", json={"key_alias": name, "spend": 0})
    assert stored(sim, key["token"])["spend"] == 0


def test_soft_budget_lives_in_the_budget_table(sim):
    name = alias()
    key = generate(sim, key_alias=name, soft_budget=2.5)
    assert key["litellm_budget_table"]["soft_budget"] == 2.5
    info = call(sim, "GET", "/key/info", params={"key": key["token"]}).json()["info"]
    assert (info["litellm_budget_table"]["soft_budget"], info["budget_id"]) == (2.5, key["budget_id"])
    call(sim, "POST", "/key/update", json={"key_alias": name, "soft_budget": 4.0})
    info = call(sim, "GET", "/key/info", params={"key": key["token"]}).json()["info"]
    assert info["litellm_budget_table"]["soft_budget"] == 4.0
    # A key without one gets its budget row on update.
    plain = generate(sim, key_alias=alias())
    call(sim, "POST", "/key/update", json={"key": plain["token"], "soft_budget": 1.0})
    info = call(sim, "GET", "/key/info", params={"key": plain["token"]}).json()["info"]
    assert info["litellm_budget_table"]["soft_budget"] == 1.0


def test_update_merges_those_settings_into_the_metadata(sim):
    name = alias()
    key = generate(sim, key_alias=name, metadata={"a": 1}, model_rpm_limit={h.MODEL: 5})
    assert call(sim, "POST", "/key/update", json={"key_alias": name, **METADATA_SETTINGS}).status_code == 200
    assert stored(sim, key["token"])["metadata"] == {"a": 1, **METADATA_STORED}
    # Sent as null, a setting leaves the metadata alone; metadata sent whole replaces the stored one.
    response = call(sim, "POST", "/key/update", json={"key_alias": name, "model_rpm_limit": None})
    assert response.status_code == 200
    assert stored(sim, key["token"])["metadata"] == {"a": 1, **METADATA_STORED}
    response = call(
        sim, "POST", "/key/update", json={"key_alias": name, "metadata": {"b": 2}, "tpm_limit_type": "dynamic"}
    )
    assert response.json()["metadata"] == {"b": 2, "tpm_limit_type": "dynamic"}
    assert stored(sim, key["token"])["metadata"] == {"b": 2, "tpm_limit_type": "dynamic"}


SERVICE_ACCOUNT_NEEDS_TEAM = (
    "team_id is required for service account keys. Please specify `team_id` in the request body."
)


def test_a_service_account_key_needs_a_team(sim):
    response = call(sim, "POST", "/key/generate", json={"key_alias": alias(), "metadata": {"service_account_id": "s"}})
    assert answer(response) == h.error(400, SERVICE_ACCOUNT_NEEDS_TEAM, "invalid_request_error")
    name = alias()
    generate(sim, key_alias=name)
    response = call(sim, "POST", "/key/update", json={"key_alias": name, "metadata": {"service_account_id": "s"}})
    assert answer(response) == h.error(400, SERVICE_ACCOUNT_NEEDS_TEAM, "invalid_request_error")


def test_service_account_id_cannot_change_once_set(sim):
    name = alias()
    key = generate(sim, key_alias=name, team_id="team-a", metadata={"service_account_id": "sa-1", "a": 1})
    immutable = h.error(
        400, "service_account_id is immutable once set and cannot be changed via update.", "invalid_request_error"
    )
    for metadata in ({"service_account_id": "sa-2"}, {"service_account_id": None, "a": 1}, None):
        response = call(sim, "POST", "/key/update", json={"key_alias": name, "metadata": metadata})
        assert answer(response) == immutable, metadata
    assert stored(sim, key["token"])["metadata"] == {"service_account_id": "sa-1", "a": 1}
    # Left out or sent unchanged, it stays while the rest of the metadata is replaced.
    for metadata in ({"b": 2}, {"service_account_id": "sa-1", "b": 2}):
        response = call(sim, "POST", "/key/update", json={"key_alias": name, "metadata": metadata})
        assert response.status_code == 200, response.text
        assert stored(sim, key["token"])["metadata"] == {"service_account_id": "sa-1", "b": 2}
    assert call(sim, "POST", "/key/update", json={"key_alias": name, "rpm_limit": 4}).status_code == 200
    assert stored(sim, key["token"])["metadata"] == {"service_account_id": "sa-1", "b": 2}


# --- /key/info and /key/list ---------------------------------------------------------------------


def test_info_by_hash_or_raw_key(sim):
    name = alias()
    key = generate(sim, key_alias=name, rpm_limit=3, metadata={"m": 1})
    for query in (key["token"], key["key"]):
        response = call(sim, "GET", "/key/info", params={"key": query})
        assert response.status_code == 200
        body = response.json()
        assert body["key"] == query  # echoed as passed
        info = body["info"]
        assert "token" not in info
        assert (info["key_alias"], info["rpm_limit"], info["metadata"], info["status"]) == (name, 3, {"m": 1}, "active")
        assert (info["spend"], info["key_name"], info["litellm_budget_table"]) == (0.0, key["key_name"], None)


def test_info_of_an_unknown_key_is_404(sim):
    response = call(sim, "GET", "/key/info", params={"key": "f" * 64})
    assert answer(response) == h.error(404, "Key not found in database", "not_found_error", "key")


def test_info_status_follows_blocked_and_expires(sim):
    key = generate(sim, key_alias=alias())
    token = key["token"]

    def status() -> str:
        return call(sim, "GET", "/key/info", params={"key": token}).json()["info"]["status"]

    sim.query(f"UPDATE {TOKEN_TABLE} SET expires = %s WHERE token = %s", (datetime(2001, 1, 1), token))
    assert status() == "expired"
    call(sim, "POST", "/key/block", json={"key": token})
    assert status() == "revoked"


def test_a_deleted_key_answers_200_with_status_deleted(sim):
    name = alias()
    key = generate(sim, key_alias=name, rpm_limit=2)
    assert call(sim, "POST", "/key/delete", json={"keys": [key["token"]]}).status_code == 200
    response = call(sim, "GET", "/key/info", params={"key": key["token"]})
    assert response.status_code == 200
    info = response.json()["info"]
    assert (info["status"], info["key_alias"], info["rpm_limit"]) == ("deleted", name, 2)
    assert (info["deleted_by"], info["deleted_by_api_key"]) == ("default_user_id", "litellm_proxy_master_key")
    assert info["deleted_at"] and "token" not in info
    # The alias is free again; a new key under it is the live one.
    again = generate(sim, key_alias=name)
    assert call(sim, "GET", "/key/info", params={"key": again["token"]}).json()["info"]["status"] == "active"


def test_list_filters_exactly_and_pages(sim):
    owner = "owner-" + secrets.token_hex(4)
    keys = [generate(sim, key_alias=alias(), user_id=owner, team_id="team-a" if i else "team-b") for i in range(3)]
    tokens = [key["token"] for key in keys]
    first = call(sim, "GET", "/key/list", params={"user_id": owner, "size": 2})
    assert answer(first) == (
        200,
        {"keys": [tokens[2], tokens[1]], "total_count": 3, "current_page": 1, "total_pages": 2},
    )
    second = call(sim, "GET", "/key/list", params={"user_id": owner, "size": 2, "page": 2}).json()
    assert (second["keys"], second["current_page"]) == ([tokens[0]], 2)
    assert call(sim, "GET", "/key/list", params={"user_id": owner[:-1]}).json()["total_count"] == 0
    both = call(sim, "GET", "/key/list", params={"user_id": owner, "team_id": "team-a"}).json()
    assert both["keys"] == [tokens[2], tokens[1]]
    by_alias = call(sim, "GET", "/key/list", params={"key_alias": keys[0]["key_alias"]}).json()
    assert by_alias["keys"] == [tokens[0]]
    assert call(sim, "GET", "/key/list", params={"key_alias": keys[0]["key_alias"][:-1]}).json()["keys"] == []
    # key_hash is the hash: a raw key there matches nothing.
    assert call(sim, "GET", "/key/list", params={"key_hash": tokens[1]}).json()["keys"] == [tokens[1]]
    assert call(sim, "GET", "/key/list", params={"key_hash": keys[1]["key"]}).json()["keys"] == []


def test_list_can_return_the_full_objects(sim):
    name = alias()
    key = generate(sim, key_alias=name, rpm_limit=9, models=[h.MODEL], metadata={"managed_by": "thorfleet"})
    body = call(sim, "GET", "/key/list", params={"key_hash": key["token"], "return_full_object": "true"}).json()
    (full,) = body["keys"]
    assert (full["token"], full["key_alias"], full["rpm_limit"], full["models"]) == (key["token"], name, 9, [h.MODEL])
    assert full["metadata"] == {"managed_by": "thorfleet"}
    assert full["created_at"].endswith("Z") and "key" not in full
    by_alias = call(sim, "GET", "/key/list", params={"key_alias": name, "return_full_object": "true"}).json()
    assert [k["token"] for k in by_alias["keys"]] == [key["token"]]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"size": 0}, [["greater_than_equal", ["query", "size"], "Input should be greater than or equal to 1"]]),
        (
            {"size": 101, "page": 0},
            [
                ["greater_than_equal", ["query", "page"], "Input should be greater than or equal to 1"],
                ["less_than_equal", ["query", "size"], "Input should be less than or equal to 100"],
            ],
        ),
        (
            {"page": "x"},
            [
                [
                    "int_parsing",
                    ["query", "page"],
                    "Input should be a valid integer, unable to parse string as an integer",
                ]
            ],
        ),
        (
            {"return_full_object": "maybe"},
            [
                [
                    "bool_parsing",
                    ["query", "return_full_object"],
                    "Input should be a valid boolean, unable to interpret input",
                ]
            ],
        ),
    ],
    ids=["size-0", "page-0-size-101", "page-word", "bool"],
)
def test_list_query_errors_are_422(sim, params, detail):
    expected = [{"type": kind, "loc": loc, "msg": msg} for kind, loc, msg in detail]
    assert answer(call(sim, "GET", "/key/list", params=params)) == (422, {"detail": expected})


def test_list_size_100_is_allowed(sim):
    assert call(sim, "GET", "/key/list", params={"size": 100}).status_code == 200


# --- /key/delete, /key/block, /key/unblock, /key/regenerate --------------------------------------


def test_delete_by_keys_or_aliases(sim):
    a, b, c = (generate(sim, key_alias=alias()) for _ in range(3))
    # Raw keys and hashes alike; what was asked for is echoed, even a key that was not there.
    ghost = "sk-ghost-" + secrets.token_hex(8)
    response = call(sim, "POST", "/key/delete", json={"keys": [a["key"], b["token"], ghost]})
    assert answer(response) == (200, {"deleted_keys": [a["key"], b["token"], ghost]})
    assert sim.query(f"SELECT token FROM {TOKEN_TABLE} WHERE token = ANY(%s)", ([a["token"], b["token"]],)) == []
    archived = sim.query('SELECT token FROM "LiteLLM_DeletedVerificationToken" WHERE token = ANY(%s)', ([a["token"]],))
    assert archived == [{"token": a["token"]}]
    assert answer(complete(sim, a["key"])) == h.error(
        401, "Authentication Error, Invalid API key provided.", "token_not_found_in_db", "key"
    )
    response = call(sim, "POST", "/key/delete", json={"key_aliases": [c["key_alias"]]})
    assert answer(response) == (200, {"deleted_keys": [c["key_alias"]]})
    assert sim.query(f"SELECT token FROM {TOKEN_TABLE} WHERE token = %s", (c["token"],)) == []


def test_deleting_nothing_is_404(sim):
    for body in ({"keys": ["sk-ghost-" + secrets.token_hex(8)]}, {"key_aliases": [alias()]}):
        assert answer(call(sim, "POST", "/key/delete", json=body)) == detail_error(
            404, "No keys found", "invalid_request_error"
        )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, ["value_error", ["body"], "Value error, At least one of 'keys' or 'key_aliases' must be provided."]),
        (
            {"keys": []},
            ["value_error", ["body"], "Value error, At least one of 'keys' or 'key_aliases' must be provided."],
        ),
        ({"keys": "sk-x"}, ["list_type", ["body", "keys"], "Input should be a valid list"]),
    ],
)
def test_delete_validation_is_422(sim, body, detail):
    kind, loc, msg = detail
    assert answer(call(sim, "POST", "/key/delete", json=body)) == (
        422,
        {"detail": [{"type": kind, "loc": loc, "msg": msg}]},
    )


def test_block_and_unblock_are_repeat_safe(sim):
    key = generate(sim, key_alias=alias())
    for _ in range(2):
        response = call(sim, "POST", "/key/block", json={"key": key["key"]})
        assert response.status_code == 200 and response.json()["blocked"] is True
        assert response.json()["token"] == key["token"]
    blocked = h.error(
        401, "Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin.", "auth_error"
    )
    assert answer(complete(sim, key["key"])) == blocked
    assert answer(call(sim, "GET", "/v1/models", key=key["key"])) == blocked
    for _ in range(2):
        response = call(sim, "POST", "/key/unblock", json={"key": key["token"]})
        assert response.status_code == 200 and response.json()["blocked"] is False
    assert complete(sim, key["key"]).status_code == 200
    # Generated blocked, it is blocked from the start.
    born_blocked = generate(sim, key_alias=alias(), blocked=True)
    assert answer(complete(sim, born_blocked["key"])) == blocked


def test_block_checks_the_key_format_and_existence(sim):
    for path in ("/key/block", "/key/unblock"):
        for bad in ("ab", "sk-has.dot", "not-a-hash"):
            assert answer(call(sim, "POST", path, json={"key": bad})) == h.error(
                400, "Invalid key format.", "bad_request_error", "key"
            )
        assert answer(call(sim, "POST", path, json={"key": "sk-ghost-" + secrets.token_hex(8)})) == h.error(
            404, "Key not found.", "not_found_error", "key"
        )
        assert answer(call(sim, "POST", path, json={})) == (
            422,
            {"detail": [{"type": "missing", "loc": ["body", "key"], "msg": "Field required"}]},
        )


@pytest.mark.parametrize("path", ["/key/regenerate", "/key/sk-some-key-0123456789/regenerate"])
def test_regenerate_needs_an_enterprise_licence(sim, path):
    key = generate(sim, key_alias=alias())
    response = call(sim, "POST", path, json={"key": key["key"]})
    assert answer(response) == h.error(
        500, f"Regenerating Virtual Keys is an Enterprise feature, {NOT_PREMIUM}", "internal_server_error"
    )


# --- what a virtual key may do -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/key/generate"),
        ("POST", "/key/update"),
        ("POST", "/key/delete"),
        ("POST", "/key/block"),
        ("POST", "/key/unblock"),
        ("POST", "/key/regenerate"),
        ("GET", "/spend/logs"),
        ("GET", "/global/spend/keys"),
    ],
)
def test_a_virtual_key_cannot_manage_keys(sim, method, path):
    key = generate(sim, key_alias=alias())
    response = call(sim, method, path, key=key["key"], json={"key": key["key"], "keys": [key["key"]]})
    assert answer(response) == h.error(
        401,
        "Authentication Error, Only proxy admin can be used to generate, delete, update info for new "
        f"keys/users/teams. Route={path}. Your role=unknown. Your user_id=*******",
        "auth_error",
    )


def test_a_virtual_key_reads_its_own_info_but_not_others_and_cannot_list(sim):
    mine = generate(sim, key_alias=alias(), user_id="u-" + secrets.token_hex(3))
    theirs = generate(sim, key_alias=alias(), user_id="v-" + secrets.token_hex(3))
    own = call(sim, "GET", "/key/info", key=mine["key"])  # no ?key=: its own
    assert (own.status_code, own.json()["key"], own.json()["info"]["key_alias"]) == (
        200,
        mine["token"],
        mine["key_alias"],
    )
    assert call(sim, "GET", "/key/info", key=mine["key"], params={"key": mine["token"]}).status_code == 200
    other = call(sim, "GET", "/key/info", key=mine["key"], params={"key": theirs["token"]})
    assert answer(other) == h.error(403, "You are not allowed to access this key's info. Your role=None", "auth_error")
    listing = call(sim, "GET", "/key/list", key=mine["key"])
    assert answer(listing) == h.error(
        403,
        "You are not authorized to access this endpoint. No 'user_id' is associated with your API key.",
        "bad_request_error",
        "user_id",
    )


# --- keys on the completion endpoints ------------------------------------------------------------


def test_an_expired_key_is_401(sim):
    key = generate(sim, key_alias=alias(), duration="1h")
    assert complete(sim, key["key"]).status_code == 200
    past = datetime(2020, 5, 17, 8, 30, 0, 123000)
    sim.query(f"UPDATE {TOKEN_TABLE} SET expires = %s WHERE token = %s", (past, key["token"]))
    for response in (complete(sim, key["key"]), call(sim, "GET", "/v1/models", key=key["key"])):
        status, body = answer(response)
        assert (status, body["error"]["type"], body["error"]["param"]) == (
            401,
            "expired_key",
            f"sk-...{key['key'][-4:]}",
        )
        message = body["error"]["message"]
        assert message.startswith(
            "Authentication Error - Expired Key. Key Expiry time 2020-05-17 08:30:00.123000+00:00 and current time "
        )
        assert datetime.fromisoformat(message.rsplit("current time ", 1)[1]) > past.replace(tzinfo=UTC)


def test_a_key_calls_only_its_models(sim):
    key = generate(sim, key_alias=alias(), models=[h.MODEL])
    assert complete(sim, key["key"]).status_code == 200
    denied = complete(sim, key["key"], model=h.DEAD_MODEL)
    assert answer(denied) == h.error(
        403,
        f"The requested model '{h.DEAD_MODEL}' is not available for this API key, or the model name is invalid. "
        "Check the models available to you and try again.",
        "key_model_access_denied",
        "model",
    )
    listing = call(sim, "GET", "/v1/models", key=key["key"]).json()
    assert [m["id"] for m in listing["data"]] == [h.MODEL]
    # Patterns and "all-proxy-models" open the gate.
    for models in (["tiny-*"], ["all-proxy-models"], ["*"]):
        assert complete(sim, generate(sim, key_alias=alias(), models=models)["key"]).status_code == 200


def test_over_budget_is_422(sim):
    key = generate(sim, key_alias=alias(), max_budget=0.000001)
    first = complete(sim, key["key"])  # spend 0 < budget: allowed, and it costs more than the budget
    assert first.status_code == 200
    spend = h.expected_spend(first.json()["usage"])
    assert stored(sim, key["token"])["spend"] == pytest.approx(spend)
    over = complete(sim, key["key"])
    message = f"Budget has been exceeded! Key={key['key_alias']} ({key['key_name']}) Current cost: "
    status, body = answer(over)
    assert (status, body["error"]["type"], body["error"]["code"], body["error"]["param"]) == (
        422,
        "budget_exceeded",
        "422",
        None,
    )
    assert body["error"]["message"].startswith(message)
    assert body["error"]["message"].endswith(", Max budget: 1e-06")
    # Model listing is not an LLM call: no budget there.
    assert call(sim, "GET", "/v1/models", key=key["key"]).status_code == 200
    # Raising the budget lets the key work again; its spend stays.
    call(sim, "POST", "/key/update", json={"key": key["token"], "max_budget": 1.0})
    assert complete(sim, key["key"]).status_code == 200


def test_a_budget_duration_resets_spend_once_the_window_ends(sim):
    key = generate(sim, key_alias=alias(), max_budget=0.001, budget_duration="1h")
    token = key["token"]
    sim.query(
        f"UPDATE {TOKEN_TABLE} SET spend = 5, total_spend = 5, budget_reset_at = %s WHERE token = %s",
        (datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1), token),
    )
    response = complete(sim, key["key"])
    assert response.status_code == 200, response.text
    row = stored(sim, token)
    assert row["spend"] == pytest.approx(h.expected_spend(response.json()["usage"]))
    next_hour = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    assert row["budget_reset_at"] == next_hour.replace(tzinfo=None)
    assert row["total_spend"] == pytest.approx(5 + row["spend"])  # the lifetime total is not reset


def throttled(response: requests.Response, limit_type: str, limit: int, token: str) -> None:
    status, body = answer(response)
    assert (status, body["error"]["type"], body["error"]["code"], body["error"]["param"]) == (
        429,
        "throttling_error",
        "429",
        None,
    )
    assert response.headers["retry-after"] == "60"
    assert response.headers["rate_limit_type"] == limit_type
    message = body["error"]["message"]
    prefix = f"Rate limit exceeded for api_key: {token}. Limit type: {limit_type}. Current limit: {limit}, Remaining: "
    assert message.startswith(prefix), message
    assert re.fullmatch(r"\d+\. Limit resets at: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", message[len(prefix) :])
    assert message.endswith(response.headers["reset_at"])


def test_rpm_limit_is_429_with_retry_after(sim):
    key = generate(sim, key_alias=alias(), rpm_limit=2)
    assert [complete(sim, key["key"]).status_code for _ in range(2)] == [200, 200]
    throttled(complete(sim, key["key"]), "requests", 2, key["token"])
    # Per key: another key and the master key are not held back.
    assert complete(sim, generate(sim, key_alias=alias(), rpm_limit=2)["key"]).status_code == 200
    assert complete(sim, h.MASTER_KEY).status_code == 200
    # Raising the limit takes effect at once.
    call(sim, "POST", "/key/update", json={"key": key["token"], "rpm_limit": 10})
    assert complete(sim, key["key"]).status_code == 200


def test_tpm_limit_is_429(sim):
    # Each request reserves 1 (7 characters / 4) + 5 (max_tokens) tokens and uses 7.
    key = generate(sim, key_alias=alias(), tpm_limit=20)
    assert [complete(sim, key["key"]).status_code for _ in range(3)] == [200, 200, 200]
    throttled(complete(sim, key["key"]), "tokens", 20, key["token"])


def test_max_parallel_requests_is_429_while_a_request_is_in_flight(sim):
    key = generate(sim, key_alias=alias(), max_parallel_requests=1)
    started = threading.Event()
    results: list[int] = []

    def slow_stream() -> None:
        body = h.chat_body(True, True, max_tokens=30)  # 0.75 s at 40 tokens/s
        with h.http().post(sim.url + "/chat/completions", headers=h.auth(key["key"]), json=body, stream=True) as r:
            events = h.stream_events(r)
            next(events)
            started.set()
            results.append(len(list(events)))

    worker = threading.Thread(target=slow_stream)
    worker.start()
    assert started.wait(10)
    throttled(complete(sim, key["key"]), "max_parallel_requests", 1, key["token"])
    worker.join(10)
    assert results and results[0] > 0
    assert complete(sim, key["key"]).status_code == 200  # the slot was given back


def test_spend_and_tokens_accrue_per_key_and_are_reported(sim):
    first, second = generate(sim, key_alias=alias()), generate(sim, key_alias=alias())
    usages = {first["token"]: [], second["token"]: []}
    for key, times in ((first, 2), (second, 1)):
        for _ in range(times):
            response = complete(sim, key["key"])
            usages[key["token"]].append(response.json()["usage"])
    for token, usage in usages.items():
        row = stored(sim, token)
        assert row["spend"] == pytest.approx(sum(h.expected_spend(u) for u in usage))
        assert row["last_active"] is not None
        logs = sim.query('SELECT * FROM "LiteLLM_SpendLogs" WHERE api_key = %s', (token,))
        assert sum(r["total_tokens"] for r in logs) == sum(u["total_tokens"] for u in usage)
    # /spend/logs by raw key or hash, newest first.
    for api_key in (first["key"], first["token"]):
        logs = call(sim, "GET", "/spend/logs", params={"api_key": api_key}).json()
        assert [r["api_key"] for r in logs] == [first["token"]] * 2
        assert logs[0]["startTime"] >= logs[1]["startTime"] and logs[0]["startTime"].endswith("Z")
    request_id = logs[0]["request_id"]
    assert [r["request_id"] for r in call(sim, "GET", "/spend/logs", params={"request_id": request_id}).json()] == [
        request_id
    ]
    # /global/spend/keys: the last 30 days by key, with the keys' names.
    by_key = {r["api_key"]: r for r in call(sim, "GET", "/global/spend/keys").json()}
    assert by_key[first["token"]]["key_alias"] == first["key_alias"]
    assert by_key[first["token"]]["total_spend"] == pytest.approx(stored(sim, first["token"])["spend"])
    top = call(sim, "GET", "/global/spend/keys", params={"limit": 1}).json()
    assert len(top) == 1
    bad = call(sim, "GET", "/global/spend/keys", params={"limit": 0})
    assert answer(bad) == (422, {"detail": {"error": "Invalid limit: 0, error: Limit must be greater than 0"}})


# --- persistence ---------------------------------------------------------------------------------


def test_a_restarted_litellm_sim_keeps_keys_spend_and_limits(postgres, backend, tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with h.database(postgres) as url:
        with h.litellm_sim(tmp_path / "one", backend, url) as first:
            key = generate(first, key_alias="persist", rpm_limit=2, max_budget=1.0, metadata={"m": 1})
            used = complete(first, key["key"]).json()["usage"]
            complete(first, key["key"])
            throttled(complete(first, key["key"]), "requests", 2, key["token"])
            call(first, "POST", "/key/delete", json={"keys": [generate(first, key_alias="gone")["token"]]})
        with h.litellm_sim(tmp_path / "two", backend, url) as second:
            info = call(second, "GET", "/key/info", params={"key": key["token"]}).json()["info"]
            assert (info["key_alias"], info["rpm_limit"], info["metadata"]) == ("persist", 2, {"m": 1})
            assert info["spend"] == pytest.approx(2 * h.expected_spend(used))
            # Rate-limit windows live in memory, as in LiteLLM without Redis: a fresh start, fresh window.
            assert complete(second, key["key"]).status_code == 200
            assert (
                call(second, "GET", "/key/list", params={"key_alias": "gone", "status": "deleted"}).json()[
                    "total_count"
                ]
                == 1
            )
            duplicate = call(second, "POST", "/key/generate", json={"key_alias": "persist"})
            assert duplicate.status_code == 400


# The key table as the litellm-sim before key management made it (units keep their volumes).
OLD_TOKEN_TABLE = """
CREATE TABLE "LiteLLM_VerificationToken" (
    token TEXT PRIMARY KEY, key_name TEXT, key_alias TEXT, spend DOUBLE PRECISION NOT NULL DEFAULT 0,
    expires TIMESTAMP(3), models TEXT[] NOT NULL DEFAULT '{}', aliases JSONB NOT NULL DEFAULT '{}',
    config JSONB NOT NULL DEFAULT '{}', user_id TEXT, team_id TEXT, permissions JSONB NOT NULL DEFAULT '{}',
    max_parallel_requests INTEGER, metadata JSONB NOT NULL DEFAULT '{}', blocked BOOLEAN, tpm_limit BIGINT,
    rpm_limit BIGINT, max_budget DOUBLE PRECISION, budget_duration TEXT, budget_reset_at TIMESTAMP(3),
    model_spend JSONB NOT NULL DEFAULT '{}', created_at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP, created_by TEXT,
    updated_at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP, updated_by TEXT, last_active TIMESTAMP(3)
);
"""


def test_a_database_made_by_an_older_litellm_sim_gains_the_new_columns(postgres, backend, tmp_path):
    raw = "sk-old-" + secrets.token_hex(8)
    with h.database(postgres) as url:
        old = h.Sim("", url, tmp_path / "unused.log", None)
        old.query(OLD_TOKEN_TABLE)
        old.query(
            f"INSERT INTO {TOKEN_TABLE} (token, key_name, key_alias, rpm_limit) VALUES (%s, %s, 'old', 1)",
            (sha(raw), f"sk-...{raw[-4:]}"),
        )
        with h.litellm_sim(tmp_path, backend, url) as running:
            info = call(running, "GET", "/key/info", params={"key": sha(raw)}).json()["info"]
            assert (info["key_alias"], info["rpm_limit"], info["total_spend"], info["policies"]) == ("old", 1, 0.0, [])
            assert complete(running, raw).status_code == 200
            assert generate(running, key_alias="new", soft_budget=1.0)["litellm_budget_table"]["soft_budget"] == 1.0

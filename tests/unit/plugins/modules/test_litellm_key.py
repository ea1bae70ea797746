"""thorfleet.llm.litellm_key, run as Ansible runs it, against an in-process fake of LiteLLM's admin API.

Every test checks the requests the module sent (method, path, query, body), not only its result. No raw
key may ever appear in a URL or in the module's output, except a key LiteLLM generated in that run.
"""

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm_keys import SETTINGS
from ansible_collections.thorfleet.llm.plugins.modules import litellm_key

from ..docs import assert_documented
from ..litellm_fake import API_URL, MASTER_KEY, refused, sha256, timed_out

ALICE = "sk-alice-0123456789abcdefXYZ"
BOB = "sk-bob-0123456789abcdefghijk"
MARK = {"thorfleet_managed": True}
ALIAS_QUERY = {"return_full_object": "true", "page": "1", "size": "100"}

FULL = dict(
    models=["qwen", "llama"],
    rpm_limit=10,
    tpm_limit=50000,
    max_parallel_requests=2,
    max_budget=5.0,
    soft_budget=4.0,
    budget_duration="30d",
    duration="30d",
    metadata={"email": "alice@example.com", "unit": "thor-01"},
    user_id="alice-id",
    team_id="workshop",
    blocked=False,
)


@pytest.fixture(autouse=True)
def no_raw_key_in_any_url(fake):
    yield
    for sent in fake.requests:
        assert "sk-" not in sent.url, sent.url


def assert_no_secret_in(result, fake, allowed=()):
    """No raw key in the module's output (the master key, supplied keys, keys LiteLLM holds)."""
    for secret in {MASTER_KEY, *fake.raw_keys} - set(allowed):
        assert secret not in result["_raw"], "a raw key leaked into the module's output"


def warnings_of(result):
    """Warning texts (ansible-core 2.19 returns them as structured WarningSummary objects)."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


def requests(fake):
    return [(r.method, r.path, r.query or None, r.body) for r in fake.requests]


# --- create ---------------------------------------------------------------------------------------------


def test_create_without_a_key_lets_litellm_generate_it(run_module, fake):
    result = run_module({"key_alias": "alice", **FULL})
    assert result["changed"] is True
    assert result["action"] == "created"
    raw = result["key"]
    assert raw.startswith("sk-") and raw in fake.raw_keys
    assert result["token"] == sha256(raw) == fake.row("alice")["token"]
    body = {"key_alias": "alice", **FULL, "metadata": {**FULL["metadata"], **MARK}}
    assert requests(fake) == [
        ("GET", "/key/list", {"key_alias": "alice", **ALIAS_QUERY}, None),
        ("POST", "/key/generate", None, body),
    ]
    assert result["changed_fields"] == sorted(field for field in body)
    info = result["key_info"]
    assert (info["token"], info["key_alias"], info["rpm_limit"], info["soft_budget"]) == (
        result["token"],
        "alice",
        10,
        4.0,
    )
    assert info["duration"] == "30d" and info["expires"]
    assert "key" not in info
    assert_no_secret_in(result, fake, allowed={raw})


def test_create_with_a_supplied_key_looks_it_up_by_hash_first(run_module, fake):
    result = run_module({"key_alias": "alice", "key": ALICE, "rpm_limit": 10})
    assert (result["changed"], result["action"], result["token"]) == (True, "created", sha256(ALICE))
    assert "key" not in result  # the caller holds it; Ansible would mask it anyway
    assert requests(fake) == [
        ("GET", "/key/info", {"key": sha256(ALICE)}, None),
        ("GET", "/key/list", {"key_alias": "alice", **ALIAS_QUERY}, None),
        ("POST", "/key/generate", None, {"key_alias": "alice", "key": ALICE, "rpm_limit": 10, "metadata": MARK}),
    ]
    assert fake.row("alice")["token"] == sha256(ALICE)
    assert result["key_info"]["key_name"] == "sk-..." + ALICE[-4:]
    assert_no_secret_in(result, fake)


def test_a_minimal_key_sends_only_the_alias_and_the_marker(run_module, fake):
    run_module({"key_alias": "alice"})
    assert fake.calls("POST", "/key/generate")[0].body == {"key_alias": "alice", "metadata": MARK}


# --- no-op ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("supplied", [False, True])
def test_the_second_run_changes_nothing(run_module, fake, supplied):
    args = {"key_alias": "alice", **FULL, **({"key": ALICE} if supplied else {})}
    first = run_module(args)
    fake.requests.clear()
    second = run_module(args)
    assert (second["changed"], second["action"], second["changed_fields"]) == (False, "unchanged", [])
    assert second["token"] == first["token"]
    assert fake.mutations() == []
    expected = [("GET", "/key/info")] if supplied else [("GET", "/key/list")]
    assert [(r.method, r.path) for r in fake.requests] == expected
    assert "key" not in second
    assert_no_secret_in(second, fake)


def test_no_change_when_models_differ_only_in_order_and_numbers_in_type(run_module, fake):
    fake.add_key(ALICE, key_alias="alice", models=["b", "a"], max_budget=5, metadata=MARK)
    result = run_module({"key_alias": "alice", "models": ["a", "b"], "max_budget": 5.0})
    assert result["changed"] is False
    assert fake.mutations() == []


def test_soft_budget_is_read_from_the_budget_table(run_module, fake):
    run_module({"key_alias": "alice", "soft_budget": 4.0})
    assert fake.row("alice")["litellm_budget_table"] == {"soft_budget": 4.0}
    assert "soft_budget" not in fake.row("alice")
    assert run_module({"key_alias": "alice", "soft_budget": 4.0})["changed"] is False


def test_unblocked_matches_a_key_that_was_never_blocked(run_module, fake):
    fake.add_key(ALICE, key_alias="alice", blocked=None, metadata=MARK)
    assert run_module({"key_alias": "alice", "blocked": False})["changed"] is False


# --- update ---------------------------------------------------------------------------------------------

CHANGES = [
    ("models", ["qwen"]),
    ("rpm_limit", 20),
    ("tpm_limit", 1000),
    ("max_parallel_requests", 5),
    ("max_budget", 7.5),
    ("soft_budget", 1.0),
    ("budget_duration", "7d"),
    ("metadata", {"email": "alice@example.org"}),
    ("user_id", "alice-2"),
    ("team_id", "organisers"),
    ("blocked", True),
]


@pytest.mark.parametrize(("field", "value"), CHANGES)
def test_update_sends_only_the_field_that_differs(run_module, fake, field, value):
    run_module({"key_alias": "alice", "key": ALICE, **FULL})
    fake.requests.clear()
    result = run_module({"key_alias": "alice", "key": ALICE, **dict(FULL, **{field: value})})
    assert (result["changed"], result["action"], result["changed_fields"]) == (True, "updated", [field])
    sent = {**MARK, **value} if field == "metadata" else value
    assert requests(fake) == [
        ("GET", "/key/info", {"key": sha256(ALICE)}, None),
        ("POST", "/key/update", None, {"key": sha256(ALICE), field: sent}),
    ]
    assert result["key_info"][field] == sent
    stored = fake.row("alice")
    assert (stored["litellm_budget_table"]["soft_budget"] if field == "soft_budget" else stored[field]) == sent
    assert fake.expiry_moves[sha256(ALICE)] == 1  # duration never resent
    assert fake.budget_window_restarts[sha256(ALICE)] == (2 if field == "budget_duration" else 1)
    assert run_module({"key_alias": "alice", "key": ALICE, **dict(FULL, **{field: value})})["changed"] is False


def test_update_finds_the_key_by_alias_and_updates_it_by_hash(run_module, fake):
    raw = run_module({"key_alias": "alice", "rpm_limit": 1})["key"]
    fake.requests.clear()
    result = run_module({"key_alias": "alice", "rpm_limit": 2, "tpm_limit": 3})
    assert result["changed_fields"] == ["rpm_limit", "tpm_limit"]
    assert requests(fake) == [
        ("GET", "/key/list", {"key_alias": "alice", **ALIAS_QUERY}, None),
        ("POST", "/key/update", None, {"key": sha256(raw), "rpm_limit": 2, "tpm_limit": 3}),
    ]
    assert "key" not in result


def test_an_unchanged_budget_duration_is_never_resent(run_module, fake):
    run_module({"key_alias": "alice", "budget_duration": "30d", "max_budget": 5.0})
    reset_at = fake.row("alice")["budget_reset_at"]
    run_module({"key_alias": "alice", "budget_duration": "30d", "max_budget": 9.0})
    update = fake.calls("POST", "/key/update")[0].body
    assert "budget_duration" not in update and update["max_budget"] == 9.0
    assert fake.row("alice")["budget_reset_at"] == reset_at
    assert fake.budget_window_restarts[fake.row("alice")["token"]] == 1


def test_duration_is_never_sent_to_an_existing_key(run_module, fake):
    run_module({"key_alias": "alice", "duration": "30d"})
    expires = fake.row("alice")["expires"]
    result = run_module({"key_alias": "alice", "duration": "90d", "rpm_limit": 4})
    assert fake.calls("POST", "/key/update")[0].body.keys() == {"key", "rpm_limit"}
    assert fake.row("alice")["expires"] == expires
    assert "duration" not in result["changed_fields"]
    assert warnings_of(result) == []


def test_duration_on_a_key_that_never_expires_is_reported(run_module, fake):
    fake.add_key(ALICE, key_alias="alice", metadata=MARK)
    result = run_module({"key_alias": "alice", "duration": "30d"})
    assert result["changed"] is False
    assert fake.mutations() == []
    assert any("duration applies only when a key is created" in warning for warning in warnings_of(result))


def test_an_end_time_ends_the_key_then_and_a_second_run_changes_nothing(run_module, fake):
    end = (datetime.now(timezone.utc) + timedelta(hours=3)).replace(microsecond=0)  # noqa: UP017 - as the module
    result = run_module({"key_alias": "alice", "expires": end.isoformat()})
    assert result["action"] == "created"
    (generate,) = fake.calls("POST", "/key/generate")
    assert generate.body["duration"] in {f"{3 * 3600 - lag}s" for lag in range(3)} and "expires" not in generate.body
    stored = datetime.fromisoformat(fake.row("alice")["expires"])
    assert abs(stored - end) < timedelta(seconds=3)
    assert result["key_info"]["expires"] == fake.row("alice")["expires"]  # as LiteLLM stored it
    again = run_module({"key_alias": "alice", "expires": end.isoformat()})
    assert (again["changed"], fake.calls("POST", "/key/update")) == (False, [])


def test_a_moved_end_time_moves_the_keys_end(run_module, fake):
    end = datetime.now(timezone.utc) + timedelta(hours=3)  # noqa: UP017 - as the module
    run_module({"key_alias": "alice", "expires": end.isoformat()})
    later = end + timedelta(minutes=30)
    result = run_module({"key_alias": "alice", "expires": later.isoformat()}, diff=True)
    assert (result["action"], result["changed_fields"]) == ("updated", ["expires"])
    (update,) = fake.calls("POST", "/key/update")
    assert update.body.keys() == {"key", "duration"}
    assert abs(datetime.fromisoformat(fake.row("alice")["expires"]) - later) < timedelta(seconds=3)
    assert result["diff"]["after"]["expires"] == later.isoformat()


def test_an_expired_key_is_reported(run_module, fake):
    fake.add_key(ALICE, key_alias="alice", metadata=MARK)
    fake.row("alice")["expires"] = "2020-01-01T00:00:00+00:00"
    result = run_module({"key_alias": "alice"})
    assert any("expired at 2020-01-01" in warning for warning in warnings_of(result))


def test_metadata_is_sent_whole(run_module, fake):
    fake.add_key(ALICE, key_alias="alice", metadata={"email": "a@x", "unit": "thor-01", "old": 1, **MARK})
    run_module({"key_alias": "alice", "metadata": {"email": "a@x", "unit": "thor-02"}})
    assert fake.calls("POST", "/key/update")[0].body == {
        "key": sha256(ALICE),
        "metadata": {"email": "a@x", "unit": "thor-02", **MARK},
    }
    assert fake.row("alice")["metadata"] == {"email": "a@x", "unit": "thor-02", **MARK}


def test_metadata_litellm_keeps_for_itself_is_carried_over(run_module, fake):
    stored = {"service_account_id": "sa-1", "model_rpm_limit": {"qwen": 5}, "email": "old", **MARK}
    fake.add_key(ALICE, key_alias="alice", metadata=stored)
    run_module({"key_alias": "alice", "metadata": {"email": "new"}})
    sent = fake.calls("POST", "/key/update")[0].body["metadata"]
    assert sent == {"service_account_id": "sa-1", "model_rpm_limit": {"qwen": 5}, "email": "new", **MARK}
    assert run_module({"key_alias": "alice", "metadata": {"email": "new"}})["changed"] is False


# LiteLLM 1.109.1, litellm/proxy/_types.py: LiteLLM_ManagementEndpoint_MetadataFields, ..._Premium and
# LiteLLM_Reserved_Metadata_Fields: what the proxy keeps in a key's metadata for itself.
LITELLM_METADATA_FIELDS = [
    *("model_rpm_limit", "model_tpm_limit", "model_itpm_limit", "model_otpm_limit", "default_estimated_output_tokens"),
    *("default_estimated_output_tokens_per_model", "mcp_rpm_limit", "tag_rpm_limit", "rpm_limit_type"),
    *(
        "tpm_limit_type",
        "enforced_params",
        "temp_budget_increase",
        "temp_budget_expiry",
        "allowed_vector_store_indexes",
    ),
    *("enforced_batch_output_expires_after", "enforced_file_expires_after", "throttle_on_budget_exceeded"),
    *("enable_prompt_caching", "end_user_budget_id", "require_trace_id"),
    *("disable_global_guardrails", "guardrails", "policies", "tags", "team_member_key_duration", "prompts"),
    *("logging", "secret_manager_settings", "allowed_passthrough_routes", "denied_passthrough_routes"),
    "service_account_id",
]


def test_every_metadata_field_litellm_keeps_is_carried_over(run_module, fake):
    kept = {name: f"{name}-value" for name in LITELLM_METADATA_FIELDS}
    fake.add_key(ALICE, key_alias="alice", metadata={**kept, "email": "old", **MARK})
    run_module({"key_alias": "alice", "metadata": {"email": "new"}})
    assert fake.calls("POST", "/key/update")[0].body["metadata"] == {**kept, "email": "new", **MARK}
    assert run_module({"key_alias": "alice", "metadata": {"email": "new"}})["changed"] is False


def test_omitted_metadata_is_left_alone_except_for_the_marker(run_module, fake):
    fake.add_key(ALICE, key_alias="alice", metadata={"set": "elsewhere"})
    result = run_module({"key_alias": "alice"})
    assert result["changed_fields"] == ["metadata"]
    assert fake.calls("POST", "/key/update")[0].body["metadata"] == {"set": "elsewhere", **MARK}
    assert run_module({"key_alias": "alice"})["changed"] is False


def test_a_supplied_key_found_under_another_alias_is_renamed(run_module, fake):
    fake.add_key(ALICE, key_alias="alice-old", metadata=MARK)
    result = run_module({"key_alias": "alice", "key": ALICE})
    assert (result["action"], result["changed_fields"]) == ("updated", ["key_alias"])
    assert requests(fake)[1:] == [
        ("GET", "/key/list", {"key_alias": "alice", **ALIAS_QUERY}, None),
        ("POST", "/key/update", None, {"key": sha256(ALICE), "key_alias": "alice"}),
    ]
    assert fake.row("alice")["token"] == sha256(ALICE)


# --- alias conflicts and a lost database ----------------------------------------------------------------


def test_alias_conflict_fails_and_names_the_alias(run_module, fake):
    other = fake.add_key(key_alias="alice", metadata=MARK)
    result = run_module({"key_alias": "alice", "key": ALICE, "rpm_limit": 5})
    assert result["failed"] is True
    assert "alias conflict" in result["msg"] and "'alice'" in result["msg"]
    assert "alias_conflict=replace" in result["msg"]
    assert fake.mutations() == []
    assert fake.row("alice")["token"] == sha256(other)
    assert_no_secret_in(result, fake)


def test_alias_conflict_on_rename_fails(run_module, fake):
    fake.add_key(ALICE, key_alias="alice-old", metadata=MARK)
    fake.add_key(key_alias="alice", metadata=MARK)
    result = run_module({"key_alias": "alice", "key": ALICE})
    assert result["failed"] is True and "'alice'" in result["msg"]
    assert fake.mutations() == []


def test_alias_conflict_replace_deletes_the_other_key_and_stores_the_supplied_one(run_module, fake):
    other = fake.add_key(key_alias="alice", metadata=MARK)
    result = run_module({"key_alias": "alice", "key": ALICE, "alias_conflict": "replace"})
    assert (result["changed"], result["action"]) == (True, "created")
    assert [(r.method, r.path, r.body) for r in fake.mutations()] == [
        ("POST", "/key/delete", {"keys": [sha256(other)]}),
        ("POST", "/key/generate", {"key_alias": "alice", "key": ALICE, "metadata": MARK}),
    ]
    assert fake.row("alice")["token"] == sha256(ALICE)
    assert any("replaced" in warning for warning in warnings_of(result))


def test_a_wiped_database_gets_the_same_key_back(run_module, fake):
    args = {"key_alias": "alice", "key": ALICE, "rpm_limit": 10, "budget_duration": "7d"}
    first = run_module(args)
    fake.wipe()
    fake.requests.clear()
    second = run_module(args)
    assert (second["changed"], second["action"], second["token"]) == (True, "created", first["token"])
    assert fake.calls("POST", "/key/generate")[0].body["key"] == ALICE
    assert fake.row("alice")["token"] == sha256(ALICE)


def test_a_deleted_key_counts_as_absent(run_module, fake):
    run_module({"key_alias": "alice", "key": ALICE})
    run_module({"key_alias": "alice", "state": "absent"})
    fake.requests.clear()
    result = run_module({"key_alias": "alice", "key": ALICE})
    assert result["action"] == "created"
    assert [r.path for r in fake.requests] == ["/key/info", "/key/list", "/key/generate"]


def test_several_keys_with_one_alias_fail_without_a_raw_key(run_module, fake):
    fake.add_key(key_alias="alice")
    fake.add_key(key_alias="alice")
    result = run_module({"key_alias": "alice", "rpm_limit": 1})
    assert result["failed"] is True and "2 keys carry key_alias 'alice'" in result["msg"]
    assert fake.mutations() == []


def test_a_retried_generate_that_had_arrived_is_not_an_error(run_module, fake):
    # The first POST reached the proxy but its answer was lost; the retry meets the alias it created.
    fake.fail("POST", "/key/generate", exception=timed_out(), after_processing=True)
    result = run_module({"key_alias": "alice", "key": ALICE, "rpm_limit": 3})
    assert (result["changed"], result["action"], result["token"]) == (True, "created", sha256(ALICE))
    assert len(fake.calls("POST", "/key/generate")) == 2
    assert fake.calls("GET", "/key/info")[-1].query == {"key": sha256(ALICE)}


def test_a_generate_without_a_custom_key_is_not_resent_after_a_timeout(run_module, fake):
    fake.fail("POST", "/key/generate", exception=timed_out(), after_processing=True)
    result = run_module({"key_alias": "alice"})
    assert result["failed"] is True and result["status"] is None
    assert len(fake.calls("POST", "/key/generate")) == 1


# --- absent ---------------------------------------------------------------------------------------------


def test_absent_deletes_the_key_by_hash(run_module, fake):
    raw = run_module({"key_alias": "alice"})["key"]
    fake.requests.clear()
    result = run_module({"key_alias": "alice", "state": "absent"})
    assert (result["changed"], result["action"], result["token"]) == (True, "deleted", sha256(raw))
    assert requests(fake)[1:] == [("POST", "/key/delete", None, {"keys": [sha256(raw)]})]
    assert fake.keys == {}
    assert result["key_info"] == {}


def test_absent_with_a_supplied_key(run_module, fake):
    fake.add_key(ALICE, key_alias="alice")
    result = run_module({"key_alias": "alice", "key": ALICE, "state": "absent"})
    assert result["action"] == "deleted"
    assert requests(fake) == [
        ("GET", "/key/info", {"key": sha256(ALICE)}, None),
        ("POST", "/key/delete", None, {"keys": [sha256(ALICE)]}),
    ]


def test_absent_when_already_absent(run_module, fake):
    result = run_module({"key_alias": "alice", "key": ALICE, "state": "absent"})
    assert (result["changed"], result["action"], result["token"]) == (False, "unchanged", sha256(ALICE))
    assert fake.mutations() == []


# --- check mode and diff --------------------------------------------------------------------------------


def test_check_mode_create_returns_the_would_be_key(run_module, fake):
    result = run_module({"key_alias": "alice", "key": ALICE, **FULL}, check=True)
    assert (result["changed"], result["action"], result["token"]) == (True, "created", sha256(ALICE))
    info = result["key_info"]
    assert info["token"] == sha256(ALICE)
    assert {
        field: info[field] for field in ("models", "rpm_limit", "max_budget", "soft_budget", "budget_duration")
    } == {field: FULL[field] for field in ("models", "rpm_limit", "max_budget", "soft_budget", "budget_duration")}
    assert info["metadata"] == {**FULL["metadata"], **MARK}
    assert info["duration"] == "30d"
    assert fake.mutations() == []
    assert fake.keys == {}
    assert_no_secret_in(result, fake)


def test_check_mode_create_without_a_key(run_module, fake):
    result = run_module({"key_alias": "alice"}, check=True)
    assert (result["changed"], result["token"], result["key_info"]["key_alias"]) == (True, None, "alice")
    assert "key" not in result
    assert fake.mutations() == []


def test_check_mode_update_returns_the_would_be_key(run_module, fake):
    run_module({"key_alias": "alice", "key": ALICE, "rpm_limit": 1, "metadata": {"a": 1}})
    fake.requests.clear()
    result = run_module({"key_alias": "alice", "key": ALICE, "rpm_limit": 2, "metadata": {"a": 2}}, check=True)
    assert (result["changed"], result["action"], result["changed_fields"]) == (
        True,
        "updated",
        ["metadata", "rpm_limit"],
    )
    assert (result["key_info"]["rpm_limit"], result["key_info"]["metadata"]) == (2, {"a": 2, **MARK})
    assert fake.mutations() == []
    assert fake.row("alice")["rpm_limit"] == 1


def test_check_mode_absent_and_replace_change_nothing(run_module, fake):
    fake.add_key(key_alias="alice", metadata=MARK)
    assert run_module({"key_alias": "alice", "state": "absent"}, check=True)["action"] == "deleted"
    result = run_module({"key_alias": "alice", "key": ALICE, "alias_conflict": "replace"}, check=True)
    assert result["action"] == "created"
    assert fake.mutations() == []
    assert len(fake.keys) == 1


def test_diff_shows_before_and_after_without_raw_keys(run_module, fake):
    created = run_module({"key_alias": "alice", "key": ALICE, "rpm_limit": 1}, diff=True)
    assert created["diff"]["before"] == {}
    assert created["diff"]["after"]["rpm_limit"] == 1
    updated = run_module({"key_alias": "alice", "key": ALICE, "rpm_limit": 2}, diff=True)
    assert (updated["diff"]["before"]["rpm_limit"], updated["diff"]["after"]["rpm_limit"]) == (1, 2)
    assert "spend" not in updated["diff"]["before"]
    removed = run_module({"key_alias": "alice", "state": "absent"}, diff=True)
    assert removed["diff"]["after"] == {} and removed["diff"]["before"]["key_alias"] == "alice"
    for result in (created, updated, removed):
        assert_no_secret_in(result, fake)


def test_diff_of_a_generated_key_leaves_the_key_out(run_module, fake):
    result = run_module({"key_alias": "alice"}, diff=True)
    assert result["key"] not in str(result["diff"])


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 429, 500])
def test_every_error_status_fails_with_status_message_and_request(run_module, fake, sleeps, status):
    fake.fail("GET", "/key/list", status, body={"error": {"message": f"answer {status}", "type": "x"}})
    result = run_module({"key_alias": "alice"})
    assert result["failed"] is True
    assert result["status"] == status
    assert result["request"] == "GET /key/list?key_alias=alice&return_full_object=true&page=1&size=100"
    assert f"answered HTTP {status}: answer {status}" in result["msg"]
    assert len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize("path", ["/key/generate", "/key/update", "/key/delete"])
@pytest.mark.parametrize("status", [400, 403, 422, 429, 500])
def test_errors_of_mutating_requests(run_module, fake, path, status):
    method = "POST"
    state = "absent" if path == "/key/delete" else "present"
    if path != "/key/generate":
        fake.add_key(ALICE, key_alias="alice", metadata=MARK)
    fake.fail(method, path, status)
    result = run_module({"key_alias": "alice", "key": ALICE, "rpm_limit": 3, "state": state})
    assert (result["failed"], result["status"]) == (True, status)
    assert result["request"] == f"{method} {path}"
    assert_no_secret_in(result, fake)


def test_503_is_retried_then_fails(run_module, fake, sleeps):
    fake.fail("GET", "/key/list", 503, times=10)
    result = run_module({"key_alias": "alice", "retries": 2})
    assert (result["failed"], result["status"]) == (True, 503)
    assert "after 3 attempts" in result["msg"]
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_503_then_success(run_module, fake, sleeps):
    fake.fail("GET", "/key/list", 503, times=2)
    fake.fail("POST", "/key/generate", 503, times=1)
    result = run_module({"key_alias": "alice"})
    assert result["action"] == "created"
    assert len(sleeps) == 3
    assert len(fake.keys) == 1


def test_an_unreachable_proxy(run_module, fake, sleeps):
    fake.fail("GET", "/key/list", exception=refused(), times=10)
    result = run_module({"key_alias": "alice", "retries": 1})
    assert result["failed"] is True and result["status"] is None
    assert "cannot reach the LiteLLM proxy" in result["msg"]


def test_a_wrong_master_key_is_401(run_module, fake):
    result = run_module({"key_alias": "alice", "master_key": "sk-wrong-master-key-000"})
    assert (result["failed"], result["status"]) == (True, 401)
    assert "sk-wrong-master-key-000" not in result["_raw"]


def test_a_key_that_vanishes_before_its_update_is_404(run_module, fake):
    fake.add_key(ALICE, key_alias="alice", metadata=MARK)
    fake.fail("POST", "/key/update", 404, body={"error": {"message": "Key not found.", "type": "not_found_error"}})
    result = run_module({"key_alias": "alice", "rpm_limit": 9})
    assert (result["status"], result["request"]) == (404, "POST /key/update")
    assert "Key not found." in result["msg"]


def test_custom_keys_disabled_on_the_proxy_is_403(run_module, fake):
    fake.disable_custom_api_keys = True
    result = run_module({"key_alias": "alice", "key": ALICE})
    assert (result["failed"], result["status"]) == (True, 403)
    assert "Custom API key values are disabled" in result["msg"]


# --- validation: before any request ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"rpm_limit": -1}, "rpm_limit must be 0 or more"),
        ({"tpm_limit": -5}, "tpm_limit must be 0 or more"),
        ({"max_parallel_requests": -1}, "max_parallel_requests must be 0 or more"),
        ({"max_budget": -0.01}, "max_budget must be a finite number of 0 or more"),
        ({"soft_budget": float("nan")}, "soft_budget must be a finite number of 0 or more"),
        ({"max_budget": float("inf")}, "max_budget must be a finite number of 0 or more"),
        ({"budget_duration": "30"}, "budget_duration '30' is not a duration LiteLLM accepts"),
        ({"budget_duration": "1y"}, "budget_duration '1y' is not a duration"),
        ({"budget_duration": "0d"}, "budget_duration '0d' must be longer than zero"),
        ({"duration": "forever"}, "duration 'forever' is not a duration"),
        ({"expires": "2020-01-01T00:00:00Z"}, "expires '2020-01-01T00:00:00Z' is in the past"),
        ({"expires": "2099-01-01T00:00:00"}, "is not a date and time with its UTC offset"),
        ({"expires": "2099-01-01T00:00:00Z", "duration": "7d"}, "give duration (from when the key is made) or expires"),
        ({"key": "pk-0123456789abcdef"}, "must start with 'sk-'"),
        ({"key": "sk-short"}, "at least 16 characters"),
        ({"key": "sk-0123456789abc$ef"}, "only use letters, digits"),
        ({"key": "sk-" + "a" * 98}, "at most 100 characters"),
        ({"key_alias": "bad\nalias"}, "key_alias 'bad\\nalias' must be 2 to 255 letters, digits"),
        ({"key_alias": "alice+1"}, "key_alias 'alice+1' must be 2 to 255 letters, digits"),
        ({"key_alias": "  "}, "non-empty"),
        ({"metadata": {"thorfleet_managed": False}}, "metadata.thorfleet_managed is reserved"),
        ({"models": [""]}, "models must be non-empty names"),
        ({"concurrency": 0}, "concurrency must be between 1 and 64"),
        ({"timeout": 0}, "timeout must be more than 0"),
        ({"retries": -1}, "retries must be 0 or more"),
        ({"exclusive": True}, "exclusive needs keys"),
    ],
)
def test_bad_input_fails_before_any_request(run_module, fake, args, message):
    result = run_module({"key_alias": "alice", **args})
    assert result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert fake.requests == []
    assert_no_secret_in(result, fake)
    if "key" in args:
        assert args["key"] not in result["_raw"]


def test_every_problem_is_reported_at_once(run_module, fake):
    result = run_module({"key_alias": "alice", "rpm_limit": -1, "budget_duration": "x", "key": "nope"})
    assert len(result["errors"]) == 3


def test_key_alias_or_keys_but_not_both(run_module, fake):
    assert "one of the following is required" in run_module({})["msg"]
    both = run_module({"key_alias": "a", "keys": [{"key_alias": "b"}]})
    assert "mutually exclusive" in both["msg"]
    assert fake.requests == []


# --- bulk -----------------------------------------------------------------------------------------------


def roster(count, **extra):
    return [{"key_alias": f"user{index:03}", **extra} for index in range(count)]


def test_bulk_creates_hundreds_then_changes_nothing(run_module, fake):
    entries = roster(250)
    for entry in entries[:100]:
        entry["key"] = "sk-" + entry["key_alias"] + "-0123456789abcdef"
    first = run_module({"keys": entries, "rpm_limit": 10, "concurrency": 16})
    assert (first["changed"], first["created"], first["updated"], first["unchanged"]) == (True, 250, 0, 0)
    assert (first["deleted"], first["failed_keys"]) == (0, 0)
    assert len(fake.keys) == 250
    generated = [result for result in first["results"] if "key" in result]
    assert len(generated) == 150  # LiteLLM generated these; supplied keys are never echoed
    assert all(sha256(result["key"]) == result["token"] for result in generated)
    assert len(fake.calls("GET", "/key/list")) == 1  # one page: the proxy was empty
    assert len(fake.calls("GET", "/key/info")) == 100  # every supplied key looked up by hash before generating
    assert_no_secret_in(first, fake, allowed={result["key"] for result in generated})

    fake.requests.clear()
    second = run_module({"keys": entries, "rpm_limit": 10, "concurrency": 16})
    assert (second["changed"], second["unchanged"], second["created"], second["updated"]) == (False, 250, 0, 0)
    assert fake.mutations() == []
    assert [r.query["page"] for r in fake.requests] == ["1", "2", "3"]
    assert all(r.query["size"] == "100" and r.query["return_full_object"] == "true" for r in fake.requests)
    assert not any("key" in result for result in second["results"])


def test_bulk_updates_only_what_differs(run_module, fake):
    run_module({"keys": roster(5), "rpm_limit": 10, "budget_duration": "7d"})
    fake.requests.clear()
    entries = roster(5)
    entries[2]["rpm_limit"] = 20
    entries[4]["metadata"] = {"seat": 4}
    result = run_module({"keys": entries, "rpm_limit": 10, "budget_duration": "7d"})
    assert (result["updated"], result["unchanged"]) == (2, 3)
    bodies = sorted((fake.keys[r.body["key"]]["key_alias"], sorted(r.body)) for r in fake.calls("POST", "/key/update"))
    assert bodies == [("user002", ["key", "rpm_limit"]), ("user004", ["key", "metadata"])]
    assert all(count == 1 for count in fake.budget_window_restarts.values())


def test_bulk_entries_override_the_top_level_defaults(run_module, fake):
    entries = [{"key_alias": "ann"}, {"key_alias": "bob", "rpm_limit": 99, "metadata": {"own": True}}]
    run_module({"keys": entries, "rpm_limit": 10, "models": ["qwen"], "metadata": {"shared": True}})
    assert (fake.row("ann")["rpm_limit"], fake.row("bob")["rpm_limit"]) == (10, 99)
    assert fake.row("ann")["models"] == fake.row("bob")["models"] == ["qwen"]
    assert fake.row("ann")["metadata"] == {"shared": True, **MARK}
    assert fake.row("bob")["metadata"] == {"own": True, **MARK}


def test_bulk_state_absent_entries_and_top_level_state(run_module, fake):
    run_module({"keys": roster(4)})
    entries = roster(4)
    entries[1]["state"] = "absent"
    result = run_module({"keys": entries})
    assert (result["deleted"], result["unchanged"]) == (1, 3)
    assert "user001" not in {row["key_alias"] for row in fake.keys.values()}
    everything = run_module({"keys": roster(4), "state": "absent"})
    assert (everything["deleted"], everything["unchanged"]) == (3, 1)
    assert fake.keys == {}


def test_bulk_exclusive_removes_only_unlisted_managed_keys(run_module, fake):
    run_module({"keys": roster(5)})
    foreign = fake.add_key(key_alias="made-by-hand")  # no marker: never touched
    fake.requests.clear()
    result = run_module({"keys": roster(3), "exclusive": True})
    assert (result["deleted"], result["unchanged"], result["changed"]) == (2, 3, True)
    removed = sorted(r["key_alias"] for r in result["results"] if r.get("exclusive"))
    assert removed == ["user003", "user004"]
    deletes = fake.calls("POST", "/key/delete")
    assert len(deletes) == 1 and len(deletes[0].body["keys"]) == 2  # one batched request
    assert sorted(row["key_alias"] for row in fake.keys.values()) == ["made-by-hand", "user000", "user001", "user002"]
    assert fake.row("made-by-hand")["token"] == sha256(foreign)


def test_bulk_exclusive_keeps_a_listed_key_found_under_another_alias(run_module, fake):
    fake.add_key(ALICE, key_alias="alice-old", metadata=MARK)
    result = run_module({"keys": [{"key_alias": "alice", "key": ALICE}], "exclusive": True})
    assert (result["updated"], result["deleted"]) == (1, 0)
    assert fake.row("alice")["token"] == sha256(ALICE)


def test_bulk_exclusive_in_check_mode_changes_nothing(run_module, fake):
    run_module({"keys": roster(3)})
    fake.requests.clear()
    result = run_module({"keys": [*roster(1), {"key_alias": "new"}], "exclusive": True}, check=True, diff=True)
    assert (result["created"], result["deleted"], result["unchanged"]) == (1, 2, 1)
    assert fake.mutations() == []
    assert set(result["diff"]["before"]) == {"new", "user001", "user002"}
    assert result["diff"]["after"]["user001"] == {}


def test_bulk_runs_at_most_concurrency_requests_at_once(run_module, fake):
    inner = fake.__call__
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def slow(url, **kwargs):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            time.sleep(0.005)
            return inner(url, **kwargs)
        finally:
            with lock:
                state["now"] -= 1

    from ansible_collections.thorfleet.llm.plugins.module_utils import _litellm as litellm_utils

    litellm_utils.open_url = slow  # undone by the `fake` fixture's monkeypatch
    result = run_module({"keys": roster(40), "concurrency": 4})
    assert result["created"] == 40
    assert 2 <= state["peak"] <= 4


def test_bulk_looks_a_supplied_key_up_by_hash_even_if_the_listing_missed_it(run_module, fake, monkeypatch):
    fake.add_key(ALICE, key_alias="alice", rpm_limit=1, metadata=MARK)
    real_list = fake._list

    def blind_list(request):
        answer = real_list(request)
        answer["keys"] = [row for row in answer["keys"] if row["token"] != sha256(ALICE)]
        answer["total_count"] = len(answer["keys"])
        return answer

    monkeypatch.setattr(fake, "_list", blind_list)
    result = run_module({"keys": [{"key_alias": "alice", "key": ALICE, "rpm_limit": 2}]})
    assert result["updated"] == 1
    assert fake.calls("POST", "/key/generate") == []  # LiteLLM would have said 200 and stored nothing
    assert fake.row("alice")["rpm_limit"] == 2


def test_bulk_heals_a_wiped_database(run_module, fake):
    entries = [{"key_alias": f"u{index}", "key": f"sk-u{index}-0123456789abcdefgh"} for index in range(20)]
    first = run_module({"keys": entries, "rpm_limit": 5})
    tokens = {r["key_alias"]: r["token"] for r in first["results"]}
    fake.wipe()
    second = run_module({"keys": entries, "rpm_limit": 5})
    assert second["created"] == 20
    assert {r["key_alias"]: r["token"] for r in second["results"]} == tokens


def test_bulk_reports_each_failure_and_finishes_the_rest(run_module, fake):
    fake.add_key(key_alias="taken", metadata=MARK)
    entries = [{"key_alias": "taken", "key": ALICE}, {"key_alias": "free", "key": BOB}, {"key_alias": "also-free"}]
    result = run_module({"keys": entries})
    assert result["failed"] is True
    assert (result["failed_keys"], result["created"]) == (1, 2)
    assert result["msg"].startswith("1 of 3 keys failed: taken: alias conflict")
    failed = [r for r in result["results"] if r["action"] == "failed"]
    assert failed[0]["key_alias"] == "taken" and "'taken'" in failed[0]["msg"]
    assert {"free", "also-free"} <= {row["key_alias"] for row in fake.keys.values()}
    assert_no_secret_in(result, fake, allowed={r["key"] for r in result["results"] if "key" in r})


def test_bulk_fails_at_once_when_the_listing_fails(run_module, fake):
    fake.fail("GET", "/key/list", 401)
    result = run_module({"keys": roster(3)})
    assert (result["failed"], result["status"]) == (True, 401)
    assert fake.mutations() == []


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"key_alias": "ann"}, {"key_alias": "bob"}, {"key_alias": "ann"}], "duplicate key_alias in keys: ann"),
        (
            [{"key_alias": "ann", "key": ALICE}, {"key_alias": "bob", "key": ALICE}],
            "the same raw key is given for several",
        ),
        ([{"key_alias": "ann", "rpm_limit": -3}], "keys[0] (key_alias 'ann'): rpm_limit must be 0 or more"),
        ([{"key_alias": "ann"}, {"key_alias": "bob", "budget_duration": "monthlyish"}], "keys[1] (key_alias 'bob')"),
        ([{"rpm_limit": 1}], "missing required arguments: key_alias"),
    ],
)
def test_bulk_bad_input_fails_before_any_request(run_module, fake, entries, message):
    result = run_module({"keys": entries})
    assert result["failed"] is True
    assert message in result["msg"], result["msg"]
    assert fake.requests == []
    assert ALICE not in result["_raw"]


def test_bulk_key_and_keys_are_exclusive(run_module, fake):
    result = run_module({"keys": [{"key_alias": "a"}], "key": ALICE})
    assert "mutually exclusive" in result["msg"]


# --- owner ----------------------------------------------------------------------------------------------

OWNED = {"thorfleet_owner": "open_webui", **MARK}


def test_a_key_with_an_owner_carries_it_in_its_metadata(run_module, fake):
    created = run_module({"key_alias": "open-webui", "key": ALICE, "owner": "open_webui", "metadata": {"unit": "u1"}})
    assert fake.calls("POST", "/key/generate")[0].body["metadata"] == {"unit": "u1", **OWNED}
    assert created["key_info"]["metadata"] == {"unit": "u1", **OWNED}
    again = run_module({"key_alias": "open-webui", "key": ALICE, "owner": "open_webui", "metadata": {"unit": "u1"}})
    assert again["changed"] is False


def test_without_owner_the_stored_owner_stays(run_module, fake):
    fake.add_key(ALICE, key_alias="open-webui", metadata={"unit": "u1", **OWNED})
    result = run_module({"key_alias": "open-webui", "key": ALICE, "metadata": {"unit": "u2"}})
    assert fake.calls("POST", "/key/update")[0].body["metadata"] == {"unit": "u2", **OWNED}
    assert result["changed_fields"] == ["metadata"]
    assert run_module({"key_alias": "open-webui", "key": ALICE})["changed"] is False


def test_an_owner_is_added_to_a_key_that_had_none_and_can_change(run_module, fake):
    fake.add_key(ALICE, key_alias="open-webui", metadata={"unit": "u1", **MARK})
    run_module({"key_alias": "open-webui", "key": ALICE, "owner": "open_webui"})
    assert fake.row("open-webui")["metadata"] == {"unit": "u1", **OWNED}
    run_module({"key_alias": "open-webui", "key": ALICE, "owner": "other"})
    assert fake.row("open-webui")["metadata"] == {"unit": "u1", **MARK, "thorfleet_owner": "other"}


def test_exclusive_without_owner_spares_keys_with_an_owner(run_module, fake):
    run_module({"key_alias": "open-webui", "key": ALICE, "owner": "open_webui"})
    run_module({"keys": roster(3)})
    result = run_module({"keys": roster(1), "exclusive": True})
    removed = sorted(r["key_alias"] for r in result["results"] if r.get("exclusive"))
    assert removed == ["user001", "user002"]
    assert sorted(row["key_alias"] for row in fake.keys.values()) == ["open-webui", "user000"]


def test_exclusive_with_an_owner_removes_only_that_owners_keys(run_module, fake):
    run_module({"keys": roster(2)})
    run_module({"keys": [{"key_alias": "webui-1"}, {"key_alias": "webui-2"}], "owner": "open_webui"})
    run_module({"key_alias": "bench", "owner": "benchmark"})
    fake.requests.clear()
    result = run_module({"keys": [{"key_alias": "webui-2"}], "owner": "open_webui", "exclusive": True})
    assert (result["deleted"], result["unchanged"]) == (1, 1)
    assert [r["key_alias"] for r in result["results"] if r.get("exclusive")] == ["webui-1"]
    assert sorted(row["key_alias"] for row in fake.keys.values()) == ["bench", "user000", "user001", "webui-2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"metadata": {"thorfleet_owner": "open_webui"}}, "metadata.thorfleet_owner is reserved"),
        ({"owner": "a", "metadata": {"thorfleet_owner": "b"}}, "metadata.thorfleet_owner is reserved"),
        ({"owner": " "}, "owner must not be empty"),
    ],
)
def test_the_owner_marker_is_the_modules_own(run_module, fake, args, message):
    result = run_module({"key_alias": "alice", **args})
    assert result["failed"] is True and message in result["msg"], result["msg"]
    assert fake.requests == []


# --- documentation --------------------------------------------------------------------------------------


def test_documentation_matches_the_argument_spec():
    spec = litellm_key.argument_spec()
    assert_documented(litellm_key.DOCUMENTATION, spec)
    assert spec["master_key"]["no_log"] and spec["key"]["no_log"] and spec["keys"]["options"]["key"]["no_log"]
    yaml.safe_load(litellm_key.EXAMPLES)
    assert set(yaml.safe_load(litellm_key.RETURN)) >= {"key", "token", "key_alias", "changed_fields", "results"}


def test_every_setting_the_engine_manages_is_an_option():
    assert tuple(litellm_key.KEY_SETTINGS_SPEC) == SETTINGS


def test_the_api_url_default_is_the_units_port():
    assert litellm_key.argument_spec()["api_url"]["default"] == "http://127.0.0.1:12434"
    assert API_URL != "http://127.0.0.1:12434"  # the tests never talk to a real proxy

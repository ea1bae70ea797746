"""The key engine's rules and its pure planner (module_utils/_litellm_keys.py), table-driven, without a proxy."""

import re
from datetime import datetime, timezone

import pytest
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm import hash_key
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm_keys import (
    Conflict,
    custom_key_error,
    duration_error,
    entries_from,
    exclusive_extras,
    expires_error,
    is_key_alias,
    key_alias_error,
    plan_key,
)

ALICE = "sk-alice-0123456789abcdefXYZ"
OTHER = "sk-other-0123456789abcdefXYZ"
MARK = {"thorfleet_managed": True}
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)  # noqa: UP017 - as the module: managed hosts may run Python < 3.11


def stored(raw, alias, **fields):
    """A key as /key/info or /key/list hold it."""
    return {"token": hash_key(raw), "key_alias": alias, "metadata": dict(MARK), **fields}


def entry(alias="alice", state="present", key=None, **settings):
    return {"key_alias": alias, "state": state, "key": key, **settings}


# --- rules ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["1s", "15m", "1h", "24h", "7d", "30d", "2w", "1mo", "12mo", "daily", "Monthly", " weekly ", "hourly"]
)
def test_durations_litellm_parses(value):
    assert duration_error(value, "budget_duration") is None


@pytest.mark.parametrize(
    "value", ["30", "30D", "1 h", "h", "0d", "0mo", "-1d", "30dx", "1y", "", "1.5h", "99999999999999d", 30, None]
)
def test_durations_litellm_refuses(value):
    message = duration_error(value, "budget_duration")
    assert message and message.startswith("budget_duration")


def test_custom_keys():
    assert custom_key_error("sk-" + "a" * 13) is None
    assert custom_key_error("sk-Aa0_-" + "x" * 92) is None  # 100 characters
    assert "start with 'sk-'" in custom_key_error("pk-0123456789abcdef")
    assert "at least 16" in custom_key_error("sk-short")
    assert "at most 100" in custom_key_error("sk-" + "a" * 98)
    assert "letters, digits" in custom_key_error("sk-0123456789abcde!")
    assert "letters, digits" in custom_key_error("sk-0123456789abc def")
    for bad in ("pk-0123456789abcdef", "sk-0123456789abcde!"):
        assert bad not in custom_key_error(bad)


# LiteLLM 1.109.1's own rules (key_management_endpoints._validate_key_alias_format): always
# base_secret_manager._UNSAFE_SECRET_NAME_PATTERN, and _KEY_ALIAS_PATTERN once format validation is turned on.
LITELLM_UNSAFE = re.compile("(^|/)\\.\\.(/|$)|[\x00-\x1f\x7f-\x9f\u0085\u2028\u2029]")
LITELLM_FORMAT = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_\-/\.@]{0,253}[a-zA-Z0-9]$")
GOOD_ALIASES = [
    "alice",
    "ab",
    "open-webui",
    "alice@example.com",
    "thor-01.organiser",
    "a_b",
    "release-1.0..2",
    "x" * 255,
]
BAD_ALIASES = ["", "   ", None, 7, "a", "x" * 256, "a b", "a\nb", "alice\n", "a\tb", "../x", "x/..", "..", "a/b"]
BAD_ALIASES += ["a\u2028b", "-alice", "alice-", ".alice", "alice.", "alice+tag@example.com", "al,ice", "älice"]


@pytest.mark.parametrize("alias", GOOD_ALIASES)
def test_key_aliases_the_collection_takes_pass_litellms_checks(alias):
    assert key_alias_error(alias) is None and is_key_alias(alias)
    assert LITELLM_FORMAT.fullmatch(alias) and not LITELLM_UNSAFE.search(alias)


@pytest.mark.parametrize("alias", BAD_ALIASES)
def test_key_aliases_refused(alias):
    assert key_alias_error(alias) and not is_key_alias(alias), repr(alias)


# --- the planner ----------------------------------------------------------------------------------------

# (entry, found by hash, keys holding the alias) -> what the plan must say (Plan fields).
PLANS = {
    "a new key, LiteLLM makes it": (
        entry(rpm_limit=10),
        None,
        [],
        dict(
            action="created",
            token=None,
            delete=[],
            body={"key_alias": "alice", "rpm_limit": 10, "metadata": MARK},
            changed_fields=["key_alias", "metadata", "rpm_limit"],
        ),
    ),
    "a new key with a supplied raw key": (
        entry(key=ALICE, metadata={"unit": "thor-01"}),
        None,
        [],
        dict(
            action="created",
            token=hash_key(ALICE),
            body={"key_alias": "alice", "key": ALICE, "metadata": {"unit": "thor-01", **MARK}},
            changed_fields=["key_alias", "metadata"],
        ),
    ),
    "nothing differs": (
        entry(key=ALICE, rpm_limit=10, models=["b", "a"], max_budget=5),
        stored(ALICE, "alice", rpm_limit=10, models=["a", "b"], max_budget=5.0),
        [stored(ALICE, "alice", rpm_limit=10, models=["a", "b"], max_budget=5.0)],
        dict(action="unchanged", token=hash_key(ALICE), changes={}, changed_fields=[], delete=[]),
    ),
    "only what differs is sent": (
        entry(rpm_limit=20, tpm_limit=5),
        None,
        [stored(ALICE, "alice", rpm_limit=10, tpm_limit=5)],
        dict(action="updated", token=hash_key(ALICE), changes={"rpm_limit": 20}, changed_fields=["rpm_limit"]),
    ),
    "an end time is sent as the duration from now that ends then": (
        entry(expires="2026-06-01T18:00:00+02:00"),
        None,
        [],
        dict(
            action="created",
            body={"key_alias": "alice", "duration": "57600s", "metadata": MARK},
            changed_fields=["duration", "key_alias", "metadata"],
        ),
    ),
    "a stored end within a minute of the end time is the end time": (
        entry(expires="2026-06-01T16:00:00Z"),
        None,
        [stored(ALICE, "alice", expires="2026-06-01T16:00:59.5+00:00")],
        dict(action="unchanged", changes={}),
    ),
    "LiteLLM's stored end without an offset is UTC": (
        entry(expires="2026-06-01T18:00:00+02:00"),
        None,
        [stored(ALICE, "alice", expires="2026-06-01T16:00:00")],
        dict(action="unchanged", changes={}),
    ),
    "a moved end time moves the key's end": (
        entry(expires="2026-06-01T17:00:00Z"),
        None,
        [stored(ALICE, "alice", expires="2026-06-01T16:00:00Z")],
        dict(action="updated", changes={"duration": "61200s"}, changed_fields=["expires"]),
    ),
    "a key that never expires gets the end time": (
        entry(expires="2026-06-01T00:00:01Z"),
        None,
        [stored(ALICE, "alice")],
        dict(action="updated", changes={"duration": "1s"}, changed_fields=["expires"]),
    ),
    "an unchanged budget_duration and any duration stay unsent": (
        entry(budget_duration="30d", duration="7d"),
        None,
        [stored(ALICE, "alice", budget_duration="30d", expires="2030-01-01T00:00:00Z")],
        dict(action="unchanged", changes={}),
    ),
    "omitted metadata gets the marker only": (
        entry(),
        None,
        [{**stored(ALICE, "alice"), "metadata": {"set": "elsewhere"}}],
        dict(action="updated", changes={"metadata": {"set": "elsewhere", **MARK}}),
    ),
    "metadata is sent whole, with what LiteLLM keeps there": (
        entry(metadata={"email": "new"}),
        None,
        [{**stored(ALICE, "alice"), "metadata": {"email": "old", "old": 1, "service_account_id": "sa", **MARK}}],
        dict(action="updated", changes={"metadata": {"email": "new", "service_account_id": "sa", **MARK}}),
    ),
    "a supplied key stored under another alias is renamed": (
        entry(key=ALICE),
        stored(ALICE, "alice-old"),
        [],
        dict(action="updated", token=hash_key(ALICE), delete=[], changes={"key_alias": "alice"}),
    ),
    "replace: the alias holder goes, the supplied key is created": (
        entry(key=ALICE),
        None,
        [stored(OTHER, "alice")],
        dict(action="created", token=hash_key(ALICE), delete=[hash_key(OTHER)]),
    ),
    "replace: the alias holder goes, the supplied key is renamed": (
        entry(key=ALICE),
        stored(ALICE, "alice-old"),
        [stored(OTHER, "alice")],
        dict(action="updated", delete=[hash_key(OTHER)], changes={"key_alias": "alice"}),
    ),
    "replace with nothing else to change is still a change": (
        entry(key=ALICE),
        stored(ALICE, "alice"),
        [stored(ALICE, "alice"), stored(OTHER, "alice")],
        dict(action="updated", delete=[hash_key(OTHER)], changes={}),
    ),
    "absent and already gone": (
        entry(state="absent", key=ALICE),
        None,
        [],
        dict(action="unchanged", token=hash_key(ALICE), delete=[], before={}, after={}),
    ),
    "absent deletes the key by hash and the key holding the alias": (
        entry(state="absent", key=ALICE),
        stored(ALICE, "alice-old"),
        [stored(OTHER, "alice")],
        dict(action="deleted", token=hash_key(ALICE), delete=sorted([hash_key(ALICE), hash_key(OTHER)]), after={}),
    ),
}


@pytest.mark.parametrize(("wanted", "by_hash", "alias_rows", "expected"), PLANS.values(), ids=list(PLANS))
def test_plans(wanted, by_hash, alias_rows, expected):
    plan = plan_key(wanted, by_hash, alias_rows, alias_conflict="replace", now=NOW)
    assert {name: getattr(plan, name) for name in expected} == expected


def test_a_plan_holds_the_key_before_and_after():
    plan = plan_key(entry(rpm_limit=20), None, [stored(ALICE, "alice", rpm_limit=10)], now=NOW)
    assert (plan.before["rpm_limit"], plan.after["rpm_limit"]) == (10, 20)
    assert plan.before["token"] == plan.after["token"] == hash_key(ALICE)
    created = plan_key(entry(key=ALICE, duration="7d"), None, [], now=NOW)
    assert (created.before, created.after["token"], created.after["duration"]) == ({}, hash_key(ALICE), "7d")
    assert created.after["key_name"] == "sk-..." + ALICE[-4:]


def test_an_end_time_shows_as_the_end_before_and_after():
    plan = plan_key(
        entry(expires="2026-06-01T17:00:00Z"), None, [stored(ALICE, "alice", expires="2026-06-01T16:00:00Z")], now=NOW
    )
    assert (plan.before["expires"], plan.after["expires"]) == ("2026-06-01T16:00:00Z", "2026-06-01T17:00:00Z")
    assert "duration" not in plan.after
    created = plan_key(entry(expires="2026-06-01T17:00:00Z"), None, [], now=NOW)
    assert created.after["expires"] == "2026-06-01T17:00:00Z" and "duration" not in created.after


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-06-01T00:00:01Z", None),
        ("2026-06-01T02:00:01+02:00", None),
        ("2026-06-01T00:00:00Z", "is in the past"),
        ("2026-05-31T12:00:00+00:00", "is in the past"),
        ("2026-06-01T18:00:00", "with its UTC offset"),
        ("tomorrow", "with its UTC offset"),
        (1780000000, "with its UTC offset"),
    ],
)
def test_end_times(value, message):
    problem = expires_error(value, NOW)
    assert problem is None if message is None else message in problem


def test_an_entrys_own_end_replaces_the_default_whichever_it_is():
    params = {"keys": [{"key_alias": "a", "expires": "2026-06-02T00:00:00Z"}, {"key_alias": "b"}], "state": "present"}
    params["duration"] = "7d"
    first, second = entries_from(params)
    assert ("duration" not in first, first["expires"]) == (True, "2026-06-02T00:00:00Z")
    assert (second["duration"], "expires" in second) == ("7d", False)


def test_a_plan_says_nothing_about_an_absent_key_it_did_not_find():
    plan = plan_key(entry(state="absent"), None, [], now=NOW)
    assert (plan.action, plan.token, plan.delete) == ("unchanged", None, [])


@pytest.mark.parametrize(
    ("wanted", "by_hash", "alias_rows", "message"),
    [
        (entry(key=ALICE), None, [stored(OTHER, "alice")], "alias conflict: key_alias 'alice' belongs to another key"),
        (entry(), None, [stored(ALICE, "alice"), stored(OTHER, "alice")], "2 keys carry key_alias 'alice'"),
    ],
)
def test_conflicts_are_refused(wanted, by_hash, alias_rows, message):
    with pytest.raises(Conflict, match=message):
        plan_key(wanted, by_hash, alias_rows, alias_conflict="fail", now=NOW)


@pytest.mark.parametrize(
    ("wanted", "row", "warning"),
    [
        (entry(duration="7d"), stored(ALICE, "alice"), "duration applies only when a key is created"),
        (entry(), stored(ALICE, "alice", expires="2026-05-31T23:59:59Z"), "the key expired at 2026-05-31"),
        (entry(key=ALICE), stored(OTHER, "alice"), "replaced the key that held the alias"),
    ],
)
def test_warnings(wanted, row, warning):
    plan = plan_key(wanted, None, [row], alias_conflict="replace", now=NOW)
    assert [text for text in plan.warnings if warning in text], plan.warnings


def test_a_key_that_expires_later_is_no_warning():
    plan = plan_key(entry(), None, [stored(ALICE, "alice", expires="2026-06-01T00:00:01Z")], now=NOW)
    assert plan.warnings == []


@pytest.mark.parametrize(
    ("owner", "removed"),
    [(None, ["gone"]), ("open_webui", ["webui-gone"]), ("nobody", [])],
)
def test_exclusive_removes_only_the_unlisted_keys_of_its_owner(owner, removed):
    webui = {**MARK, "thorfleet_owner": "open_webui"}
    keys = [
        stored(ALICE, "alice"),
        stored("sk-gone-0123456789abcdef", "gone"),
        {**stored("sk-webui-0123456789abcdef", "webui"), "metadata": webui},
        {**stored("sk-webui-gone-0123456789abcdef", "webui-gone"), "metadata": webui},
    ]
    wanted = [entry("alice", owner=owner), entry("webui", owner=owner)]
    assert [row["key_alias"] for row in exclusive_extras(keys, wanted, owner)] == removed


def test_an_owner_goes_into_the_metadata_and_a_stored_one_stays_without_one():
    created = plan_key(entry(owner="open_webui", metadata={"unit": "u1"}), None, [], now=NOW)
    assert created.body["metadata"] == {"unit": "u1", "thorfleet_owner": "open_webui", **MARK}
    owned = {**stored(ALICE, "alice"), "metadata": {"unit": "u1", "thorfleet_owner": "open_webui", **MARK}}
    kept = plan_key(entry(metadata={"unit": "u2"}), None, [owned], now=NOW)
    assert kept.changes == {"metadata": {"unit": "u2", "thorfleet_owner": "open_webui", **MARK}}
    moved = plan_key(entry(owner="other"), None, [owned], now=NOW)
    assert moved.changes["metadata"]["thorfleet_owner"] == "other"


def test_exclusive_removes_only_unlisted_managed_keys():
    keys = [
        stored(ALICE, "alice"),
        stored(OTHER, "renamed"),  # listed by its raw key under another alias
        stored("sk-gone-0123456789abcdef", "gone"),
        {**stored("sk-hand-0123456789abcdef", "by-hand"), "metadata": {}},
    ]
    wanted = [entry("alice"), entry("other", key=OTHER)]
    assert [row["key_alias"] for row in exclusive_extras(keys, wanted)] == ["gone"]

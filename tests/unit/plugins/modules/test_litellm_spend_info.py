"""litellm_spend_info against the stateful fake proxy: keys listed by page, spend logs summed per key."""

from __future__ import annotations

import yaml
from ansible_collections.thorfleet.llm.plugins.modules import litellm_spend_info

from ..docs import assert_documented
from ..litellm_fake import MASTER_KEY, sha256


def run_spend(run_module, **args):
    return run_module(args, module=litellm_spend_info)


def test_spend_and_tokens_per_key(fake, run_module):
    metadata = {"email": "a@x", "role": "attendee", "cohort": "A", "thorfleet_managed": True}
    alice = fake.add_key(key_alias="alice", user_id="u-alice", metadata=metadata)
    fake.add_key(key_alias="bob", max_budget=5.0, budget_duration="30d")
    fake.log_request(
        alice, spend=0.25, prompt_tokens=10, completion_tokens=5, total_tokens=15, startTime="2026-11-20T10:00:00"
    )
    fake.log_request(
        alice, spend=0.5, prompt_tokens=20, completion_tokens=7, total_tokens=27, startTime="2026-11-21T09:00:00"
    )

    result = run_spend(run_module)

    assert not result["changed"]
    first, second = result["usage"]
    assert (first["key_alias"], first["user_id"], first["email"], first["token"]) == (
        "alice",
        "u-alice",
        "a@x",
        sha256(alice),
    )
    assert (first["requests"], first["prompt_tokens"], first["completion_tokens"], first["total_tokens"]) == (
        2,
        30,
        12,
        42,
    )
    assert (first["spend"], first["logs_spend"], first["last_request"]) == (0.75, 0.75, "2026-11-21T09:00:00")
    assert first["logs_complete"]
    assert (second["key_alias"], second["requests"], second["total_tokens"], second["spend"]) == ("bob", 0, 0, 0.0)
    assert (second["max_budget"], second["budget_duration"]) == (5.0, "30d")
    assert (first["first_request"], second["first_request"]) == ("2026-11-20T10:00:00", None)
    assert (first["role"], first["cohort"], second["role"], second["cohort"]) == ("attendee", "A", None, None)
    assert result["totals"] == {
        "key_count": 2,
        "ending_soon": 0,
        "spend": 0.75,
        "requests": 2,
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
    }
    # Logs were asked for by hash, one request per key; no raw key ever left in a URL or the result.
    asked = sorted(request.query["api_key"] for request in fake.calls("GET", "/spend/logs"))
    assert asked == sorted(fake.keys)
    assert alice not in result["_raw"] and all(alice not in r.url for r in fake.requests)


def test_every_page_of_keys_is_read(fake, run_module):
    for index in range(250):
        fake.add_key(key_alias=f"user-{index:03d}")
    result = run_spend(run_module, concurrency=16)
    assert [row["key_alias"] for row in result["usage"]] == [f"user-{index:03d}" for index in range(250)]
    assert len(fake.calls("GET", "/key/list")) == 3


def test_managed_only(fake, run_module):
    fake.add_key(key_alias="ours", metadata={"thorfleet_managed": True})
    fake.add_key(key_alias="theirs")
    assert [row["key_alias"] for row in run_spend(run_module, managed_only=True)["usage"]] == ["ours"]


def test_a_cut_short_log_is_flagged(fake, run_module, monkeypatch):
    raw = fake.add_key(key_alias="busy")
    monkeypatch.setattr(litellm_spend_info, "SPEND_LOGS_CAP", 3)
    for _attempt in range(3):
        fake.log_request(raw, spend=0.1, total_tokens=1)
    (row,) = run_spend(run_module)["usage"]
    assert (row["requests"], row["logs_complete"]) == (3, False)


def test_an_error_status_fails_with_the_request(fake, run_module):
    fake.add_key(key_alias="alice")
    fake.fail("GET", "/spend/logs", status=500)
    result = run_spend(run_module)
    assert result["failed"] and result["status"] == 500 and result["request"].startswith("GET /spend/logs")


def test_a_wrong_master_key_fails(fake, run_module):
    result = run_module({"master_key": "sk-wrong-master-key-0000"}, module=litellm_spend_info)
    assert result["failed"] and result["status"] == 401
    assert MASTER_KEY not in result["_raw"]


def test_concurrency_is_bounded(fake, run_module):
    result = run_spend(run_module, concurrency=0)
    assert result["failed"] and "concurrency must be between 1 and 64" in result["msg"]
    assert fake.requests == []


def test_without_logs_only_the_key_list_is_read(fake, run_module):
    alice = fake.add_key(key_alias="alice", max_budget=5.0)
    fake.add_key(key_alias="bob")
    fake.log_request(alice, spend=0.25, prompt_tokens=10, completion_tokens=5, total_tokens=15)

    result = run_spend(run_module, logs=False)

    assert [(row["key_alias"], row["spend"], row["requests"], row["total_tokens"]) for row in result["usage"]] == [
        ("alice", 0.25, None, None),
        ("bob", 0.0, None, None),
    ]
    assert result["totals"] == {
        "key_count": 2,
        "ending_soon": 0,
        "spend": 0.25,
        "requests": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "total_tokens": None,
    }
    assert fake.calls("GET", "/spend/logs") == []
    assert fake.calls("GET", "/key/list")


def test_keys_ending_within_the_hour_are_counted(fake, run_module):
    """A workshop's keys: their end as LiteLLM stores it (UTC, without an offset), and how many end soon."""
    for alias, duration in (("soon", "30m"), ("later", "2h"), ("never", None), ("revoked", "30m")):
        fake.add_key(key_alias=alias, duration=duration)
    fake.row("revoked")["blocked"] = True
    fake.add_key(key_alias="gone")
    fake.row("gone")["expires"] = "2020-01-01T00:00:00"

    result = run_spend(run_module, logs=False)

    ends = {row["key_alias"]: row["expires"] for row in result["usage"]}
    assert ends["never"] is None and ends["gone"] == "2020-01-01T00:00:00" and ends["soon"] < ends["later"]
    assert {row["key_alias"] for row in result["usage"] if row["blocked"]} == {"revoked"}
    assert result["totals"]["ending_soon"] == 1  # a blocked key no longer works: it does not end
    assert run_spend(run_module, logs=False, ending_within=3 * 3600)["totals"]["ending_soon"] == 2


def test_check_mode_reads_the_same(fake, run_module):
    fake.add_key(key_alias="alice")
    result = run_module({}, check=True, module=litellm_spend_info)
    assert not result["changed"] and [row["key_alias"] for row in result["usage"]] == ["alice"]
    assert fake.mutations() == []


def test_documentation_matches_the_argument_spec():
    spec = litellm_spend_info.argument_spec()
    assert_documented(litellm_spend_info.DOCUMENTATION, spec)
    assert spec["master_key"]["no_log"]
    yaml.safe_load(litellm_spend_info.EXAMPLES)
    assert set(yaml.safe_load(litellm_spend_info.RETURN)) == {"usage", "totals"}

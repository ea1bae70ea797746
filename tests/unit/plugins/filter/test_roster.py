"""The keys roster filter: every malformed row is refused by number, before any key is touched."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter import roster
from ansible_collections.thorfleet.llm.plugins.test import key_alias

UNITS = ["thor-01", "thor-02"]
DEFAULTS = {"rpm_limit": 10, "tpm_limit": 50000, "max_budget": 5.0, "budget_duration": "30d", "models": ["M"]}


def test_rows_get_defaults_then_their_own_overrides():
    rows = [
        {"alias": "alice", "unit": "thor-01", "email": "a@x", "team": "eng", "rpm_limit": "", "max_budget": ""},
        {"alias": "bob", "unit": "thor-02", "rpm_limit": "20", "max_budget": "7.5", "models": "A;B", "duration": "7d"},
    ]
    assert roster.roster_keys(rows, UNITS, DEFAULTS) == [
        {"alias": "alice", "unit": "thor-01", "email": "a@x", "team": "eng", "settings": DEFAULTS},
        {
            "alias": "bob",
            "unit": "thor-02",
            "email": "",
            "team": "",
            "settings": {**DEFAULTS, "rpm_limit": 20, "max_budget": 7.5, "models": ["A", "B"], "duration": "7d"},
        },
    ]


def test_a_rows_own_end_replaces_the_defaults_whichever_it_is():
    """The play's end time (keys_expires) for everybody; a row may end its key otherwise."""
    end = {"expires": "2099-01-01T18:00:00Z"}
    rows = [
        {"alias": "ann", "unit": "thor-01"},
        {"alias": "bo", "unit": "thor-01", "duration": "1h"},
        {"alias": "cy", "unit": "thor-01", "expires": "2099-01-02T18:00:00+01:00"},
    ]
    settings = [row["settings"] for row in roster.roster_keys(rows, UNITS, end)]
    assert settings == [end, {"duration": "1h"}, {"expires": "2099-01-02T18:00:00+01:00"}]
    with pytest.raises(AnsibleFilterError, match=r"roster row 1 \(ann\) expires .* is in the past"):
        roster.roster_keys(rows, UNITS, {"expires": "2020-01-01T00:00:00Z"})


def test_a_row_without_unit_goes_to_the_one_host_of_the_play():
    """The fleet gateway holds every key: its roster needs no unit column. Among several units, unit is required."""
    assert [row["unit"] for row in roster.roster_keys([{"alias": "ann", "unit": ""}, {"alias": "bo"}], ["gw"], {})] == [
        "gw",
        "gw",
    ]
    with pytest.raises(AnsibleFilterError, match="unit '' is not in the inventory"):
        roster.roster_keys([{"alias": "ann"}], UNITS, {})


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"unit": "thor-01"}], "roster row 1: alias '' is missing"),
        ([{"alias": "a b", "unit": "thor-01"}], "roster row 1: alias 'a b'"),
        (
            [{"alias": "ann", "unit": "thor-01"}, {"alias": "ann", "unit": "thor-02"}],
            "row 2: alias 'ann' is already used by row 1",
        ),
        (
            [
                {"alias": "Alice", "unit": "thor-01"},
                {"alias": "bob", "unit": "thor-01"},
                {"alias": "alice", "unit": "thor-02"},
            ],
            "roster row 3: alias 'alice' differs only in case from 'Alice' in row 1",
        ),
        ([{"alias": "ann", "unit": "thor-99"}], "roster row 1 (ann): unit 'thor-99' is not in the inventory"),
        ([{"alias": "ann", "unit": "thor-01", "rpm_limit": "-1"}], "(ann) rpm_limit: '-1' must be 0 or more"),
        ([{"alias": "ann", "unit": "thor-01", "tpm_limit": "lots"}], "(ann) tpm_limit: 'lots' is not a whole number"),
        ([{"alias": "ann", "unit": "thor-01", "max_budget": "-5"}], "(ann) max_budget: '-5' must be 0 or more"),
        (
            [{"alias": "ann", "unit": "thor-01", "budget_duration": "30 days"}],
            "(ann) budget_duration '30 days' is not a duration LiteLLM accepts",
        ),
        (
            [{"alias": "ann", "unit": "thor-01", "expires": "2020-01-01T00:00:00Z"}],
            "(ann) expires '2020-01-01T00:00:00Z' is in the past",
        ),
        (
            [{"alias": "ann", "unit": "thor-01", "expires": "2099-01-01 18:00"}],
            "(ann) expires '2099-01-01 18:00' is not a date and time with its UTC offset",
        ),
        (
            [{"alias": "ann", "unit": "thor-01", "expires": "2099-01-01T00:00:00Z", "duration": "7d"}],
            "(ann): give duration or expires, not both",
        ),
        ([{"alias": "ann", "unit": "thor-01", "rpm": "5"}], "roster row 1: unknown column(s) rpm"),
        (["alice,thor-01"], "roster row 1: expected columns"),
        ({"alias": "ann"}, "the roster must be a list"),
    ],
)
def test_malformed_rosters_are_refused_by_row(rows, message):
    with pytest.raises(AnsibleFilterError) as exc:
        roster.roster_keys(rows, UNITS, DEFAULTS)
    assert message in str(exc.value)


def test_key_requests_carry_alias_raw_key_settings_and_metadata():
    entries = roster.roster_keys([{"alias": "alice", "unit": "thor-01", "team": "eng"}], UNITS, DEFAULTS)
    entries[0]["cohort"] = "A"
    entries.append({"alias": "org", "role": "organiser", "settings": {}})
    assert roster.key_requests(entries, {"alice": "sk-a" * 5, "org": "sk-o" * 5}, "thor-01") == [
        {
            **DEFAULTS,
            "key_alias": "alice",
            "key": "sk-a" * 5,
            "metadata": {"unit": "thor-01", "role": "attendee", "team": "eng", "cohort": "A"},
        },
        {"key_alias": "org", "key": "sk-o" * 5, "metadata": {"unit": "thor-01", "role": "organiser"}},
    ]


def test_key_requests_need_a_raw_key_for_every_alias():
    with pytest.raises(AnsibleFilterError, match="no raw key was made for 'bob'"):
        roster.key_requests([{"alias": "bob"}], {}, "thor-01")


@pytest.mark.parametrize(
    ("alias", "taken"), [("alice@example.com", True), ("alice+1", False), ("x", False), (7, False)]
)
def test_the_roster_and_the_key_alias_test_share_one_rule(alias, taken):
    assert key_alias.TestModule().tests()["key_alias"](alias) is taken
    rows = [{"alias": alias, "unit": "thor-01"}]
    if taken:
        assert roster.roster_keys(rows, UNITS)[0]["alias"] == alias
    else:
        with pytest.raises(AnsibleFilterError, match="must be 2 to 255 letters"):
            roster.roster_keys(rows, UNITS)

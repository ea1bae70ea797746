"""The keys roster filter: every malformed row is refused by number, before any key is touched."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter import roster

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


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"unit": "thor-01"}], "roster row 1: alias '' is missing"),
        ([{"alias": "a b", "unit": "thor-01"}], "roster row 1: alias 'a b'"),
        (
            [{"alias": "a", "unit": "thor-01"}, {"alias": "a", "unit": "thor-02"}],
            "row 2: alias 'a' is already used by row 1",
        ),
        ([{"alias": "a", "unit": "thor-99"}], "roster row 1 (a): unit 'thor-99' is not in the inventory"),
        ([{"alias": "a", "unit": "thor-01", "rpm_limit": "-1"}], "(a) rpm_limit: '-1' must be 0 or more"),
        ([{"alias": "a", "unit": "thor-01", "tpm_limit": "lots"}], "(a) tpm_limit: 'lots' is not a whole number"),
        ([{"alias": "a", "unit": "thor-01", "max_budget": "-5"}], "(a) max_budget: '-5' must be 0 or more"),
        (
            [{"alias": "a", "unit": "thor-01", "budget_duration": "30 days"}],
            "(a) budget_duration '30 days' is not a duration LiteLLM accepts",
        ),
        ([{"alias": "a", "unit": "thor-01", "rpm": "5"}], "roster row 1: unknown column(s) rpm"),
        (["alice,thor-01"], "roster row 1: expected columns"),
        ({"alias": "a"}, "the roster must be a list"),
    ],
)
def test_malformed_rosters_are_refused_by_row(rows, message):
    with pytest.raises(AnsibleFilterError) as exc:
        roster.roster_keys(rows, UNITS, DEFAULTS)
    assert message in str(exc.value)


def test_key_requests_carry_alias_raw_key_settings_and_metadata():
    entries = roster.roster_keys([{"alias": "alice", "unit": "thor-01", "team": "eng"}], UNITS, DEFAULTS)
    entries.append({"alias": "org", "role": "organiser", "settings": {}})
    assert roster.key_requests(entries, {"alice": "sk-a" * 5, "org": "sk-o" * 5}, "thor-01") == [
        {
            **DEFAULTS,
            "key_alias": "alice",
            "key": "sk-a" * 5,
            "metadata": {"unit": "thor-01", "role": "attendee", "team": "eng"},
        },
        {"key_alias": "org", "key": "sk-o" * 5, "metadata": {"unit": "thor-01", "role": "organiser"}},
    ]


def test_key_requests_need_a_raw_key_for_every_alias():
    with pytest.raises(AnsibleFilterError, match="no raw key was made for 'bob'"):
        roster.key_requests([{"alias": "bob"}], {}, "thor-01")

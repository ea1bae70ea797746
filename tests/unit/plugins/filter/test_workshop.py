"""A workshop's totals: per unit and for the fleet, equal to the sums of the attendees' rows."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter.workshop import usage_totals


def row(unit, requests, spend, first=None, last=None):
    return {
        "unit": unit,
        "requests": requests,
        "prompt_tokens": 10 * requests,
        "completion_tokens": 2 * requests,
        "total_tokens": 12 * requests,
        "spend": spend,
        "first_request": first,
        "last_request": last,
    }


def test_units_in_name_order_then_the_fleet():
    rows = [
        row("thor-02", 3, 0.5, "2026-12-07T10:00:00", "2026-12-07T11:00:00"),
        row("thor-01", 1, 0.25, "2026-12-07T09:30:00", "2026-12-07T09:30:00"),
        row("thor-02", 0, 0.0),
        {**row("thor-01", 2, None, "2026-12-07T12:00:00", "2026-12-07T12:05:00"), "total_tokens": None},
    ]
    totals = usage_totals(rows)
    assert [t["unit"] for t in totals] == ["thor-01", "thor-02", "fleet"]
    one, two, fleet = totals
    assert (one["keys"], one["requests"], one["spend"], one["total_tokens"]) == (2, 3, 0.25, 12)
    assert (one["first_request"], one["last_request"]) == ("2026-12-07T09:30:00", "2026-12-07T12:05:00")
    assert (two["keys"], two["requests"], two["prompt_tokens"]) == (2, 3, 30)
    assert (fleet["keys"], fleet["requests"], fleet["spend"]) == (4, 6, 0.75)
    assert (fleet["first_request"], fleet["last_request"]) == ("2026-12-07T09:30:00", "2026-12-07T12:05:00")


def test_a_fleet_nobody_used():
    assert usage_totals([]) == [
        {
            "unit": "fleet",
            "keys": 0,
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "spend": 0,
            "first_request": None,
            "last_request": None,
        }
    ]


@pytest.mark.parametrize("rows", [{"unit": "thor-01"}, [{"alias": "a"}], ["thor-01"]])
def test_rows_without_their_unit_are_refused(rows):
    with pytest.raises(AnsibleFilterError, match="each with its unit"):
        usage_totals(rows)

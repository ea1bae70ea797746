"""whole_number and decimal_number: numbers, or strings that are exactly numbers, for the roles' preflights."""

import pytest
from ansible_collections.thorfleet.llm.plugins.test.numbers import decimal_number, whole_number

WHOLE = [12434, 0, -4, "12434", "0", "-4"]
# What `| int` or the argument spec's int would read as a number while the services get the text as written.
NOT_WHOLE = [12434.0, 12434.5, "12434.5", "12434.0", " 12434", "12434 ", "12434\n", "+1", "007", "1e3", "", None]
NOT_WHOLE += [True, [1], {"port": 1}]
DECIMAL = [0.85, 1, 0, "0.85", "1", "1.0", "-0.5", 2.5]
NOT_DECIMAL = ["0.85 ", " 0.85", "0.85\n", ".85", "0.", "1e-1", "nan", "inf", float("nan"), float("inf"), "", None]
NOT_DECIMAL += [False, [0.5]]


@pytest.mark.parametrize("value", WHOLE, ids=repr)
def test_whole_numbers(value):
    assert whole_number(value)


@pytest.mark.parametrize("value", NOT_WHOLE, ids=repr)
def test_what_only_looks_like_a_whole_number(value):
    assert not whole_number(value)


@pytest.mark.parametrize("value", DECIMAL, ids=repr)
def test_decimal_numbers(value):
    assert decimal_number(value)


@pytest.mark.parametrize("value", NOT_DECIMAL, ids=repr)
def test_what_only_looks_like_a_decimal_number(value):
    assert not decimal_number(value)


def test_bounds_are_inclusive_and_optional():
    assert whole_number(1, 1, 65535) and whole_number("65535", 1, 65535) and whole_number(0, maximum=0)
    assert not whole_number(0, 1, 65535) and not whole_number("65536", 1, 65535) and not whole_number(-1, minimum=0)
    assert decimal_number("1", 0, 1) and decimal_number(0.05, 0, 1) and decimal_number(-3, maximum=0)
    assert not decimal_number(1.5, 0, 1) and not decimal_number("-0.1", minimum=0)

"""The whole_number and decimal_number tests: a setting is a number of the kind its role needs, for role preflights.

`| int` and `| float` read "12434.5" as 12434 and "0.85 " as 0.85, while the services get the text as written (and a
text that differs only in a space still counts as a change). A string passes only when it is the number written plainly:
digits, a leading '-', and for a decimal number one '.' between digits; no spaces, signs, exponents or leading zeros.
"""

from __future__ import annotations

import math
import re

_WHOLE = re.compile(r"-?(0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def _within(number, minimum, maximum) -> bool:
    return (minimum is None or number >= minimum) and (maximum is None or number <= maximum)


def whole_number(value, minimum=None, maximum=None) -> bool:
    """An int (not a bool), or a string that is exactly one, within [minimum, maximum] where given."""
    if isinstance(value, str):
        if not _WHOLE.fullmatch(value):
            return False
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        return False
    return _within(value, minimum, maximum)


def decimal_number(value, minimum=None, maximum=None) -> bool:
    """An int or a finite float (not a bool), or a string that is exactly one, within [minimum, maximum] where given."""
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            return False
        value = float(value)
    elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return _within(value, minimum, maximum)


class TestModule:
    def tests(self):
        return {"whole_number": whole_number, "decimal_number": decimal_number}

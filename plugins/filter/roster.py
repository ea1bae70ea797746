"""The keys roster: rows from a CSV or YAML file, checked and completed before any key is touched."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm_keys import (
    KEY_ALIAS_RULE,
    duration_error,
    expires_error,
    is_key_alias,
)

INTEGER_LIMITS = ("rpm_limit", "tpm_limit", "max_parallel_requests")
MONEY_LIMITS = ("max_budget", "soft_budget")
OVERRIDES = (*INTEGER_LIMITS, *MONEY_LIMITS, "budget_duration", "duration", "expires", "models")
COLUMNS = ("alias", "unit", "email", "team", *OVERRIDES)


def _number(value, kind, where):
    try:
        number = int(value) if kind is int else float(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"{where}: {value!r} is not a {'whole ' if kind is int else ''}number") from None
    if number < 0 or math.isnan(number):
        raise AnsibleFilterError(f"{where}: {value!r} must be 0 or more")
    return number


def roster_keys(rows, units, defaults=None):
    """Check roster rows and give each its settings: the defaults, then the row's own overrides.

    rows: dicts with alias, unit, optional email, team and limit overrides (CSV cells may be empty).
    units: the inventory's unit names. Returns [{alias, unit, email, team, settings}] in roster order.
    """
    if not isinstance(rows, list):
        raise AnsibleFilterError("roster_keys: the roster must be a list of rows (CSV with a header, or YAML)")
    defaults = dict(defaults or {})
    known = set(units)
    seen = {}
    out = []
    for number, row in enumerate(rows, start=1):
        where = f"roster row {number}"
        if not isinstance(row, dict):
            raise AnsibleFilterError(f"{where}: expected columns {', '.join(COLUMNS[:4])}, got {row!r}")
        row = {str(k).strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise AnsibleFilterError(f"{where}: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
        alias, unit = row.get("alias") or "", row.get("unit") or ""
        # One host (the fleet gateway): every key lives there.
        if not unit and len(known) == 1:
            unit = next(iter(known))
        if not alias:
            raise AnsibleFilterError(f"{where}: alias {alias!r} is missing")
        if not is_key_alias(alias):
            raise AnsibleFilterError(f"{where}: alias {alias!r} must be {KEY_ALIAS_RULE}")
        # LiteLLM tells "Alice" from "alice"; people reading the handout do not.
        if alias.lower() in seen:
            first, earlier = seen[alias.lower()]
            if first == alias:
                raise AnsibleFilterError(f"{where}: alias {alias!r} is already used by row {earlier}")
            raise AnsibleFilterError(f"{where}: alias {alias!r} differs only in case from {first!r} in row {earlier}")
        seen[alias.lower()] = (alias, number)
        if unit not in known:
            raise AnsibleFilterError(f"{where} ({alias}): unit {unit!r} is not in the inventory")
        settings = dict(defaults)
        for name in OVERRIDES:
            value = row.get(name)
            if value in (None, ""):
                continue
            if name in INTEGER_LIMITS:
                settings[name] = _number(value, int, f"{where} ({alias}) {name}")
            elif name in MONEY_LIMITS:
                settings[name] = _number(value, float, f"{where} ({alias}) {name}")
            elif name == "models":
                settings[name] = value if isinstance(value, list) else [m.strip() for m in str(value).split(";") if m]
            else:
                settings[name] = str(value)
        # A row's own end (duration or expires) replaces the defaults', whichever of the two that is.
        for own, other in (("duration", "expires"), ("expires", "duration")):
            if row.get(own) not in (None, "") and row.get(other) in (None, ""):
                settings.pop(other, None)
        for name in ("budget_duration", "duration"):
            problem = duration_error(settings[name], name) if settings.get(name) is not None else None
            if problem:
                raise AnsibleFilterError(f"{where} ({alias}) {problem}")
        if settings.get("expires") is not None:
            problem = expires_error(settings["expires"], datetime.now(timezone.utc))  # noqa: UP017 - as the module
            if problem:
                raise AnsibleFilterError(f"{where} ({alias}) {problem}")
            if settings.get("duration") is not None:
                raise AnsibleFilterError(f"{where} ({alias}): give duration or expires, not both")
        out.append(
            {
                "alias": alias,
                "unit": unit,
                "email": row.get("email") or "",
                "team": row.get("team") or "",
                "settings": settings,
            }
        )
    return out


def key_requests(entries, raw_keys, unit):
    """The litellm_key `keys` list for one unit: each entry's settings, alias, raw key and metadata."""
    requests = []
    for entry in entries:
        alias = entry["alias"]
        if alias not in raw_keys:
            raise AnsibleFilterError(f"key_requests: no raw key was made for {alias!r}")
        metadata = {"unit": unit, "role": entry.get("role", "attendee")}
        metadata.update({name: entry[name] for name in ("email", "team", "cohort") if entry.get(name)})
        requests.append({**entry.get("settings", {}), "key_alias": alias, "key": raw_keys[alias], "metadata": metadata})
    return requests


class FilterModule:
    def filters(self):
        return {"roster_keys": roster_keys, "key_requests": key_requests}

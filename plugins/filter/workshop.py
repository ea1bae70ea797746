"""A workshop's closing report: what each attendee used, added up per unit and for the fleet."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

SUMMED = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "spend")


def usage_totals(rows):
    """Per unit, then the fleet: keys, the sums of SUMMED, and the first and last use, from report rows (each with
    `unit`, SUMMED, `first_request` and `last_request`; null counts as 0 or as no use)."""
    if not isinstance(rows, list) or not all(isinstance(row, dict) and "unit" in row for row in rows):
        raise AnsibleFilterError("usage_totals: the input must be a list of report rows, each with its unit")

    def total(name, group):
        uses = [row for row in group if row.get("first_request")]
        return {
            "unit": name,
            "keys": len(group),
            **{field: sum(row.get(field) or 0 for row in group) for field in SUMMED},
            "first_request": min((row["first_request"] for row in uses), default=None),
            "last_request": max((row.get("last_request") or row["first_request"] for row in uses), default=None),
        }

    units = sorted({row["unit"] for row in rows})
    return [total(unit, [row for row in rows if row["unit"] == unit]) for unit in units] + [total("fleet", rows)]


class FilterModule:
    def filters(self):
        return {"usage_totals": usage_totals}

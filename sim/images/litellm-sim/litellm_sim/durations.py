"""LiteLLM's rules for durations and budget windows (litellm_core_utils/duration_parser.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .common import aware

DURATION_ALIASES = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}


def _normalize_duration(duration: str) -> str:
    return DURATION_ALIASES.get(duration.strip().lower(), duration)


def _shift_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + moment.month - 1 + months
    year, month_index = divmod(total, 12)
    month = month_index + 1
    last_day = (datetime(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def duration_in_seconds(duration: str, now: datetime | None = None) -> int:
    """litellm's duration_in_seconds: "<n>s|m|h|d|w|mo" (or hourly, daily, weekly, monthly), read
    from the start of the string; ValueError otherwise. Months count from `now`."""
    match = re.match(r"(\d+)(mo|[smhdw]?)", _normalize_duration(duration))
    if not match:
        raise ValueError("Invalid duration format")
    value, unit = int(match.group(1)), match.group(2)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if unit in seconds:
        return value * seconds[unit]
    if unit == "mo":
        start = now or datetime.now(UTC)
        return int((_shift_months(start, value) - start).total_seconds())
    raise ValueError(f"Unsupported duration unit, passed duration: {duration}")


def _first_of_month_reset(now: datetime, base_midnight: datetime) -> datetime:
    first = base_midnight.replace(day=1)
    if first <= now:
        return (
            first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
        )
    return first


def next_budget_reset(duration: str, now: datetime) -> datetime:
    """litellm's get_next_standardized_reset_time in UTC with resets at midnight: the end of the
    budget window that `now` is in. Days align to midnight, 7d to Monday, 30d and 1mo to the 1st of
    the month, hours/minutes/seconds to multiples of the value. ValueError for Nmo with N != 1."""
    now = aware(now).astimezone(UTC)
    match = re.match(r"(\d+)([a-z]+)", _normalize_duration(duration))
    base = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if not match:
        return base + timedelta(days=1)
    value, unit = int(match.group(1)), match.group(2)
    if unit in ("d", "w"):
        days = value if unit == "d" else value * 7
        if days == 0:
            return now
        if days == 1:
            return base + timedelta(days=1)  # midnight today has always passed
        if days == 7:
            monday = base + timedelta(days=(7 - now.weekday()) % 7)
            return monday + timedelta(days=7) if monday <= now else monday
        if days == 30:
            return _first_of_month_reset(now, base)
        return base + timedelta(days=days)
    if unit in ("h", "m", "s"):
        if value == 0:
            return now
        parts = {"h": now.hour, "m": now.minute, "s": now.second}
        current = parts[unit]
        nxt = current + value - (current % value) if current % value else current + value
        hour, minute, second = now.hour, now.minute, now.second
        if unit == "h":
            hour, minute, second = nxt, 0, 0
        elif unit == "m":
            hour, minute, second = now.hour + nxt // 60, nxt % 60, 0
        else:
            minute = now.minute + nxt // 60
            hour, minute, second = now.hour + minute // 60, minute % 60, nxt % 60
        if hour >= 24:
            return (base + timedelta(days=1)).replace(hour=hour % 24, minute=minute, second=second)
        return now.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if unit == "mo":
        if value != 1:
            raise ValueError("Monthly resets currently only support 1 month intervals")
        return _first_of_month_reset(now, base)
    return base + timedelta(days=1)


def budget_duration_error(budget_duration: str | None, now: datetime | None = None) -> str | None:
    """litellm's budget_duration_error: why a budget_duration cannot be stored, or None."""
    if budget_duration is None:
        return None
    now = now or datetime.now(UTC)
    try:
        if duration_in_seconds(budget_duration, now) > 0:
            next_budget_reset(budget_duration, now)
            return None
    except (ValueError, OverflowError):
        pass
    return f"Invalid budget_duration '{budget_duration}'. Use a format like '1h', '24h', '7d', or '30d'."

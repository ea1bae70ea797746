"""Request validation, as FastAPI and pydantic answer it: 422 {"detail": [...]} before any endpoint runs."""

from __future__ import annotations

import json
import math
import re
from typing import Any


class Invalid(Exception):
    """A request FastAPI refuses before the endpoint runs: 422 {"detail": [...]}."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def field_error(kind: str, loc: list[Any], msg: str) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": msg}


# rpm_limit_type and tpm_limit_type: a Literal of these.
LIMIT_TYPES = ("guaranteed_throughput", "best_effort_throughput", "dynamic")
_BOOL_STRINGS = {"0": False, "off": False, "f": False, "false": False, "n": False, "no": False}
_BOOL_STRINGS |= {"1": True, "on": True, "t": True, "true": True, "y": True, "yes": True}


def _coerce(kind: str, value: Any, loc: list[Any]) -> tuple[Any, list[dict[str, Any]]]:
    """pydantic's lax-mode coercion of a JSON value (or query string) to one field type."""
    if kind in ("int", "int>0", "int>=0", "int>=1", "int1..100"):
        if isinstance(value, bool):
            number = int(value)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float):
            if not math.isfinite(value):
                return None, [field_error("finite_number", loc, "Input should be a finite number")]
            if not value.is_integer():
                return None, [
                    field_error(
                        "int_from_float", loc, "Input should be a valid integer, got a number with a fractional part"
                    )
                ]
            number = int(value)
        elif isinstance(value, str):
            digits = re.fullmatch(r"([+-]?\d+)(?:\.0*)?", value.strip())
            if digits is None:
                return None, [
                    field_error(
                        "int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer"
                    )
                ]
            number = int(digits.group(1))
        else:
            return None, [field_error("int_type", loc, "Input should be a valid integer")]
        low = {"int>=0": 0, "int>=1": 1, "int1..100": 1}.get(kind)
        if low is not None and number < low:
            return None, [field_error("greater_than_equal", loc, f"Input should be greater than or equal to {low}")]
        if kind == "int>0" and number <= 0:
            return None, [field_error("greater_than", loc, "Input should be greater than 0")]
        if kind == "int1..100" and number > 100:
            return None, [field_error("less_than_equal", loc, "Input should be less than or equal to 100")]
        return number, []
    if kind == "float":
        if isinstance(value, bool | int | float):
            return float(value), []
        if isinstance(value, str):
            try:
                return float(value.strip()), []
            except ValueError:
                return None, [
                    field_error(
                        "float_parsing", loc, "Input should be a valid number, unable to parse string as a number"
                    )
                ]
        return None, [field_error("float_type", loc, "Input should be a valid number")]
    if kind == "str":
        if isinstance(value, str):
            return value, []
        return None, [field_error("string_type", loc, "Input should be a valid string")]
    if kind == "bool":
        if isinstance(value, bool):
            return value, []
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value), []
        if isinstance(value, str) and value.strip().lower() in _BOOL_STRINGS:
            return _BOOL_STRINGS[value.strip().lower()], []
        if isinstance(value, str | int):
            return None, [
                field_error("bool_parsing", loc, "Input should be a valid boolean, unable to interpret input")
            ]
        return None, [field_error("bool_type", loc, "Input should be a valid boolean")]
    if kind in ("list", "list[str]"):
        if not isinstance(value, list):
            return None, [field_error("list_type", loc, "Input should be a valid list")]
        if kind == "list":
            return value, []
        errors = [
            field_error("string_type", [*loc, index], "Input should be a valid string")
            for index, item in enumerate(value)
            if not isinstance(item, str)
        ]
        return (None, errors) if errors else (value, [])
    if kind in ("dict", "dict[str,int]"):
        if not isinstance(value, dict):
            return None, [field_error("dict_type", loc, "Input should be a valid dictionary")]
        if kind == "dict":
            return value, []
        coerced, errors = {}, []
        for key, item in value.items():
            coerced[key], problems = _coerce("int", item, [*loc, key])
            errors += problems
        return (None, errors) if errors else (coerced, [])
    if kind == "limit_type":
        if value in LIMIT_TYPES:
            return value, []
        expected = ", ".join(f"'{name}'" for name in LIMIT_TYPES[:-1]) + f" or '{LIMIT_TYPES[-1]}'"
        return None, [field_error("literal_error", loc, f"Input should be {expected}")]
    raise AssertionError(kind)


# The fields of LiteLLM's request models this server reads, in each model's declaration order (the
# order of pydantic's errors). Fields of the real models that are not listed are ignored here, as
# unknown fields are by the real proxy.
_GENERATE_REQUEST: tuple[tuple[str, str], ...] = (
    ("key_alias", "str"),
    ("duration", "str"),
    ("models", "list"),
    ("spend", "float"),
    ("max_budget", "float"),
    ("user_id", "str"),
    ("team_id", "str"),
    ("agent_id", "str"),
    ("max_parallel_requests", "int"),
    ("metadata", "dict"),
    ("tpm_limit", "int>=0"),
    ("rpm_limit", "int>=0"),
    ("budget_duration", "str"),
    ("allowed_cache_controls", "list"),
    ("config", "dict"),
    ("permissions", "dict"),
    ("model_rpm_limit", "dict"),
    ("model_tpm_limit", "dict"),
    ("mcp_rpm_limit", "dict[str,int]"),
    ("tag_rpm_limit", "dict[str,int]"),
    ("guardrails", "list[str]"),
    ("policies", "list[str]"),
    ("prompts", "list[str]"),
    ("blocked", "bool"),
    ("aliases", "dict"),
    ("key", "str"),
    ("tpd_limit", "int"),
    ("default_estimated_output_tokens", "int>0"),
    ("budget_id", "str"),
    ("tags", "list[str]"),
    ("disable_global_guardrails", "bool"),
    ("enable_prompt_caching", "bool"),
    ("throttle_on_budget_exceeded", "bool"),
    ("enforced_params", "list[str]"),
    ("allowed_passthrough_routes", "list"),
    ("denied_passthrough_routes", "list[str]"),
    ("rpm_limit_type", "limit_type"),
    ("tpm_limit_type", "limit_type"),
    ("soft_budget", "float"),
)
GENERATE_REQUEST = (
    *_GENERATE_REQUEST,
    ("send_invite_email", "bool"),
    ("organization_id", "str"),
    ("project_id", "str"),
)
UPDATE_REQUEST = (
    *_GENERATE_REQUEST,
    ("temp_budget_increase", "float"),
    ("organization_id", "str"),
    ("project_id", "str"),
)
DELETE_REQUEST = (("keys", "list[str]"), ("key_aliases", "list[str]"))
BLOCK_REQUEST = (("key", "str"),)


def read_json_body(raw: bytes) -> dict[str, Any]:
    """A management endpoint's body: 422 when missing or malformed. A body that is JSON but no
    object has been refused before (see http.Handler.key_post)."""
    if not raw.strip():
        raise Invalid([field_error("missing", ["body"], "Field required")])
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise Invalid([field_error("json_invalid", ["body", getattr(exc, "pos", 0)], "JSON decode error")]) from exc
    return body


def validate(
    body: dict[str, Any], model: tuple[tuple[str, str], ...], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fields of `model` present in `body`, coerced as pydantic would; Invalid (422) otherwise.
    Fields sent as null stay None: "explicitly null" differs from "left out"."""
    fields: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, kind in model:
        if name not in body:
            if name in required:
                errors.append(field_error("missing", ["body", name], "Field required"))
            continue
        value = body[name]
        if value is None and name not in required:
            fields[name] = None
            continue
        coerced, problems = _coerce(kind, value, ["body", name])
        errors += problems
        fields[name] = coerced
    if errors:
        raise Invalid(errors)
    return fields


def validate_query(query: dict[str, str], model: tuple[tuple[str, str, Any], ...]) -> dict[str, Any]:
    """Query parameters (name, kind, default) as FastAPI reads them; Invalid (422) otherwise."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, kind, default in model:
        if name not in query:
            values[name] = default
            continue
        coerced, problems = _coerce(kind, query[name], ["query", name])
        errors += problems
        values[name] = coerced
    if errors:
        raise Invalid(errors)
    return values

# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""The engine of thorfleet.llm.litellm_key: the rules a key must follow, a pure planner and the act step.

Written against LiteLLM 1.109.1 and docs/litellm-contract.md. One key goes read -> plan -> act:

- read: the key as the proxy holds it (by the hash of a supplied raw key, else by alias; the bulk form
  reads every key from one listing);
- plan (`plan_key`, no I/O): the wanted entry and what the proxy holds -> a `Plan` (action, keys to
  delete first, the body of /key/generate or the fields of /key/update, the key before and after);
- act (`KeyEngine`): sends the plan. Check mode and diff are decided there and nowhere else.
"""

from __future__ import annotations

import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ansible_collections.thorfleet.llm.plugins.module_utils._litellm import (
    MANAGED_MARKER,
    MAX_CONCURRENCY,
    LiteLLMError,
    hash_key,
    is_hash,
    is_managed,
)

UTC = timezone.utc  # noqa: UP017 - datetime.UTC needs Python 3.11; managed hosts may run older ones

# Metadata entry naming who owns a managed key (the `owner` option), so that `exclusive` spares the keys of others.
OWNER_MARKER = "thorfleet_owner"

# --- rules ----------------------------------------------------------------------------------------------

# A caller-chosen key: `sk-` + [A-Za-z0-9_-], 16 to 100 characters.
_CUSTOM_KEY_RE = re.compile(r"^sk-[A-Za-z0-9_-]+$")
MIN_CUSTOM_KEY_LENGTH = 16  # litellm.constants.MINIMUM_CUSTOM_KEY_LENGTH
MAX_CUSTOM_KEY_LENGTH = 100  # litellm.proxy.utils.is_valid_api_key, which /key/block and /key/unblock apply

# litellm.litellm_core_utils.duration_parser: `<int>(s|m|h|d|w|mo)`, plus four words it normalises first.
DURATION_WORDS = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
_DURATION_RE = re.compile(r"^([0-9]+)(mo|s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 31 * 86400}

# The one key_alias rule: the module, the roster filter and (as the test plugin thorfleet.llm.key_alias) the
# role preflights use it. LiteLLM 1.109.1 always refuses control characters and a '..' path segment; with
# litellm_settings.enable_key_alias_format_validation it also requires its _KEY_ALIAS_PATTERN
# (key_management_endpoints.py: 2-255 characters, [a-zA-Z0-9_-/.@], a letter or digit first and last).
# Aliases written here pass both, so an operator may turn that validation on. '/' is left out, which rules
# out path segments, and none of these characters needs quoting in the handout CSV.
_KEY_ALIAS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,253}[A-Za-z0-9]")
KEY_ALIAS_RULE = "2 to 255 letters, digits, '_', '.', '@' or '-', with a letter or digit first and last"

# Per-key settings, as LiteLLM names them. `duration` is create-only (LiteLLM keeps `expires`, not it); `expires`, an
# absolute end, is sent as the `duration` from now that ends then (LiteLLM takes no `expires` in a request).
SETTINGS = (
    "models",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "duration",
    "expires",
    "metadata",
    "user_id",
    "team_id",
    "blocked",
)
UPDATABLE = tuple(name for name in SETTINGS if name != "duration")
NON_NEGATIVE_INTS = ("rpm_limit", "tpm_limit", "max_parallel_requests")
NON_NEGATIVE_FLOATS = ("max_budget", "soft_budget")

# Metadata entries LiteLLM writes itself, carried over when the module sends the metadata whole. LiteLLM 1.109.1
# folds these key settings into metadata (litellm/proxy/_types.py: LiteLLM_ManagementEndpoint_MetadataFields,
# then ..._Premium) and keeps LiteLLM_Reserved_Metadata_Fields immutable once set (400 on a change).
SERVER_METADATA_FIELDS = frozenset(
    {
        "model_rpm_limit",
        "model_tpm_limit",
        "model_itpm_limit",
        "model_otpm_limit",
        "default_estimated_output_tokens",
        "default_estimated_output_tokens_per_model",
        "mcp_rpm_limit",
        "tag_rpm_limit",
        "rpm_limit_type",
        "tpm_limit_type",
        "enforced_params",
        "temp_budget_increase",
        "temp_budget_expiry",
        "allowed_vector_store_indexes",
        "enforced_batch_output_expires_after",
        "enforced_file_expires_after",
        "throttle_on_budget_exceeded",
        "enable_prompt_caching",
        "end_user_budget_id",
        "require_trace_id",
        # premium
        "disable_global_guardrails",
        "guardrails",
        "policies",
        "tags",
        "team_member_key_duration",
        "prompts",
        "logging",
        "secret_manager_settings",
        "allowed_passthrough_routes",
        "denied_passthrough_routes",
        # reserved
        "service_account_id",
    }
)

# What the module reports of a stored key: never `key` (LiteLLM echoes raw keys in some answers).
VIEW_FIELDS = (
    "token",
    "key_alias",
    "key_name",
    "models",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "max_budget",
    "soft_budget",
    "budget_duration",
    "budget_reset_at",
    "expires",
    "metadata",
    "user_id",
    "team_id",
    "blocked",
    "spend",
)
DIFF_IGNORED = ("spend", "budget_reset_at")
# How far a stored expiry may be from `expires` and still count as it: the request's own delay between the module's
# clock and the proxy's, with room for clocks a few seconds apart.
EXPIRES_TOLERANCE = timedelta(seconds=60)

ACTIONS = ("created", "updated", "deleted", "unchanged", "failed")
DELETE_BATCH = 100
SHOWN_WARNINGS = 20


def duration_error(value: object, name: str = "duration") -> str | None:
    """Why LiteLLM would refuse `value` as a (budget) duration, or None when it would take it."""
    if not isinstance(value, str):
        return f"{name} must be a string such as 1h, 24h, 7d or 30d"
    normalized = DURATION_WORDS.get(value.strip().lower(), value)
    match = _DURATION_RE.match(normalized)
    if not match:
        return (
            f"{name} {value!r} is not a duration LiteLLM accepts: a whole number followed by s, m, h, d, w or mo "
            "(for example 1h, 24h, 7d, 30d, 1mo), or one of hourly, daily, weekly, monthly"
        )
    count, unit = int(match.group(1)), match.group(2)
    if count <= 0:
        return f"{name} {value!r} must be longer than zero"
    try:
        datetime.now(UTC) + timedelta(seconds=count * _UNIT_SECONDS[unit])
    except OverflowError:
        return f"{name} {value!r} is too long: it ends after the year 9999"
    return None


def moment(value: object) -> datetime | None:
    """An ISO 8601 date and time with its UTC offset (or Z) as an aware datetime; None when it is not one."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None and parsed.utcoffset() is not None else None


def expires_error(value: object, now: datetime) -> str | None:
    """Why `value` cannot be a key's end (expires), or None."""
    if not isinstance(value, str) or moment(value) is None:
        return (
            f"expires {value!r} is not a date and time with its UTC offset, such as 2026-12-07T18:00:00Z or "
            "2026-12-07T19:00:00+01:00"
        )
    if moment(value) <= now:
        return f"expires {value!r} is in the past (it is {now.isoformat(timespec='seconds')} now)"
    return None


def duration_until(value: str, now: datetime) -> str:
    """The duration LiteLLM takes (whole seconds) that ends at `value`, from `now`."""
    return f"{max(1, math.ceil((moment(value) - now).total_seconds()))}s"


def custom_key_error(raw_key: object) -> str | None:
    """Why LiteLLM would refuse `raw_key` as a caller-chosen key, or None. Never quotes the key."""
    if not isinstance(raw_key, str) or not raw_key.startswith("sk-"):
        return "a caller-supplied key must start with 'sk-'"
    if len(raw_key) < MIN_CUSTOM_KEY_LENGTH:
        return f"a caller-supplied key must be at least {MIN_CUSTOM_KEY_LENGTH} characters long"
    if len(raw_key) > MAX_CUSTOM_KEY_LENGTH:
        return f"a caller-supplied key must be at most {MAX_CUSTOM_KEY_LENGTH} characters long"
    if not _CUSTOM_KEY_RE.match(raw_key):
        return "a caller-supplied key may only use letters, digits, '_' and '-' after 'sk-'"
    return None


def is_key_alias(value: object) -> bool:
    return isinstance(value, str) and _KEY_ALIAS_RE.fullmatch(value) is not None


def key_alias_error(alias: object) -> str | None:
    if not isinstance(alias, str) or not alias.strip():
        return "key_alias must be a non-empty string"
    if not is_key_alias(alias):
        return f"key_alias {alias!r} must be {KEY_ALIAS_RULE}"
    return None


# --- input ----------------------------------------------------------------------------------------------


def entries_from(params):
    """The keys to reconcile, each {key_alias, key, state, owner, <settings given>}; top-level settings are
    defaults for the entries of `keys`, and the owner is the call's."""
    defaults = {name: params[name] for name in SETTINGS if params.get(name) is not None}
    owner = params.get("owner")
    if params.get("keys") is None:
        return [
            dict(key_alias=params["key_alias"], key=params.get("key"), state=params["state"], owner=owner, **defaults)
        ]
    entries = []
    for item in params["keys"]:
        entry = dict(defaults)
        # An entry's own end (duration or expires) replaces the default's, whichever of the two that is.
        if item.get("duration") is not None or item.get("expires") is not None:
            entry.pop("duration", None)
            entry.pop("expires", None)
        entry.update({name: item[name] for name in SETTINGS if item.get(name) is not None})
        entry.update(key_alias=item["key_alias"], key=item.get("key"), state=item.get("state") or params["state"])
        entry["owner"] = owner
        entries.append(entry)
    return entries


def entry_errors(entry, now):
    """Everything wrong with one entry, before any request. Messages never quote a raw key."""
    errors = []
    alias_problem = key_alias_error(entry.get("key_alias"))
    if alias_problem:
        errors.append(alias_problem)
    if entry.get("key") is not None:
        key_problem = custom_key_error(entry["key"])
        if key_problem:
            errors.append(key_problem)
    for name in NON_NEGATIVE_INTS:
        if entry.get(name) is not None and entry[name] < 0:
            errors.append(f"{name} must be 0 or more, not {entry[name]}")
    for name in NON_NEGATIVE_FLOATS:
        value = entry.get(name)
        if value is not None and (not math.isfinite(value) or value < 0):
            errors.append(f"{name} must be a finite number of 0 or more, not {value}")
    for name in ("budget_duration", "duration"):
        if entry.get(name) is not None:
            problem = duration_error(entry[name], name)
            if problem:
                errors.append(problem)
    if entry.get("expires") is not None:
        problem = expires_error(entry["expires"], now)
        if problem:
            errors.append(problem)
        if entry.get("duration") is not None:
            errors.append("give duration (from when the key is made) or expires (an end time), not both")
    for model in entry.get("models") or []:
        if not isinstance(model, str) or not model.strip():
            errors.append("models must be non-empty names")
            break
    metadata = entry.get("metadata")
    if metadata is not None:
        if metadata.get(MANAGED_MARKER, True) is not True:
            errors.append(f"metadata.{MANAGED_MARKER} is reserved: the module always sets it to true")
        if OWNER_MARKER in metadata and (entry.get("owner") is None or metadata[OWNER_MARKER] != entry["owner"]):
            errors.append(f"metadata.{OWNER_MARKER} is reserved: the module sets it from owner")
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as exc:
            errors.append(f"metadata is not JSON: {exc}")
    return errors


def input_errors(params, entries, now):
    errors = []
    if params["timeout"] <= 0:
        errors.append("timeout must be more than 0 seconds")
    if params["retries"] < 0:
        errors.append("retries must be 0 or more")
    if not 1 <= params["concurrency"] <= MAX_CONCURRENCY:
        errors.append(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
    if params.get("owner") is not None and not params["owner"].strip():
        errors.append("owner must not be empty: leave it out for keys without an owner")
    if params["exclusive"] and params.get("keys") is None:
        errors.append("exclusive needs keys: it removes managed keys that keys does not list")
    bulk = params.get("keys") is not None
    for index, entry in enumerate(entries):
        where = f"keys[{index}] (key_alias {entry.get('key_alias')!r}): " if bulk else ""
        errors.extend(where + problem for problem in entry_errors(entry, now))
    aliases = {}
    tokens = {}
    for entry in entries:
        aliases.setdefault(entry["key_alias"], 0)
        aliases[entry["key_alias"]] += 1
        if entry.get("key"):
            tokens.setdefault(hash_key(entry["key"]), []).append(entry["key_alias"])
    duplicates = sorted(alias for alias, count in aliases.items() if count > 1)
    if duplicates:
        errors.append("duplicate key_alias in keys: " + ", ".join(duplicates))
    for owners in tokens.values():
        if len(owners) > 1:
            errors.append("the same raw key is given for several aliases: " + ", ".join(sorted(owners)))
    return errors


# --- comparing ------------------------------------------------------------------------------------------


def key_view(row):
    """What the module reports of a stored key (or of LiteLLM's answer to /key/generate)."""
    view = {name: row.get(name) for name in VIEW_FIELDS}
    if view["soft_budget"] is None and isinstance(row.get("litellm_budget_table"), dict):
        view["soft_budget"] = row["litellm_budget_table"].get("soft_budget")
    if view["models"] is None:
        view["models"] = []
    if not isinstance(view["metadata"], dict):
        view["metadata"] = {}
    return view


def diff_view(view):
    return {name: value for name, value in (view or {}).items() if name not in DIFF_IGNORED}


def whole_metadata(wanted, stored, owner=None):
    """The metadata to store: what was asked for (or, if nothing was, what is stored), the fields LiteLLM
    keeps in metadata and the stored owner carried over, the marker, and the owner when one is given."""
    stored = stored if isinstance(stored, dict) else {}
    if wanted is None:
        metadata = dict(stored)
    else:
        kept = SERVER_METADATA_FIELDS | {OWNER_MARKER}
        metadata = {name: value for name, value in stored.items() if name in kept}
        metadata.update(wanted)
    metadata[MANAGED_MARKER] = True
    if owner is not None:
        metadata[OWNER_MARKER] = owner
    return metadata


def owner_of(row):
    metadata = row.get("metadata")
    return metadata.get(OWNER_MARKER) if isinstance(metadata, dict) else None


def same_end(wanted, stored):
    """Whether a stored expiry is the end `wanted` (within EXPIRES_TOLERANCE)."""
    stored_moment = moment(stored) if stored else None
    if stored_moment is None and stored:
        stored_moment = moment(f"{stored}+00:00")  # LiteLLM's own timestamps may come without an offset: UTC
    return stored_moment is not None and abs(stored_moment - moment(wanted)) <= EXPIRES_TOLERANCE


def same(name, wanted, stored):
    if name == "models":
        return sorted(wanted) == sorted(stored or [])
    if name == "blocked":
        return bool(stored) == wanted
    if name in NON_NEGATIVE_FLOATS:
        return stored is not None and float(stored) == float(wanted)
    return stored == wanted


def changes_for(entry, view, now):
    """The fields to send to /key/update: only those that differ; never `duration`; `metadata` whole; `expires` as
    the duration from `now` that ends then."""
    changes = {}
    for name in UPDATABLE:
        if name == "expires":
            if entry.get(name) is not None and not same_end(entry[name], view.get(name)):
                changes["duration"] = duration_until(entry[name], now)
        elif name == "metadata":
            metadata = whole_metadata(entry.get("metadata"), view.get("metadata"), entry.get("owner"))
            if metadata != view.get("metadata"):
                changes["metadata"] = metadata
        elif entry.get(name) is not None and not same(name, entry[name], view.get(name)):
            changes[name] = entry[name]
    if view.get("key_alias") != entry["key_alias"]:
        changes["key_alias"] = entry["key_alias"]
    return changes


def generate_body(entry, now):
    body = {"key_alias": entry["key_alias"]}
    if entry.get("key"):
        body["key"] = entry["key"]
    for name in SETTINGS:
        if name not in ("metadata", "expires") and entry.get(name) is not None:
            body[name] = entry[name]
    if entry.get("expires") is not None:
        body["duration"] = duration_until(entry["expires"], now)
    body["metadata"] = whole_metadata(entry.get("metadata") or {}, {}, entry.get("owner"))
    return body


def raw_key_in(answer):
    """The raw key in LiteLLM's answer to /key/generate (`key`), if it holds one."""
    value = answer.get("key") if isinstance(answer, dict) else None
    return value if isinstance(value, str) and value.startswith("sk-") else None


def created_view(entry, now, answer=None):
    """The key as created (from LiteLLM's answer) or, without an answer, as it would be."""
    answer = dict(answer or {})
    raw_key = entry.get("key") or raw_key_in(answer)
    source = {name: value for name, value in generate_body(entry, now).items() if name not in ("key", "duration")}
    if entry.get("expires") is not None:
        source["expires"] = entry["expires"]
    source.update({name: value for name, value in answer.items() if name in VIEW_FIELDS and value is not None})
    view = key_view(source)
    if raw_key:
        view["token"] = hash_key(raw_key)
    else:
        hashes = [answer.get(name) for name in ("token_id", "token") if is_hash(answer.get(name))]
        view["token"] = hashes[0] if hashes else None
    view["key_name"] = answer.get("key_name") or ("sk-..." + raw_key[-4:] if raw_key else None)
    if entry.get("duration") is not None:
        view["duration"] = entry["duration"]
    return view


def updated_view(view, changes, wanted_expires):
    """The key as updated: the changes, with an end sent as a duration shown as the end."""
    after = {**view, **changes}
    if "duration" in after:
        del after["duration"]
        after["expires"] = wanted_expires
    return after


def expired(view, now):
    expires = view.get("expires")
    if not expires:
        return False
    try:
        moment = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment <= now


# --- planning (pure) ------------------------------------------------------------------------------------


class Conflict(Exception):
    pass


@dataclass
class Plan:
    """What to do to one key. `delete` (tokens) goes first; then /key/generate with `body` (created) or
    /key/update with `changes` (updated, when there are any)."""

    action: str
    key_alias: str
    token: str | None
    delete: list = field(default_factory=list)
    body: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)
    changed_fields: list = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def plan_key(entry, by_hash, alias_rows, now, alias_conflict="fail"):
    """The plan that brings one key to `entry`, given the key stored under the hash of `entry["key"]`
    (`by_hash`, or None), the keys holding its alias (`alias_rows`) and the time. Raises Conflict."""
    alias = entry["key_alias"]
    token = hash_key(entry["key"]) if entry.get("key") else None

    if entry["state"] == "absent":
        doomed = {}
        for row in ([by_hash] if by_hash else []) + list(alias_rows):
            doomed[row["token"]] = row
        if not doomed:
            return Plan("unchanged", alias, token)
        before = key_view(by_hash or next(iter(doomed.values())))
        return Plan("deleted", alias, before["token"], delete=sorted(doomed), before=before)

    if token is None and len(alias_rows) > 1:
        raise Conflict(
            f"{len(alias_rows)} keys carry key_alias {alias!r}; LiteLLM requires aliases to be unique. "
            "Remove the extra keys, or give the raw key of the one to keep"
        )
    current = by_hash if token else (alias_rows[0] if alias_rows else None)
    # Only a supplied key can be kept apart from the key holding its alias.
    holders = [row for row in alias_rows if current is None or row["token"] != current["token"]] if token else []
    warnings = []
    if holders:
        if alias_conflict != "replace":
            raise Conflict(
                f"alias conflict: key_alias {alias!r} belongs to another key (token {holders[0]['token'][:12]}...) "
                "while the supplied key is not stored under it. Set alias_conflict=replace to delete that key "
                "and store the supplied one, or delete it first (state=absent without key)"
            )
        warnings.append(f"key_alias {alias!r}: replaced the key that held the alias (alias_conflict=replace)")
    delete = sorted(row["token"] for row in holders)

    if current is None:
        body = generate_body(entry, now)
        changed = sorted(name for name in body if name != "key")
        after = created_view(entry, now)
        return Plan("created", alias, token, delete, body=body, changed_fields=changed, after=after, warnings=warnings)

    view = key_view(current)
    view["token"] = current["token"]
    if entry.get("duration") is not None and not view.get("expires"):
        warnings.append(
            f"key_alias {alias!r}: duration applies only when a key is created, and this key never expires. "
            "Delete it (state=absent) and run again to apply the duration"
        )
    if expired(view, now):
        warnings.append(f"key_alias {alias!r}: the key expired at {view['expires']}")
    changes = changes_for(entry, view, now)
    return Plan(
        "updated" if changes or holders else "unchanged",
        alias,
        view["token"],
        delete,
        changes=changes,
        changed_fields=sorted("expires" if name == "duration" else name for name in changes),
        before=view,
        after=updated_view(view, changes, entry.get("expires")),
        warnings=warnings,
    )


def exclusive_extras(stored, entries, owner=None):
    """The managed keys `exclusive` removes: those of `owner` (None: of no owner) whose alias and hash no
    entry lists."""
    aliases = {entry["key_alias"] for entry in entries}
    tokens = {hash_key(entry["key"]) for entry in entries if entry.get("key")}
    return [
        row
        for row in stored
        if is_managed(row)
        and owner_of(row) == owner
        and row.get("key_alias") not in aliases
        and row["token"] not in tokens
    ]


# --- reading and acting ---------------------------------------------------------------------------------


def lookup(client, entry):
    """Read one key as the contract says: by the hash of a supplied key, else (or when the alias differs)
    by alias. Returns (found_by_hash, keys_holding_the_alias)."""
    token = hash_key(entry["key"]) if entry.get("key") else None
    by_hash = client.key_info(token) if token else None
    if by_hash is not None and by_hash.get("key_alias") == entry["key_alias"]:
        return by_hash, [by_hash]
    return by_hash, client.find_by_alias(entry["key_alias"])


def public(result):
    """A per-key result of the bulk form, without the before/after views (those go to the diff)."""
    return {name: value for name, value in result.items() if name not in ("before", "after")}


class KeyEngine:
    """Reads, plans and acts for the module. Every change to the proxy goes through `_send`, the one place
    that knows check mode; the diff is added by `_with_diff`, the one place that knows diff mode.
    `run_single` and `run_bulk` return the module's result (with `failed` and `msg` when it failed)."""

    def __init__(self, client, check_mode=False, diff=False, alias_conflict="fail"):
        self.client = client
        self.check_mode = check_mode
        self.diff = diff
        self.alias_conflict = alias_conflict
        self.warnings = []

    def _send(self, request, *args, **kwargs):
        """Send a change; in check mode, nothing (None)."""
        return None if self.check_mode else request(*args, **kwargs)

    def _with_diff(self, output, before, after):
        if self.diff:
            output["diff"] = {"before": before, "after": after}
        return output

    def shown_warnings(self):
        shown = self.warnings[:SHOWN_WARNINGS]
        if len(self.warnings) > SHOWN_WARNINGS:
            shown.append(f"... and {len(self.warnings) - SHOWN_WARNINGS} more warnings like these")
        return shown

    # --- one key -------------------------------------------------------------------------------------

    def reconcile(self, entry, by_hash, alias_rows):
        """Plan one key from what was read, and act; a result dict. Raises LiteLLMError or Conflict."""
        now = datetime.now(UTC)
        plan = plan_key(entry, by_hash, alias_rows, now, self.alias_conflict)
        if plan.delete:
            self._send(self.client.delete_keys, tokens=plan.delete)
        result = dict(
            key_alias=plan.key_alias,
            token=plan.token,
            action=plan.action,
            changed=plan.action != "unchanged",
            changed_fields=plan.changed_fields,
            before=plan.before,
            after=plan.after,
        )
        if plan.action == "created":
            answer = self._send(self._generate, plan)
            result["after"] = created_view(entry, now, answer)
            result["token"] = result["after"]["token"]
            if not entry.get("key") and raw_key_in(answer):
                result["key"] = answer["key"]
        elif plan.changes:
            self._send(self.client.update_key, plan.token, plan.changes)
        self.warnings.extend(plan.warnings)
        return result

    def _generate(self, plan):
        try:
            return self.client.generate_key(plan.body)
        except LiteLLMError as exc:
            # A retried generate whose first attempt did reach the proxy fails as a duplicate: it is there.
            stored = self.client.key_info(plan.token) if plan.token and exc.attempts > 1 and exc.status else None
            if stored is None or stored.get("key_alias") != plan.key_alias:
                raise
            return dict(stored, key_name=stored.get("key_name"))

    def run_single(self, entry):
        try:
            result = self.reconcile(entry, *lookup(self.client, entry))
        except LiteLLMError as exc:
            request = f"{exc.method} {exc.path}"
            return dict(failed=True, msg=str(exc), status=exc.status, request=request, key_alias=entry["key_alias"])
        except Conflict as exc:
            return dict(failed=True, msg=str(exc), key_alias=entry["key_alias"])
        output = dict(
            changed=result["changed"],
            action=result["action"],
            key_alias=result["key_alias"],
            token=result["token"],
            changed_fields=result["changed_fields"],
            key_info=result["after"],
        )
        if "key" in result:
            output["key"] = result["key"]
        return self._with_diff(output, diff_view(result["before"]), diff_view(result["after"]))

    # --- a roster ------------------------------------------------------------------------------------

    def run_bulk(self, entries, exclusive=False, concurrency=8, owner=None):
        try:
            stored = self.client.list_all_keys()
        except LiteLLMError as exc:
            return dict(failed=True, msg=str(exc), status=exc.status, request=f"{exc.method} {exc.path}")
        by_token = {row["token"]: row for row in stored}
        by_alias = {}
        for row in stored:
            by_alias.setdefault(row.get("key_alias"), []).append(row)

        def one(entry):
            token = hash_key(entry["key"]) if entry.get("key") else None
            try:
                by_hash, alias_rows = self._read_listed(entry, token, by_token, by_alias)
                return self.reconcile(entry, by_hash, alias_rows)
            except (LiteLLMError, Conflict) as exc:
                return dict(key_alias=entry["key_alias"], token=token, action="failed", changed=False, msg=str(exc))
            except Exception as exc:  # one broken entry must not hide the results of the others
                message = self.client.redact(f"{type(exc).__name__}: {exc}")
                return dict(key_alias=entry["key_alias"], token=token, action="failed", changed=False, msg=message)

        extras = exclusive_extras(stored, entries, owner) if exclusive else []
        batches = [extras[start : start + DELETE_BATCH] for start in range(0, len(extras), DELETE_BATCH)]
        workers = max(1, min(concurrency, len(entries) + len(batches)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            entry_results = list(pool.map(one, entries))
            removed = [result for batch in pool.map(self._remove, batches) for result in batch]

        results = entry_results + removed
        counts = {action: sum(1 for result in results if result["action"] == action) for action in ACTIONS}
        output = dict(
            changed=any(result.get("changed") for result in results),
            results=[public(result) for result in results],
            created=counts["created"],
            updated=counts["updated"],
            deleted=counts["deleted"],
            unchanged=counts["unchanged"],
            failed_keys=counts["failed"],
        )
        changed = [result for result in results if result.get("changed")]
        output = self._with_diff(
            output,
            {result["key_alias"] or result["token"]: diff_view(result.get("before")) for result in changed},
            {result["key_alias"] or result["token"]: diff_view(result.get("after")) for result in changed},
        )
        if counts["failed"]:
            failures = [f"{result['key_alias']}: {result['msg']}" for result in results if result["action"] == "failed"]
            shown = "; ".join(failures[:10]) + (f"; and {len(failures) - 10} more" if len(failures) > 10 else "")
            output.update(failed=True, msg=f"{len(failures)} of {len(results)} keys failed: {shown}")
        return output

    def _read_listed(self, entry, token, by_token, by_alias):
        """The key from the listing. The contract says to look a custom key up by its hash before
        generating it anyway (a duplicate custom key is answered 200 and not stored): when the listing
        missed it, ask."""
        by_hash = by_token.get(token) if token else None
        alias_rows = by_alias.get(entry["key_alias"], [])
        if entry["state"] == "present" and token and by_hash is None:
            by_hash = self.client.key_info(token)
            if by_hash is not None:
                same_alias = by_hash.get("key_alias") == entry["key_alias"]
                alias_rows = [by_hash] if same_alias else self.client.find_by_alias(entry["key_alias"])
        return by_hash, alias_rows

    def _remove(self, batch):
        """Delete keys `exclusive` found unlisted, in one request."""
        try:
            self._send(self.client.delete_keys, tokens=[row["token"] for row in batch])
            outcome = dict(action="deleted", changed=True)
        except LiteLLMError as exc:
            outcome = dict(action="failed", changed=False, msg=str(exc))
        return [
            dict(
                outcome,
                key_alias=row.get("key_alias"),
                token=row["token"],
                changed_fields=[],
                exclusive=True,
                before=key_view(row),
                after={},
            )
            for row in batch
        ]

#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: litellm_spend_info
short_description: Spend and token usage of every virtual key on a LiteLLM proxy
version_added: 0.1.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - thorfleet.llm.litellm
description:
  - Lists every key on a LiteLLM proxy (C(GET /key/list), pages of 100) with its running spend and budget, and
    adds up each key's spend log rows (C(GET /spend/logs?api_key=<hash>)) into requests and prompt,
    completion and total tokens.
  - Reads only. Keys are named by alias and hash, never by raw key.
attributes:
  check_mode:
    support: full
    details:
      - The module changes nothing, so it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  concurrency:
    description:
      - How many keys' spend logs are read at the same time.
    type: int
    default: 8
  managed_only:
    description:
      - Report only the keys this collection manages (C(thorfleet_managed) in their metadata).
    type: bool
    default: false
  logs:
    description:
      - Read each key's spend log rows for its requests and tokens.
      - C(false) reads only the key list (one request per 100 keys), for the spend and the count alone; the
        request and token fields are then null.
    type: bool
    default: true
  ending_within:
    description:
      - Seconds ahead for C(ending_soon) in RV(totals), the keys whose end (C(expires)) comes within them.
    type: int
    default: 3600
    version_added: 0.2.0
notes:
  - The spend logs need the proxy's database. Without one, LiteLLM answers HTTP 500 and the task fails.
  - LiteLLM returns at most the newest rows of a key's spend log in one answer; RV(usage[].logs_complete) says
    whether the token counts cover every request, and C(spend) is always the proxy's own running total.
seealso:
  - module: thorfleet.llm.litellm_key
  - name: LiteLLM spend tracking
    description: LiteLLM's documentation of spend tracking.
    link: https://docs.litellm.ai/docs/proxy/cost_tracking
"""

EXAMPLES = r"""
- name: Spend per key on this unit
  thorfleet.llm.litellm_spend_info:
    master_key: "{{ litellm_proxy_master_key }}"
  register: spend

- name: The ten biggest spenders
  ansible.builtin.debug:
    msg: "{{ spend.usage | sort(attribute='spend', reverse=true) | map(attribute='key_alias') | list | first(10) }}"
"""

RETURN = r"""
usage:
  description: One entry per key, sorted by alias.
  returned: always
  type: list
  elements: dict
  contains:
    key_alias:
      description: The key's alias (null when it has none).
      type: str
      sample: alice
    token:
      description: The key's sha256 hash, as LiteLLM stores it.
      type: str
    key_name:
      description: LiteLLM's abbreviation of the raw key (C(sk-...) and its last 4 characters).
      type: str
      sample: sk-...x9Qa
    user_id:
      description: The key's user.
      type: str
    team_id:
      description: The key's team.
      type: str
    email:
      description: C(email) from the key's metadata, when there is one.
      type: str
    spend:
      description: The key's running spend in USD, as the proxy counts it (reset when a budget window ends).
      type: float
      sample: 0.0123
    max_budget:
      description: The key's budget in USD, or null.
      type: float
    budget_duration:
      description: The key's budget window, or null.
      type: str
    blocked:
      description: Whether the key is blocked (LiteLLM refuses it; its history stays).
      type: bool
    expires:
      description: When the key stops working, as LiteLLM stores it (UTC), or null when it never does.
      type: str
      sample: "2026-12-07T18:00:00"
    role:
      description: C(role) from the key's metadata (C(attendee) or C(organiser) for a roster's keys), when there is one.
      type: str
    cohort:
      description: C(cohort) from the key's metadata (the workshop cohort its roster was issued for), when there is one.
      type: str
    requests:
      description:
        - Spend log rows of the key.
        - Null with O(logs=false), and so are the token, log spend and last request fields.
      type: int
      sample: 12
    prompt_tokens:
      description: Prompt tokens over those rows.
      type: int
    completion_tokens:
      description: Completion tokens over those rows.
      type: int
    total_tokens:
      description: Total tokens over those rows.
      type: int
    logs_spend:
      description: Spend over those rows, in USD.
      type: float
    logs_complete:
      description: False when the proxy cut the spend log answer short, so the counts above miss older rows.
      type: bool
    first_request:
      description: Start time of the oldest request among those rows, or null.
      type: str
    last_request:
      description: Start time of the newest request, or null.
      type: str
totals:
  description:
    - The sums over RV(usage) of spend, requests and tokens (null with O(logs=false)), the number of keys, and
      C(ending_soon), how many keys that work now (not blocked, not expired) stop working within O(ending_within)
      seconds.
  returned: always
  type: dict
  sample:
    {key_count: 3, ending_soon: 0, spend: 0.05, requests: 30, prompt_tokens: 900, completion_tokens: 300,
     total_tokens: 1200}
"""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm import (
    CONNECTION_SPEC,
    MAX_CONCURRENCY,
    LiteLLMError,
    client_from_params,
    is_managed,
)
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm_keys import UTC, moment

# litellm-sim and LiteLLM 1.109.1 return at most this many spend log rows in one answer.
SPEND_LOGS_CAP = 10000
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def argument_spec():
    return dict(
        **CONNECTION_SPEC,
        concurrency=dict(type="int", default=8),
        managed_only=dict(type="bool", default=False),
        logs=dict(type="bool", default=True),
        ending_within=dict(type="int", default=3600),
    )


def number(value, kind=float):
    try:
        return kind(value or 0)
    except (TypeError, ValueError):
        return kind(0)


def key_usage(key, logs):
    """One key's report row from its /key/list object and its spend log rows (None: not read)."""
    metadata = key.get("metadata") if isinstance(key.get("metadata"), dict) else {}
    row = dict(
        key_alias=key.get("key_alias"),
        token=key["token"],
        key_name=key.get("key_name"),
        user_id=key.get("user_id"),
        team_id=key.get("team_id"),
        email=metadata.get("email"),
        spend=number(key.get("spend")),
        max_budget=key.get("max_budget"),
        budget_duration=key.get("budget_duration"),
        blocked=key.get("blocked") is True,
        expires=key.get("expires"),
        role=metadata.get("role"),
        cohort=metadata.get("cohort"),
    )
    if logs is None:
        unread = ("requests", "logs_spend", "logs_complete", "first_request", "last_request", *TOKEN_FIELDS)
        return {**row, **dict.fromkeys(unread)}
    started = [str(log["startTime"]) for log in logs if log.get("startTime")]
    row.update(
        requests=len(logs),
        logs_spend=sum(number(log.get("spend")) for log in logs),
        logs_complete=len(logs) < SPEND_LOGS_CAP,
        first_request=min(started, default=None),
        last_request=max(started, default=None),
    )
    row.update({field: sum(number(log.get(field), int) for log in logs) for field in TOKEN_FIELDS})
    return row


def end_of(row):
    """A key's end as an aware datetime (LiteLLM stores UTC, at times without an offset), or None."""
    if not row.get("expires"):
        return None
    return moment(row["expires"]) or moment(f"{row['expires']}+00:00")


def totals(rows, now, ending_within):
    """Sums over the rows (request and token sums null when the logs were not read), and the working keys that end
    soon."""
    sums = {
        field: None if any(row[field] is None for row in rows) else sum(row[field] for row in rows)
        for field in ("requests", *TOKEN_FIELDS)
    }
    ends = [end_of(row) for row in rows if not row["blocked"]]
    soon = sum(1 for end in ends if end is not None and now < end <= now + timedelta(seconds=ending_within))
    return dict(key_count=len(rows), ending_soon=soon, spend=sum(row["spend"] for row in rows), **sums)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if not 1 <= params["concurrency"] <= MAX_CONCURRENCY:
        module.fail_json(msg=f"concurrency must be between 1 and {MAX_CONCURRENCY}, not {params['concurrency']}")
    client = client_from_params(params)
    try:
        keys = client.list_all_keys()
        if params["managed_only"]:
            keys = [key for key in keys if is_managed(key)]
        if params["logs"]:
            with ThreadPoolExecutor(max_workers=min(params["concurrency"], max(1, len(keys)))) as pool:
                logs = list(pool.map(lambda key: client.spend_logs(key["token"]), keys))
        else:
            logs = [None] * len(keys)
    except LiteLLMError as exc:
        module.fail_json(msg=str(exc), status=exc.status, request=f"{exc.method} {exc.path}")
    rows = sorted(map(key_usage, keys, logs), key=lambda row: (row["key_alias"] is None, row["key_alias"] or ""))
    module.exit_json(changed=False, usage=rows, totals=totals(rows, datetime.now(UTC), params["ending_within"]))


if __name__ == "__main__":
    main()

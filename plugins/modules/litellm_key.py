#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: litellm_key
short_description: Manage LiteLLM virtual keys, one at a time or a whole roster at once
version_added: 0.1.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - thorfleet.llm.litellm
description:
  - Creates, updates and deletes virtual API keys on a LiteLLM proxy through its admin API
    (C(/key/generate), C(/key/update), C(/key/delete), C(/key/info), C(/key/list)), authenticated with the
    proxy's master key.
  - A key is identified by its O(key_alias). When you also supply the raw O(key), it is looked up by its
    sha256 hash (LiteLLM stores only C(sha256(key))), so the raw key never travels in a URL. A raw key is
    only ever sent in the body of C(POST /key/generate).
  - The module reads the key, compares, and sends only what differs. C(/key/update) is sent with only the
    fields that changed; an unchanged O(budget_duration) is never resent (LiteLLM restarts the budget
    window whenever it receives one) and O(duration) is never sent to an existing key (see O(duration)).
    O(metadata) is sent whole, because LiteLLM replaces the stored metadata.
  - Every key this module writes carries C(thorfleet_managed=true) in its metadata. O(exclusive) deletes only
    keys carrying that marker, and only those of the same O(owner).
  - Heals a proxy whose database was lost. When a supplied O(key) is found neither by its hash nor by its
    alias, the key is created again with the same raw key, so clients holding it keep working.
  - Give O(keys) instead of O(key_alias) to reconcile a whole roster in one task. The module lists every
    key once (pages of 100) and then sends the changes from a pool of O(concurrency) threads.
  - Options left out are not managed. The module leaves whatever the proxy stores for them untouched.
attributes:
  check_mode:
    support: full
    details:
      - Makes no change. Read requests are still sent, and the result holds the key as it would be
        (RV(key_info)) and the fields that would change.
  diff_mode:
    support: full
    details:
      - Returns the key before and after as RV(diff), without raw keys.
  platform:
    platforms: posix
options:
  key_alias:
    description:
      - The name that identifies the key (for example the attendee's user name). It must be unique on the
        proxy, because LiteLLM refuses a second key with the same alias.
      - 2 to 255 letters, digits, C(_), C(.), C(@) or C(-), with a letter or digit first and last, so that LiteLLM
        takes it even with C(litellm_settings.enable_key_alias_format_validation) on. Roles check aliases with
        the same rule, the test P(thorfleet.llm.key_alias#test).
      - Required unless O(keys) is given. Mutually exclusive with O(keys).
    type: str
  key:
    description:
      - A raw key chosen by the caller, for example generated once on the controller and kept in Ansible
        Vault. It must start with C(sk-) and be 16 to 100 characters long, with only letters, digits, C(_)
        and C(-) after C(sk-).
      - The key is looked up by its sha256 hash. If the hash is found, that key is updated. If neither the
        hash nor O(key_alias) is found, for example after the proxy's database was wiped, the key is created
        with this raw key.
      - If the hash is not found but O(key_alias) belongs to another key, see O(alias_conflict).
      - When omitted, LiteLLM generates the key on creation and the module returns it once as RV(key).
    type: str
  state:
    description:
      - V(present) creates or updates the key. V(absent) deletes the key found by O(key_alias), and also the
        key found by the hash of O(key) when one is given.
      - With O(keys), this is the default for every entry that sets no O(keys[].state) of its own.
    type: str
    choices: [present, absent]
    default: present
  alias_conflict:
    description:
      - What to do when a supplied O(key) is not found by its hash but O(key_alias) belongs to another key.
        This happens when the raw key kept on the controller was replaced while the proxy kept the old one.
      - V(fail) stops with an error that names the alias, and changes nothing.
      - V(replace) deletes the other key and stores the supplied one under the alias. The old raw key stops
        working, and its spend history stays with the deleted key.
    type: str
    choices: [fail, replace]
    default: fail
  models:
    description:
      - Model names (as clients call them) the key may use. V([]) allows every model.
      - LiteLLM does not check these names against its C(model_list).
      - Compared as a set, so the order does not matter.
    type: list
    elements: str
  rpm_limit:
    description:
      - Requests per minute. Requests over the limit get HTTP 429. Must be 0 or more.
    type: int
  tpm_limit:
    description:
      - Tokens per minute. Must be 0 or more.
    type: int
  max_parallel_requests:
    description:
      - How many requests may run at the same time with this key. Must be 0 or more.
    type: int
  max_budget:
    description:
      - Spend, in the currency of the proxy's per-token prices, after which the key is refused. Must be 0 or
        more.
      - Changing it does not reset the spend.
    type: float
  soft_budget:
    description:
      - Spend at which LiteLLM alerts, without refusing requests. Must be 0 or more.
    type: float
  budget_duration:
    description:
      - How often the spend is reset to zero. The format is a whole number followed by C(s), C(m), C(h),
        C(d), C(w) or C(mo) (for example V(1h), V(24h), V(7d), V(30d), V(1mo)), or one of V(hourly), V(daily),
        V(weekly), V(monthly). This is what LiteLLM's duration parser accepts.
      - It is sent only when it differs from the stored value, because LiteLLM restarts the budget window
        whenever C(/key/update) carries one.
    type: str
  duration:
    description:
      - How long a new key stays valid, in the same format as O(budget_duration). When omitted, the key
        never expires.
      - Used only when the key is created. LiteLLM stores the resulting expiry date (RV(key_info.expires)),
        not the duration, so an existing key cannot be compared with it, and sending it again would move the
        expiry date on every run. It is therefore never sent to an existing key.
      - To apply a new duration to an existing key, delete the key (O(state=absent)) and create it again. With
        a supplied O(key), the same raw key keeps working.
      - The module warns when O(duration) is set and an existing key has no expiry date, and whenever a
        managed key has expired.
      - Mutually exclusive with O(expires) in a key's settings.
    type: str
  expires:
    description:
      - When the key stops working, as an ISO 8601 date and time with its UTC offset, such as
        V(2026-12-07T18:00:00Z) or V(2026-12-07T19:00:00+01:00). For example the end of a workshop, the same for
        every key of a cohort.
      - LiteLLM takes no end time in a request, only a duration from now; the module sends the duration, in whole
        seconds, that ends then, on creation and whenever the stored end differs from O(expires) by more than 60
        seconds (so an existing key is moved to a new end, unlike with O(duration), and a re-run changes nothing).
      - It must be in the future. Mutually exclusive with O(duration) in a key's settings; an entry of O(keys) that
        sets one of the two does not take the other from the top level.
    type: str
    version_added: 0.2.0
  metadata:
    description:
      - Free-form metadata stored with the key, for example the attendee's email and unit.
      - Sent whole whenever it differs, because LiteLLM replaces the stored metadata. C(thorfleet_managed=true)
        is always added, and C(thorfleet_owner) when O(owner) is set. Metadata fields that LiteLLM itself keeps
        there (for example C(model_rpm_limit), C(guardrails), C(tags) and C(service_account_id)) are carried over
        unless you set them, and so is a stored C(thorfleet_owner) when O(owner) is omitted.
      - When omitted, the stored metadata is left as it is, and only the marker (and the O(owner)) is added if it
        is missing.
    type: dict
  user_id:
    description:
      - LiteLLM user the key belongs to.
    type: str
  team_id:
    description:
      - LiteLLM team the key belongs to. The team must exist on the proxy.
    type: str
  blocked:
    description:
      - V(true) blocks the key (LiteLLM refuses it) without deleting it. V(false) unblocks it.
    type: bool
  keys:
    description:
      - Many keys in one task (the bulk form). Each entry takes the same per-key options as the module.
      - Options set at the top level of the task, outside O(keys) (O(state), O(models), the limits, the
        budgets, O(duration) or O(expires), O(metadata), O(user_id), O(team_id), O(blocked)), are defaults for every
        entry that does not set them. An entry's O(keys[].metadata) replaces the default metadata as a whole.
      - Aliases, and supplied raw keys, must be unique within the list.
      - Mutually exclusive with O(key_alias) and O(key).
    type: list
    elements: dict
    suboptions:
      key_alias:
        description: See O(key_alias).
        type: str
        required: true
      key:
        description: See O(key).
        type: str
      state:
        description: See O(state). Defaults to the top-level O(state).
        type: str
        choices: [present, absent]
      models:
        description: See O(models).
        type: list
        elements: str
      rpm_limit:
        description: See O(rpm_limit).
        type: int
      tpm_limit:
        description: See O(tpm_limit).
        type: int
      max_parallel_requests:
        description: See O(max_parallel_requests).
        type: int
      max_budget:
        description: See O(max_budget).
        type: float
      soft_budget:
        description: See O(soft_budget).
        type: float
      budget_duration:
        description: See O(budget_duration).
        type: str
      duration:
        description: See O(duration).
        type: str
      expires:
        description: See O(expires).
        type: str
        version_added: 0.2.0
      metadata:
        description: See O(metadata).
        type: dict
      user_id:
        description: See O(user_id).
        type: str
      team_id:
        description: See O(team_id).
        type: str
      blocked:
        description: See O(blocked).
        type: bool
  owner:
    description:
      - Who owns the keys this task writes, for example the role that issues them (V(open_webui)). It is stored in
        each key's metadata as C(thorfleet_owner), which is reserved like C(thorfleet_managed), and it limits
        O(exclusive) to keys of this owner.
      - With O(keys), it applies to every entry.
      - When omitted, the owner stored with a key is left as it is, and O(exclusive) deletes only keys without
        an owner.
    type: str
  concurrency:
    description:
      - With O(keys), the most requests in flight at once, from 1 to 64.
    type: int
    default: 8
  exclusive:
    description:
      - With O(keys), also delete every key carrying the C(thorfleet_managed) marker whose alias (and raw key)
        is not in O(keys) and whose owner (C(thorfleet_owner)) is O(owner); without O(owner), keys that have no
        owner. Keys created by other means, and keys of another owner, are never touched.
      - With an empty O(keys), this deletes every key the collection manages for O(owner).
    type: bool
    default: false
notes:
  - The input is checked before any request is sent. The module refuses negative limits and budgets, a
    O(budget_duration) or O(duration) that LiteLLM would not parse, a malformed O(key) or O(key_alias), and
    duplicate aliases or raw keys in O(keys).
  - The module decides on HTTP statuses only. A 404 from C(/key/info), or a key whose status is
    C(deleted), means that the key is absent. Any other error fails the task with the status, the proxy's
    message and the request path. Raw keys are redacted from every message.
  - LiteLLM answers HTTP 200 to C(/key/generate) with a custom key that already exists, and stores nothing.
    The module therefore always looks a supplied key up by its hash before it creates it.
  - All keys on the proxy need a database. Without one, every C(/key/*) request fails with HTTP 500.
  - Run the task with C(no_log=true) when LiteLLM generates the keys, because RV(key) holds the new raw key.
  - A C(POST /key/generate) without a supplied O(key) is not retried once it may have reached the proxy, for
    example after a timeout, because it could otherwise create a second key.
seealso:
  - name: LiteLLM virtual keys
    description: LiteLLM's documentation of key management.
    link: https://docs.litellm.ai/docs/proxy/virtual_keys
"""

EXAMPLES = r"""
- name: A key for Alice, generated by LiteLLM on the first run
  thorfleet.llm.litellm_key:
    master_key: "{{ litellm_master_key }}"
    key_alias: alice
    models: [Qwen3-VL-30B-A3B]
    rpm_limit: 10
    tpm_limit: 50000
    max_parallel_requests: 2
    max_budget: 5.0
    budget_duration: 30d
    duration: 30d
    metadata:
      team: engineering
      email: alice@example.com
  register: alice_key
  no_log: true

- name: The same key with a raw key kept on the controller (re-created as is if the database was lost)
  thorfleet.llm.litellm_key:
    api_url: "http://{{ inventory_hostname }}:12434"
    master_key: "{{ litellm_master_key }}"
    key_alias: alice
    key: "{{ vault_keys.alice }}"
    models: [Qwen3-VL-30B-A3B]
    rpm_limit: 10
  delegate_to: localhost

- name: Block a key without deleting it
  thorfleet.llm.litellm_key:
    master_key: "{{ litellm_master_key }}"
    key_alias: bob
    blocked: true

- name: Remove a key
  thorfleet.llm.litellm_key:
    master_key: "{{ litellm_master_key }}"
    key_alias: bob
    state: absent

- name: A whole roster in one task; keys no longer listed are removed
  thorfleet.llm.litellm_key:
    master_key: "{{ litellm_master_key }}"
    models: [Qwen3-VL-30B-A3B]  # defaults for every entry
    rpm_limit: 10
    max_budget: 5.0
    budget_duration: 7d
    keys: "{{ roster | map('combine', {'metadata': {'unit': inventory_hostname}}) }}"
    concurrency: 16
    exclusive: true
  no_log: true
  register: roster_keys

- name: A role's own key, which a roster run with exclusive (and no owner) never deletes
  thorfleet.llm.litellm_key:
    master_key: "{{ litellm_master_key }}"
    key_alias: open-webui
    key: "{{ vault_keys['open-webui'] }}"
    owner: open_webui

- name: Summary of the roster run
  ansible.builtin.debug:
    msg: >-
      {{ roster_keys.created }} created, {{ roster_keys.updated }} updated,
      {{ roster_keys.deleted }} deleted, {{ roster_keys.unchanged }} unchanged
"""

RETURN = r"""
action:
  description: What was done (or, in check mode, would be done) to the key.
  returned: success, without O(keys)
  type: str
  choices: [created, updated, deleted, unchanged]
  sample: updated
key_alias:
  description: The key's alias.
  returned: success, without O(keys)
  type: str
  sample: alice
token:
  description:
    - The key's sha256 hash (LiteLLM's C(token)), which identifies the key without revealing it.
    - Null in check mode when LiteLLM would generate the key, and when a key that did not exist stays absent.
  returned: success, without O(keys)
  type: str
  sample: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
key:
  description:
    - The raw key that LiteLLM generated in this run. It is returned only then, and only once, so keep it
      (and use C(no_log=true)).
    - Never returned for a supplied O(key). You already hold that key, and Ansible would mask its value
      anyway because O(key) is a no_log option.
  returned: when LiteLLM generated the key in this run
  type: str
  sample: sk-3mDk7tS9q2XbL0vWcH1e5A
changed_fields:
  description: The fields sent on creation, or the fields that differed and were sent with C(/key/update).
  returned: success, without O(keys)
  type: list
  elements: str
  sample: [rpm_limit, metadata]
key_info:
  description:
    - The key as stored after the run, or as it would be in check mode. Raw keys are never included.
    - Empty when the key is absent.
  returned: success, without O(keys)
  type: dict
  contains:
    token:
      description: sha256 of the raw key.
      type: str
    key_alias:
      description: The alias.
      type: str
    key_name:
      description: LiteLLM's masked form of the key, C(sk-...) followed by its last 4 characters.
      type: str
    models:
      description: Models the key may use (V([]) is all).
      type: list
    rpm_limit:
      description: Requests per minute.
      type: int
    tpm_limit:
      description: Tokens per minute.
      type: int
    max_parallel_requests:
      description: Concurrent requests.
      type: int
    max_budget:
      description: Hard budget.
      type: float
    soft_budget:
      description: Alerting budget.
      type: float
    budget_duration:
      description: Budget reset period.
      type: str
    budget_reset_at:
      description: When the spend is next reset.
      type: str
    expires:
      description: When the key stops working (null means never).
      type: str
    duration:
      description: The requested O(duration), present only on a key created in this run.
      type: str
    metadata:
      description: The stored metadata, C(thorfleet_managed) included, and C(thorfleet_owner) for a key with an owner.
      type: dict
    user_id:
      description: Owning user.
      type: str
    team_id:
      description: Owning team.
      type: str
    blocked:
      description: Whether the key is blocked.
      type: bool
    spend:
      description: Spend so far (in the current budget window when O(budget_duration) is set).
      type: float
  sample:
    token: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
    key_alias: alice
    key_name: sk-...4d2A
    models: [Qwen3-VL-30B-A3B]
    rpm_limit: 10
    metadata: {email: alice@example.com, thorfleet_managed: true}
diff:
  description: The key before and after (per alias with O(keys), changed keys only), without raw keys.
  returned: in diff mode
  type: dict
  sample: {before: {rpm_limit: 10}, after: {rpm_limit: 20}}
results:
  description: One entry per key of O(keys), plus one per key removed by O(exclusive).
  returned: with O(keys)
  type: list
  elements: dict
  contains:
    key_alias:
      description: The alias.
      type: str
    token:
      description: sha256 of the raw key (null when not known, in check mode).
      type: str
    action:
      description: V(created), V(updated), V(deleted), V(unchanged) or V(failed).
      type: str
    changed_fields:
      description: Fields sent (see RV(changed_fields)).
      type: list
      elements: str
    key:
      description: The raw key LiteLLM generated for this entry in this run (see RV(key)).
      type: str
      returned: when LiteLLM generated the key in this run
    exclusive:
      description: True for a key deleted because O(exclusive) is set and it is not listed.
      type: bool
      returned: for keys removed by O(exclusive)
    msg:
      description: Why this entry failed.
      type: str
      returned: when the entry failed
created:
  description: How many keys were created.
  returned: with O(keys)
  type: int
  sample: 3
updated:
  description: How many keys were updated.
  returned: with O(keys)
  type: int
  sample: 1
deleted:
  description: How many keys were deleted (state absent and exclusive).
  returned: with O(keys)
  type: int
  sample: 0
unchanged:
  description: How many keys needed no change.
  returned: with O(keys)
  type: int
  sample: 296
failed_keys:
  description: How many entries failed. When this is more than 0, the task fails after every other entry
    has been processed.
  returned: with O(keys)
  type: int
  sample: 0
status:
  description: HTTP status of the request that failed (null when the proxy could not be reached).
  returned: failure of a request, without O(keys)
  type: int
  sample: 401
request:
  description: Method and path of the request that failed (no raw key ever appears in it).
  returned: failure of a request, without O(keys)
  type: str
  sample: GET /key/list?key_alias=alice&return_full_object=true&page=1&size=100
"""

from datetime import datetime

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm import CONNECTION_SPEC, client_from_params
from ansible_collections.thorfleet.llm.plugins.module_utils._litellm_keys import (
    UTC,
    KeyEngine,
    entries_from,
    input_errors,
)

# The per-key settings (SETTINGS in module_utils/_litellm_keys.py), an option each.
KEY_SETTINGS_SPEC = dict(
    models=dict(type="list", elements="str"),
    rpm_limit=dict(type="int"),
    tpm_limit=dict(type="int"),
    max_parallel_requests=dict(type="int"),
    max_budget=dict(type="float"),
    soft_budget=dict(type="float"),
    budget_duration=dict(type="str"),
    duration=dict(type="str"),
    expires=dict(type="str"),
    metadata=dict(type="dict"),
    user_id=dict(type="str"),
    team_id=dict(type="str"),
    blocked=dict(type="bool"),
)


def argument_spec():
    # no_log=False: an alias and the list of entries are not secrets (each entry's raw key is no_log).
    entry = dict(
        key_alias=dict(type="str", required=True, no_log=False),
        key=dict(type="str", no_log=True),
        state=dict(type="str", choices=["present", "absent"]),
        **KEY_SETTINGS_SPEC,
    )
    return dict(
        **CONNECTION_SPEC,
        key_alias=dict(type="str", no_log=False),
        key=dict(type="str", no_log=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        alias_conflict=dict(type="str", choices=["fail", "replace"], default="fail"),
        keys=dict(type="list", elements="dict", options=entry, no_log=False),
        owner=dict(type="str"),
        concurrency=dict(type="int", default=8),
        exclusive=dict(type="bool", default=False),
        **KEY_SETTINGS_SPEC,
    )


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("key_alias", "keys"), ("key", "keys")],
        required_one_of=[("key_alias", "keys")],
        supports_check_mode=True,
    )
    params = module.params
    entries = entries_from(params)
    errors = input_errors(params, entries, datetime.now(UTC))
    if errors:
        module.fail_json(msg="invalid input: " + "; ".join(errors), errors=errors)
    client = client_from_params(params)
    for entry in entries:
        client.add_secret(entry.get("key"))
    engine = KeyEngine(client, module.check_mode, module._diff, params["alias_conflict"])
    if params.get("keys") is None:
        output = engine.run_single(entries[0])
    else:
        output = engine.run_bulk(entries, params["exclusive"], params["concurrency"], params["owner"])
    for warning in engine.shown_warnings():
        module.warn(warning)
    if output.pop("failed", False):
        module.fail_json(**output)
    module.exit_json(**output)


if __name__ == "__main__":
    main()

#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# The action plugin of the same name (plugins/action/raw_keys.py) does the work; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: raw_keys
short_description: Raw LiteLLM keys made once and kept on the controller
version_added: 0.1.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
description:
  - Returns a raw LiteLLM key (C(sk-) and 40 letters and digits, from Python's C(secrets)) for every name in
    O(names). It runs on the controller, whatever host the task targets, and never contacts that host.
  - With O(path), the keys are kept in that file, a YAML mapping of name to raw key. A name that is in it gets
    its key as it is; a missing name gets a new key, written to the file once, so a re-run, or a unit whose
    LiteLLM database was lost, gets the same key again. Every other name in the file is kept.
  - The file is written whole and atomically (a temporary file in the same folder, then renamed over it),
    with mode 0600, in a folder of mode 0700 that is made when missing. Callers that run at the same time,
    such as the hosts of one play, take turns through a lock file beside it (C(.NAME.lock)), so no key is lost.
  - A file that exists with a looser mode, or whose folder has one, is set to these modes.
  - Without O(path), every key is new and kept nowhere, for keys that live only as long as a task needs them
    (smoke tests, benchmarks).
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details:
      - Writes nothing; reports as changed what would be added (or whose mode would be set) and returns new keys
        for the missing names, which are then kept nowhere.
  diff_mode:
    support: full
    details:
      - Shows the names in the file before and after, never a key.
  platform:
    platforms: posix
options:
  path:
    description:
      - The key store on the controller, for example C(<inventory>.artifacts/keys/raw-keys.yml). Give it a folder
        of its own, since that folder is set to mode 0700.
      - Left out, the keys are made anew every time and kept nowhere.
    type: path
  names:
    description:
      - The names whose keys to return, for example an attendee's alias or C(open-webui@thor-01).
    type: list
    elements: str
    required: true
  create:
    description:
      - With V(false), only reads O(path), which must be given. Names it does not hold are left out of RV(keys),
        and nothing is made or written (for a caller that uses keys another owner makes).
    type: bool
    default: true
notes:
  - The result holds raw keys. Give every task that uses this action C(no_log), and register its result rather
    than printing it; with C(no_log) Ansible shows no diff either.
  - Use it with C(run_once) when the hosts of a play share one store, so that the store is read and written once.
  - In Jinja, read the result as C(result['keys']), since C(result.keys) is the mapping's own method.
seealso:
  - module: thorfleet.llm.litellm_key
"""

EXAMPLES = r"""
- name: Make each attendee's raw key once, kept on the controller
  thorfleet.llm.raw_keys:
    path: "{{ inventory_dir }}.artifacts/keys/raw-keys.yml"
    names: "{{ roster | map(attribute='alias') | list }}"
  register: raw_keys
  run_once: true
  no_log: true

- name: Issue them in LiteLLM
  thorfleet.llm.litellm_key:
    api_url: http://127.0.0.1:12434
    master_key: "{{ litellm_proxy_master_key }}"
    key_alias: "{{ item }}"
    key: "{{ raw_keys['keys'][item] }}"
  loop: "{{ raw_keys['keys'] | list }}"
  no_log: true

- name: A temporary key for a smoke test, kept nowhere
  thorfleet.llm.raw_keys:
    names: [smoke]
  register: smoke_key
  no_log: true
"""

RETURN = r"""
keys:
  description:
    - The raw key of every name in O(names); with O(create=false), of those the store holds.
    - Secret. Read it as C(result['keys']).
  returned: success
  type: dict
  sample: {alice: sk-0123456789abcdefghijABCDEFGHIJ0123456789}
"""

# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""Options shared by the modules that talk to a LiteLLM proxy's admin API, and the action group that sets them once.

Every module that uses this fragment is in the action group C(litellm) of meta/runtime.yml
(tests/unit/test_action_groups.py checks it), as its attribute below says.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  action_group:
    description:
      - Use C(group/thorfleet.llm.litellm) in C(module_defaults) to set the connection options (O(api_url),
        O(master_key), O(timeout), O(validate_certs), O(retries)) once for every LiteLLM module in a play or block.
    support: full
    membership:
      - thorfleet.llm.litellm
options:
  api_url:
    description:
      - Base URL of the LiteLLM proxy.
    type: str
    default: http://127.0.0.1:12434
  master_key:
    description:
      - The proxy's master key (C(general_settings.master_key)), sent as a Bearer token.
    type: str
    required: true
  timeout:
    description:
      - Seconds to wait for each HTTP answer.
    type: int
    default: 30
  validate_certs:
    description:
      - Verify the proxy's TLS certificate when O(api_url) is C(https).
    type: bool
    default: true
  retries:
    description:
      - How many times a request is retried, with exponential backoff (1s, 2s, 4s and so on, at most 30s),
        after a connection error or an HTTP 503 answer. No other answer is retried.
    type: int
    default: 3
"""

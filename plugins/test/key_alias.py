"""The key_alias test: the one alias rule of module_utils/_litellm_keys.py, for role preflights."""

from __future__ import annotations

from ansible_collections.thorfleet.llm.plugins.module_utils._litellm_keys import is_key_alias


class TestModule:
    def tests(self):
        return {"key_alias": is_key_alias}

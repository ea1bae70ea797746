"""Filters that turn the collection's settings into what vLLM reads."""

from __future__ import annotations

import json
import re

from ansible.errors import AnsibleFilterError

FLAG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def vllm_flags(settings):
    """Render a settings dict as `vllm serve` flags, in the dict's order.

    true -> the bare flag; false -> `--no-<flag>` (vLLM's boolean flags take both forms);
    null -> left out (vLLM's default); a dict -> compact JSON; a list -> the flag then each item;
    anything else -> its string form.
    """
    if not isinstance(settings, dict):
        raise AnsibleFilterError(f"vllm_flags expects a dict of settings, got {type(settings).__name__}")
    argv = []
    for key, value in settings.items():
        if not isinstance(key, str) or not FLAG.match(key):
            raise AnsibleFilterError(f"vllm_flags: {key!r} is not a vLLM flag name (lower-case, digits, '-' or '_')")
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + flag[2:])
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value, separators=(",", ":"), sort_keys=True)]
        elif isinstance(value, list | tuple):
            argv += [flag, *(str(item) for item in value)]
        else:
            argv += [flag, str(value)]
    return argv


class FilterModule:
    def filters(self):
        return {"vllm_flags": vllm_flags}

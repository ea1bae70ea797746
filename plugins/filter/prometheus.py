"""Values from Prometheus' text exposition format (what vLLM's /metrics serves)."""

from __future__ import annotations

import math
import re

from ansible.errors import AnsibleFilterError

# name{labels} value [timestamp]; label values may hold spaces, braces and escaped quotes.
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?\s+(\S+)(?:\s+\S+)?$')


def prometheus_samples(text, names):
    """{name: the sum of its samples over every label set} for each of `names`; None for a name absent."""
    if not isinstance(text, str):
        raise AnsibleFilterError("prometheus_samples: the input must be the text of a /metrics answer")
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise AnsibleFilterError("prometheus_samples: names must be a list of metric names")
    found = dict.fromkeys(names)
    for line in text.splitlines():
        match = SAMPLE.match(line.strip())
        if not match or match[1] not in found:
            continue
        try:
            value = float(match[3])
        except ValueError:
            raise AnsibleFilterError(f"prometheus_samples: {match[1]} has no number: {line.strip()!r}") from None
        if not math.isnan(value):
            found[match[1]] = (found[match[1]] or 0.0) + value
    return found


class FilterModule:
    def filters(self):
        return {"prometheus_samples": prometheus_samples}

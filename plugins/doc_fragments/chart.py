# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""What the chart modules (benchmark_chart, usage_chart) share: matplotlib, check mode, the file they write."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
requirements:
  - matplotlib (on the host that runs the module, normally the controller)
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the chart would change, writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description:
      - The PNG file to write. It is written only when the picture differs from the one there.
    type: path
    required: true
  note:
    description:
      - A line under the title, for example where the numbers come from.
    type: str
    default: ""
  mode:
    description:
      - The file's permissions.
    type: raw
    default: "0644"
"""

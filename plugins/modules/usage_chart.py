#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: usage_chart
short_description: Draw a PNG chart of the tokens each key used
version_added: 0.2.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - thorfleet.llm.chart
description:
  - Draws one horizontal bar per row (an attendee's key, labelled C(key_alias (unit))), its prompt and completion tokens
    stacked, in the order given, for a workshop's closing report.
options:
  rows:
    description:
      - One per key, with C(key_alias), C(unit), C(prompt_tokens) and C(completion_tokens) (as
        M(thorfleet.llm.litellm_spend_info) reports them; null counts as 0).
    type: list
    elements: dict
    required: true
  title:
    description:
      - The chart's title.
    type: str
    default: Tokens per attendee
"""

EXAMPLES = r"""
- name: Chart the tokens of every attendee
  thorfleet.llm.usage_chart:
    rows: "{{ report_rows }}"
    path: reports/tokens.png
    note: Cohort A, 2026-12-07
  delegate_to: localhost
"""

RETURN = r"""
path:
  description: The chart's file.
  returned: always
  type: str
bars:
  description: How many bars it has (one per row).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.thorfleet.llm.plugins.module_utils._chart import chart_spec, png_of, pyplot, run_chart

REQUIRED = ("key_alias", "unit", "prompt_tokens", "completion_tokens")


def draw(rows, title, note):
    labels = [f"{row['key_alias']} ({row['unit']})" for row in rows]
    prompt = [int(row["prompt_tokens"] or 0) for row in rows]
    completion = [int(row["completion_tokens"] or 0) for row in rows]
    # A bar's height stays readable from two attendees to a sixty-unit fleet's.
    figure, axis = pyplot.subplots(figsize=(9, 1.5 + 0.3 * max(1, len(rows))))
    positions = range(len(rows))
    axis.barh(positions, prompt, label="prompt tokens")
    axis.barh(positions, completion, left=prompt, label="completion tokens")
    axis.set_yticks(list(positions))
    axis.set_yticklabels(labels)
    axis.invert_yaxis()  # the first row on top, as in the report's table
    axis.set_xlabel("tokens")
    axis.grid(axis="x", alpha=0.3)
    # Above the bars, not over them.
    axis.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    figure.suptitle(f"{title}\n{note}" if note else title)
    figure.tight_layout()
    return png_of(figure), len(rows)


def argument_spec():
    return chart_spec("Tokens per attendee")


def refuse(rows):
    missing = sorted({key for row in rows for key in REQUIRED if key not in row})
    return f"every row needs {', '.join(REQUIRED)} (missing: {', '.join(missing)})" if missing else None


def main():
    run_chart(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), refuse, draw)


if __name__ == "__main__":
    main()

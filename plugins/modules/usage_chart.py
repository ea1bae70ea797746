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
description:
  - Draws one horizontal bar per row (an attendee's key, labelled C(alias (unit))), its prompt and completion tokens
    stacked, in the order given, for a workshop's closing report.
  - Writes the file only when the picture differs from the one there.
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
  rows:
    description:
      - One per key, with C(alias), C(unit), C(prompt_tokens) and C(completion_tokens) (as
        M(thorfleet.llm.litellm_spend_info) reports them; null counts as 0).
    type: list
    elements: dict
    required: true
  path:
    description:
      - The PNG file to write.
    type: path
    required: true
  title:
    description:
      - The chart's title.
    type: str
    default: Tokens per attendee
  note:
    description:
      - A line under the title, for example the cohort and when the report was made.
    type: str
    default: ""
  mode:
    description:
      - The file's permissions.
    type: raw
    default: "0644"
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

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.thorfleet.llm.plugins.module_utils._chart import MATPLOTLIB_ERROR, png_of, pyplot, write_png

REQUIRED = ("alias", "unit", "prompt_tokens", "completion_tokens")


def draw(rows, title, note):
    labels = [f"{row['alias']} ({row['unit']})" for row in rows]
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
    axis.legend(fontsize="small", loc="lower right")
    figure.suptitle(f"{title}\n{note}" if note else title)
    figure.tight_layout()
    return png_of(figure)


def argument_spec():
    return dict(
        rows=dict(type="list", elements="dict", required=True),
        path=dict(type="path", required=True),
        title=dict(type="str", default="Tokens per attendee"),
        note=dict(type="str", default=""),
        mode=dict(type="raw", default="0644"),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if MATPLOTLIB_ERROR:
        module.fail_json(msg=missing_required_lib("matplotlib"), exception=MATPLOTLIB_ERROR)
    params = module.params
    missing = sorted({key for row in params["rows"] for key in REQUIRED if key not in row})
    if missing:
        module.fail_json(msg=f"every row needs {', '.join(REQUIRED)} (missing: {', '.join(missing)})")
    png = draw(params["rows"], params["title"], params["note"])
    changed = write_png(module, png, params["path"], params["mode"])
    module.exit_json(changed=changed, path=params["path"], bars=len(params["rows"]))


if __name__ == "__main__":
    main()

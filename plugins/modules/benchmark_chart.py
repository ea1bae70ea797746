#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: benchmark_chart
short_description: Draw a PNG chart that compares model profiles from benchmark rows
version_added: 0.1.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - thorfleet.llm.chart
description:
  - Draws, from the rows of the P(thorfleet.llm.benchmark_rows#filter) filter, one panel each for median time to
    first token, median decode rate and median end-to-end latency. Each panel has a group of bars per profile,
    one bar per case and concurrency, with a whisker up to the 95th percentile.
  - Uses the C(fleet) rows when there are any, else every unit's rows pooled by profile.
options:
  rows:
    description:
      - The report rows.
    type: list
    elements: dict
    required: true
  title:
    description:
      - The chart's title.
    type: str
    default: Model profiles compared
"""

EXAMPLES = r"""
- name: Chart the profiles
  thorfleet.llm.benchmark_chart:
    rows: "{{ runs | thorfleet.llm.benchmark_rows }}"
    path: reports/benchmark.png
    note: Simulated units
  delegate_to: localhost
"""

RETURN = r"""
path:
  description: The chart's file.
  returned: always
  type: str
bars:
  description: How many bars each panel has.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.thorfleet.llm.plugins.module_utils._chart import chart_spec, png_of, pyplot, run_chart

PANELS = (
    ("ttft_ms", "Time to first token (ms)"),
    ("tokens_per_s", "Decode rate (tokens/s per request)"),
    ("e2e_ms", "End-to-end latency (ms)"),
)


def series_of(rows):
    """profiles (in first-seen order), series labels, and {(profile, label): row}."""
    chosen = [r for r in rows if r.get("unit") == "fleet"] or rows
    profiles, labels, cells = [], [], {}
    for row in chosen:
        label = f"{row['case']}, {row['concurrency']} at once"
        if row["profile"] not in profiles:
            profiles.append(row["profile"])
        if label not in labels:
            labels.append(label)
        # Without fleet rows, units with the same profile, case and concurrency: keep the first unit's.
        cells.setdefault((row["profile"], label), row)
    return profiles, labels, cells


def draw(rows, title, note):
    profiles, labels, cells = series_of(rows)
    figure, axes = pyplot.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 5), squeeze=False)
    width = 0.8 / max(1, len(labels))
    for axis, (metric, heading) in zip(axes[0], PANELS, strict=True):
        for index, label in enumerate(labels):
            xs, heights, whiskers = [], [], []
            for position, profile in enumerate(profiles):
                row = cells.get((profile, label))
                if row is None or row.get(f"{metric}_median") is None:
                    continue
                median = float(row[f"{metric}_median"])
                p95 = row.get(f"{metric}_p95")
                xs.append(position + (index - (len(labels) - 1) / 2) * width)
                heights.append(median)
                whiskers.append(max(0.0, float(p95) - median) if p95 is not None else 0.0)
            axis.bar(xs, heights, width, yerr=[[0] * len(whiskers), whiskers], capsize=3, label=label)
        axis.set_title(heading)
        axis.set_xticks(range(len(profiles)))
        axis.set_xticklabels(profiles, rotation=20, ha="right")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.suptitle(f"{title}\n{note}" if note else title)
    figure.tight_layout()
    return png_of(figure), len(profiles) * len(labels)


def argument_spec():
    return chart_spec("Model profiles compared")


def refuse(rows):
    missing = [key for key in ("profile", "case", "concurrency") if any(key not in row for row in rows)]
    if not rows or missing:
        return f"rows must be benchmark_rows' output, with profile, case and concurrency (missing: {missing})"
    return None


def main():
    run_chart(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), refuse, draw)


if __name__ == "__main__":
    main()

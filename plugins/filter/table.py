"""Reports as tables: CSV for spreadsheets, Markdown for documents, aligned text for the terminal."""

from __future__ import annotations

import csv
import io

from ansible.errors import AnsibleFilterError

STYLES = ("csv", "markdown", "text")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def to_table(rows, columns, style="text"):
    """`rows` (dicts) as a table of `columns`: names, or {key: header} mappings of one entry each."""
    if style not in STYLES:
        raise AnsibleFilterError(f"to_table: style must be one of {', '.join(STYLES)}, not {style!r}")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise AnsibleFilterError("to_table: the input must be a list of dicts")
    pairs = []
    for column in columns:
        if isinstance(column, dict) and len(column) == 1:
            pairs.append(next(iter(column.items())))
        elif isinstance(column, str):
            pairs.append((column, column))
        else:
            raise AnsibleFilterError(f"to_table: a column is a name or {{key: header}}, not {column!r}")
    header = [title for _key, title in pairs]
    body = [[_cell(row.get(key)) for key, _title in pairs] for row in rows]
    if style == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows([header, *body])
        return out.getvalue()
    if style == "markdown":
        escape = [[cell.replace("|", "\\|").replace("\n", " ") for cell in line] for line in [header, *body]]
        lines = [escape[0], ["---"] * len(header), *escape[1:]]
        return "".join("| " + " | ".join(line) + " |\n" for line in lines)
    widths = [max(len(line[index]) for line in [header, *body]) for index in range(len(header))]
    rule = ["-" * width for width in widths]
    lines = [header, rule, *body]
    return "".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in lines)


class FilterModule:
    def filters(self):
        return {"to_table": to_table}

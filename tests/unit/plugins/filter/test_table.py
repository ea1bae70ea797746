"""The to_table filter: rows as CSV, Markdown or aligned text."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.thorfleet.llm.plugins.filter import table

ROWS = [{"unit": "thor-01", "key_alias": "a|b", "spend": 0.125, "ok": True}, {"unit": "thor-02", "key_alias": "c,d"}]


def test_table_as_csv_quotes_cells():
    assert table.to_table(ROWS, ["unit", {"key_alias": "alias"}, "spend", "ok"], "csv") == (
        'unit,alias,spend,ok\nthor-01,a|b,0.125,yes\nthor-02,"c,d",,\n'
    )


def test_table_as_markdown_escapes_pipes():
    assert table.to_table(ROWS, ["unit", "key_alias"], "markdown") == (
        "| unit | key_alias |\n| --- | --- |\n| thor-01 | a\\|b |\n| thor-02 | c,d |\n"
    )


def test_table_as_text_aligns_columns():
    assert table.to_table(ROWS, ["unit", "spend"]) == "unit     spend\n-------  -----\nthor-01  0.125\nthor-02\n"


@pytest.mark.parametrize(
    ("rows", "columns", "style", "message"),
    [
        (ROWS, ["unit"], "html", "style must be one of csv, markdown, text"),
        ("text", ["unit"], "csv", "must be a list of dicts"),
        (ROWS, [{"a": "A", "b": "B"}], "csv", "a column is a name or"),
    ],
)
def test_table_refuses_bad_input(rows, columns, style, message):
    with pytest.raises(AnsibleFilterError, match=message):
        table.to_table(rows, columns, style)

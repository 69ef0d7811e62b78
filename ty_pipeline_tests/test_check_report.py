"""The examples table every failing check carries: readable, bounded and storable."""

from __future__ import annotations

from ty_pipeline.domain.check_report import (
    MAX_CELL_CHARS,
    NO_EXAMPLES,
    PostingLabel,
    examples_table,
    posting_rows,
)


def test_table_has_one_row_per_example_and_says_how_many_were_left_out() -> None:
    rows = [{"posting_id": i, "title": f"Koch {i}"} for i in range(12)]
    table = examples_table(rows, total=30)
    lines = table.splitlines()
    assert lines[:2] == ["| posting_id | title |", "| --- | --- |"]
    assert lines[2] == "| 0 | Koch 0 |" and "| 9 | Koch 9 |" in lines and "| 10 | Koch 10 |" not in lines
    assert lines[-1] == "… and 20 more"
    assert examples_table([]) == NO_EXAMPLES


def test_cells_cannot_break_the_table_or_the_event_log() -> None:
    table = examples_table([{"title": "Koch | Köchin\nSpätschicht", "problem": "x" * 500, "bad": "a\ud800b"}])
    row = table.splitlines()[2]
    assert row.startswith("| Koch \\| Köchin Spätschicht | ") and "a?b" in row
    assert max(len(cell.strip()) for cell in row.split(" | ")) <= MAX_CELL_CHARS
    row.encode("utf-8")  # no lone surrogate left


def test_posting_rows_label_each_posting_with_source_id_and_title() -> None:
    labels = {7: PostingLabel(7, "arbeitsagentur", "10000-1-S", "Koch (m/w/d)"), 8: PostingLabel(8, "deutsche_bank", "9", None)}
    rows = posting_rows([(7, "llm_error"), (8, "pending"), (9, "pending")], labels)
    assert rows[0] == {"posting_id": 7, "external_id": "arbeitsagentur:10000-1-S", "title": "Koch (m/w/d)",
                       "problem": "llm_error"}
    assert rows[1]["title"] == "(no title)" and rows[2]["title"] == "(not in the warehouse)"

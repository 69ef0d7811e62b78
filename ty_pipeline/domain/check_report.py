"""Why a check failed, in the form the Dagster UI shows well: one sentence and a table of examples.

A failing check whose metadata holds only counts (`error_titles: 3`, `reason: none`) sends the operator to
the run log or the database to find out which postings and why (issue #12 item 4). Every check therefore
puts, when it fails, a `reason` (what is wrong, the number, the threshold) and up to `MAX_EXAMPLES`
examples as a Markdown table (ids and titles, or partition keys and titles). This module builds the table;
`ty_pipeline/assets/check_report.py` turns both into Dagster metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_EXAMPLES = 10
MAX_CELL_CHARS = 160  # a cell longer than this is cut: the table must stay readable in the asset page
NO_EXAMPLES = "no examples recorded"

ExampleRow = Mapping[str, object]


@dataclass(frozen=True)
class PostingLabel:
    """How an operator recognises a posting: its id, the source's id and the title."""

    posting_id: int
    source: str
    external_id: str
    title: str | None


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # a newline would end the table row
    # A lone surrogate (a bad title is a typical example) cannot be stored in the event log: shown as "?".
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_CELL_CHARS:
        text = text[: MAX_CELL_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def examples_table(rows: Sequence[ExampleRow], *, total: int | None = None, limit: int = MAX_EXAMPLES) -> str:
    """The first `limit` rows as a Markdown table (columns in first-seen order), and how many were left out.

    `total` is the number of offending items when `rows` holds only some of them.
    """
    shown = list(rows[:limit])
    if not shown:
        return NO_EXAMPLES
    columns = list(dict.fromkeys(key for row in shown for key in row))
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in shown]
    more = (len(rows) if total is None else max(total, len(rows))) - len(shown)
    if more > 0:
        lines += ["", f"… and {more} more"]
    return "\n".join(lines)


def posting_rows(
    problems: Sequence[tuple[int, str]], labels: Mapping[int, PostingLabel], *, limit: int = MAX_EXAMPLES
) -> list[dict[str, object]]:
    """Example rows for postings: id, the source's id and title (from `labels`), and what is wrong with it."""
    rows: list[dict[str, object]] = []
    for posting_id, problem in problems[:limit]:
        label = labels.get(posting_id)
        rows.append({
            "posting_id": posting_id,
            "external_id": f"{label.source}:{label.external_id}" if label else "",
            "title": (label.title or "(no title)") if label else "(not in the warehouse)",
            "problem": problem,
        })
    return rows

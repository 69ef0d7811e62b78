"""Failing asset checks that explain themselves: a `reason` sentence and a Markdown table of examples.

Shared by the in-asset checks here and the checks in `ty_pipeline/checks/` (which sit above this layer).
The table itself is built in `ty_pipeline/domain/check_report.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from ty_pipeline.domain.check_report import MAX_EXAMPLES, ExampleRow, examples_table, posting_rows
from ty_pipeline.warehouse.check_queries import posting_labels


def explained(
    *,
    passed: bool,
    reason: str,
    examples: Sequence[ExampleRow],
    metadata: Mapping[str, Any] | None = None,
    total_examples: int | None = None,
    **kwargs: Any,
) -> dg.AssetCheckResult:
    """An `AssetCheckResult` that, when it fails, carries `reason` (also as its description) and `examples`.

    A passing result keeps only `metadata`: a reason for success would be noise next to every green check.
    """
    meta: dict[str, Any] = dict(metadata or {})
    if not passed:
        meta["reason"] = dg.MetadataValue.text(reason)
        meta["examples"] = dg.MetadataValue.md(examples_table(examples, total=total_examples))
        kwargs.setdefault("description", reason)
    return dg.AssetCheckResult(passed=passed, metadata=meta, **kwargs)


def posting_examples(engine: Engine, problems: Sequence[tuple[int, str]]) -> list[dict[str, object]]:
    """Example rows (posting id, source:external id, title, problem) for the first offending postings."""
    first = list(problems[:MAX_EXAMPLES])
    return posting_rows(first, posting_labels(engine, [posting_id for posting_id, _ in first]))

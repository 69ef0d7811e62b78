"""When a freshly parsed profession catalog may replace the stored one.

The catalog is replaced as a whole, so a bad source file would silently shrink it: the first 400 lines
of the KldB CSV once built 4,600 entries in place of 20,138 and every title outside them became
"unmatched" (docs/domain_rules.md §10). A build that parses far fewer entries than are stored is far
more likely a cut download or a wrong file than a real edition change, so it is refused and the stored
catalog stays; an operator who means it lowers the threshold for that one run.
"""

from __future__ import annotations

DEFAULT_MIN_SHARE_OF_STORED = 0.9  # a new KldB edition changes a few percent of entries, never 10 %


class CatalogRejected(ValueError):
    """The parsed catalog is not trusted to replace the stored one; nothing was written."""


def check_catalog_size(origin: str, parsed: int, stored: int, min_share: float = DEFAULT_MIN_SHARE_OF_STORED) -> None:
    """Raise `CatalogRejected` when `parsed` entries are fewer than `min_share` of the `stored` ones.

    An empty store (first build) accepts anything non-empty; `min_share` 0 accepts every size.
    """
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be between 0 and 1, got {min_share}")
    if parsed <= 0:
        raise CatalogRejected(f"the catalog from {origin} has no entries; the stored catalog ({stored}) is kept")
    if stored and parsed < min_share * stored:
        raise CatalogRejected(
            f"the catalog from {origin} has {parsed} entries, {parsed / stored:.0%} of the {stored} stored "
            f"(at least {min_share:.0%} expected): the file looks truncated or wrong, so the stored catalog is "
            "kept. To replace it anyway, run berufenet_catalog with config min_share_of_stored: 0"
        )


def check_row_width(line_no: int, fields: int, expected: int) -> None:
    """A row with fewer fields than the header is a cut line (an interrupted download or copy)."""
    if fields < expected:
        raise CatalogRejected(
            f"line {line_no} has {fields} fields where the header has {expected}: the file is cut or damaged"
        )

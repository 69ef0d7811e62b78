"""What text a posting is embedded with, its one canonical normal form and hash, and chunking (pooling the
chunks' vectors: domain/vectors.py).

The replaced system hashed in Python but normalised in SQL; the two drifted and produced 12,772
duplicate rows and 7,608 corrupt hashes (docs/domain_rules.md §7). Here `normalize_text` is the only
normalisation and `content_hash` the only hash: every writer and every check goes through them, and
the text stored next to a vector is exactly the text that was hashed and encoded.

Case is preserved. The hash names the exact input the model saw: multilingual production models
(bge-m3, paraphrase-multilingual-*) are cased, and German case carries meaning ("Essen" the city,
"essen" the verb; nouns vs. adjectives). Lower-casing only for the hash would let two different model
inputs share one key, so which vector a text got would depend on which variant came first. A reader
that wants case-insensitive lookups (e.g. profession names) compares `lower(text)` instead.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

MIN_EMBED_CHARS = 150
"""Texts shorter than this (in code points, after normalisation) are not embedded (docs/contract.md).

bge-m3 returned NaN for very short inputs upstream (docs/domain_rules.md §7), and such texts say too little
to match on anyway.
"""

# Invisible characters that make equal-looking texts hash differently. HTML-to-text leaves them behind
# (soft hyphens from `&shy;`, zero-width spaces, a BOM at the start of a scraped page).
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))


def normalize_text(text: str) -> str:
    """Canonical form: Unicode NFC, invisible characters removed, every whitespace run one space, stripped.

    `str.split()` splits on every Unicode whitespace code point (tab, newline, NBSP, U+2028/9,
    ideographic space, ...), so "a\\u00a0 b" and "a b" are one text. Idempotent.
    """
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    return " ".join(text.split())


def content_hash(text: str) -> str:
    """SHA-256 (64 hex chars) of the UTF-8 of the normalised text: the key of the `embeddings` table."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


class SkipReason(StrEnum):
    NO_TEXT = "no_text"  # neither a passed summary nor a usable description
    TOO_SHORT = "too_short"  # under MIN_EMBED_CHARS after normalisation


def embedding_text(summary: str | None, description: str | None) -> str | None:
    """The text a posting is matched on: its passed summary if there is one, else its description.

    Same choice as upstream `COALESCE(extracted_summary, job_description)`, normalised. A summary that
    normalises to nothing counts as absent.
    """
    for candidate in (summary, description):
        if candidate:
            normalized = normalize_text(candidate)
            if normalized:
                return normalized
    return None


def skip_reason(text: str | None) -> SkipReason | None:
    if text is None:
        return SkipReason.NO_TEXT
    if len(text) < MIN_EMBED_CHARS:
        return SkipReason.TOO_SHORT
    return None


@dataclass(frozen=True)
class PostingText:
    """One posting as the planner sees it: its texts and the hashes of its current embedding rows."""

    posting_id: int
    summary: str | None
    description: str | None
    current_hashes: dict[str, str] = field(default_factory=dict)  # model -> text_hash (rows with a vector)


@dataclass
class EmbeddingPlan:
    """What one run has to do for one model, decided before anything is encoded."""

    processed: int = 0
    up_to_date: list[int] = field(default_factory=list)
    # text_hash -> postings that need a current link to that vector (the vector may already exist)
    to_link: dict[str, list[int]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # text_hash -> normalised text
    # posting_id -> the hash that stays current (None: nothing stays current); rows with any other hash
    # are retired before encoding starts, so a crash can never leave a stale vector marked current.
    retire: dict[int, str | None] = field(default_factory=dict)
    changed_text: int = 0
    skipped: dict[SkipReason, int] = field(default_factory=lambda: dict.fromkeys(SkipReason, 0))

    @property
    def pending(self) -> int:
        """Eligible postings without a current embedding of their current text."""
        return sum(len(ids) for ids in self.to_link.values())

    @property
    def eligible(self) -> int:
        return len(self.up_to_date) + self.pending


def plan_embeddings(postings: Sequence[PostingText], model: str) -> EmbeddingPlan:
    """Decide per posting: already current, needs a link (to a cached or new vector), or skipped.

    Work detection is by hash, as upstream: a posting is pending when it has no current row whose hash
    is the hash of its current text, which covers both "never embedded" and "text changed".
    """
    plan = EmbeddingPlan(processed=len(postings))
    for posting in postings:
        text = embedding_text(posting.summary, posting.description)
        reason = skip_reason(text)
        if reason is not None or text is None:
            plan.skipped[reason or SkipReason.NO_TEXT] += 1
            if posting.current_hashes:
                plan.retire[posting.posting_id] = None
            continue
        digest = content_hash(text)
        if any(h != digest for h in posting.current_hashes.values()):
            plan.retire[posting.posting_id] = digest
            if digest not in posting.current_hashes.values():
                plan.changed_text += 1
        if posting.current_hashes.get(model) == digest:
            plan.up_to_date.append(posting.posting_id)
            continue
        # Also covers a current link whose vector went missing (not in current_hashes): it must not stay
        # current beside the new link.
        plan.retire[posting.posting_id] = digest
        plan.to_link.setdefault(digest, []).append(posting.posting_id)
        plan.texts[digest] = text
    return plan


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Split a long text into about equal chunks of at most `max_chars`, preferring sentence ends.

    Equal sizes (instead of greedy full chunks plus a short tail) keep every chunk's weight in the pooled
    vector meaningful. Cuts go after ". ", "! ", "? ", "; ", ": " when one lies in the back half of the
    window, else at the last space, else hard.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    chunks: list[str] = []
    rest = text
    while len(rest) > max_chars:
        pieces_left = math.ceil(len(rest) / max_chars)
        target = min(max_chars, math.ceil(len(rest) / pieces_left))
        cut = _cut_point(rest, target, max_chars)
        chunk = rest[:cut].strip()
        if chunk:
            chunks.append(chunk)
        rest = rest[cut:].lstrip()
    if rest:
        chunks.append(rest)
    return chunks


def _cut_point(text: str, target: int, max_chars: int) -> int:
    """Cut near `target`, never beyond `max_chars`; prefer a sentence end, then a space."""
    floor = max(1, target // 2)
    window = text[: max_chars + 1]
    # Search for a boundary at or below the target first, then up to the hard limit.
    for limit in (target, max_chars):
        best = max(window.rfind(mark, floor, limit + 1) for mark in (". ", "! ", "? ", "; ", ": "))
        if best >= floor:
            return best + 1  # keep the punctuation with the sentence it ends
    for limit in (target, max_chars):
        space = window.rfind(" ", floor, limit + 1)
        if space >= floor:
            return space
    return max_chars

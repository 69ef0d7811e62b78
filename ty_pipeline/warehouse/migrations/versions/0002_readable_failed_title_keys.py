"""Failed-title partition keys that read as the title (data only, no schema change).

Revision ID: 0002
Revises: 0001

`berufenet_failed_titles.partition_key` was `<10 hex of sha256(title_key)>-<ascii slug>`; every Dagster UI
widget cut it in the middle, so the hash ate the title (issue #12 item 1). Each row whose key still has the
old form gets the key the code now gives a new title: the title with umlauts, cut at a word, with ` ~<6 hex>`
only when another title already holds that form. Rows are handled in `seq` order, so of two titles that
collide the earlier one keeps the plain form.

Dagster's own registrations of the old keys are not in this database: `berufenet_failed_titles_sensor`
replaces them on its next tick.

The key function below is a frozen copy of `ty_pipeline/domain/failed_titles.py` at this revision, not an
import: keys are chosen once and never recomputed, so a later change of the scheme must not change what
this revision wrote.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TITLE_CHARS = 48
_KEEP_PUNCT = frozenset("-/()&+.:'_@ ")
_DOTS = re.compile(r"\.{2,}")
_EDGE = "-/&+.:'_@ "
_OLD_KEY = re.compile(r"^[0-9a-f]{10}(?:-[a-z0-9]+(?:-[a-z0-9]+)*)?$")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")

failed_titles = sa.table(
    "berufenet_failed_titles",
    sa.column("seq", sa.Integer),
    sa.column("partition_key", sa.String(64)),
    sa.column("title_key", sa.Text),
    sa.column("title", sa.Text),
)


def _kept(ch: str) -> bool:
    return ch in _KEEP_PUNCT or unicodedata.category(ch)[0] in "LN"


def _readable(title: str) -> str:
    text = "".join(ch if _kept(ch) else " " for ch in unicodedata.normalize("NFC", title))
    text = _DOTS.sub(".", " ".join(text.split())).strip(_EDGE)
    if len(text) > _TITLE_CHARS:
        cut = text[: _TITLE_CHARS + 1]
        space = cut.rfind(" ")
        text = cut[:space] if space >= _TITLE_CHARS // 2 else text[:_TITLE_CHARS]
        text = text.strip(_EDGE)
    if text.count("(") > text.count(")"):
        text = text[: text.rfind("(")].strip(_EDGE) or text.replace("(", "").strip(_EDGE)
    return text or "Titel"


def _old_key(title_key: str) -> str:
    digest = hashlib.sha256(title_key.encode("utf-8")).hexdigest()[:10]
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", title_key.casefold()) if not unicodedata.combining(ch))
    slug = _NOT_SLUG.sub("-", plain).strip("-")[:48].rstrip("-")
    return f"{digest}-{slug}" if slug else digest


def new_key(title: str, title_key: str, taken: set[str]) -> str:
    base = _readable(title)
    digest = hashlib.sha256(title_key.encode("utf-8")).hexdigest()
    choices = [base, f"{base} ~{digest[:6]}", f"{base} ~{digest[:10]}"]
    return next((key for key in choices if key not in taken), choices[-1])


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(failed_titles.c.seq, failed_titles.c.partition_key, failed_titles.c.title_key,
                  failed_titles.c.title).order_by(failed_titles.c.seq)
    ).all()
    taken = {r.partition_key for r in rows}
    for r in rows:
        # Only keys this code's predecessor wrote: recomputing the old key tells them from a current key
        # that merely looks like one.
        if not _OLD_KEY.match(r.partition_key) or r.partition_key != _old_key(r.title_key):
            continue
        taken.discard(r.partition_key)
        key = new_key(r.title, r.title_key, taken)
        taken.add(key)
        conn.execute(
            sa.update(failed_titles).where(failed_titles.c.seq == r.seq).values(partition_key=key)
        )


def downgrade() -> None:
    """Back to the hash-first keys (Dagster's registrations then need the old keys re-added by hand)."""
    conn = op.get_bind()
    for seq, title_key in conn.execute(sa.select(failed_titles.c.seq, failed_titles.c.title_key)).all():
        conn.execute(sa.update(failed_titles).where(failed_titles.c.seq == seq).values(partition_key=_old_key(title_key)))

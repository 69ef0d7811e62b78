"""The bulk upsert path of `postings` (issue #13): what COPY and the executemany must carry unchanged."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa

from ty_pipeline.domain.posting_record import Origin, PostingRecord, Source
from ty_pipeline.warehouse.postings_store import upsert_postings
from ty_pipeline.warehouse.schema import posting_payloads, postings
from ty_pipeline.warehouse.upsert import bulk_upsert

DAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 18, 22, 0)
# Everything COPY's text format treats specially, and what a careless encoder would break.
AWKWARD = "Koch\tKöchin\nSpätschicht\r\\N C:\\Küche\\ \\t end"


def test_content_hash_is_the_one_stored_before_the_bulk_path() -> None:
    """Rows stored by older code must still read as "unchanged"; the hash may never drift."""
    record = PostingRecord(
        source=Source.ARBEITSAGENTUR, external_id="10000-1-S", title="Koch/Köchin (m/w/d)", employer="Gasthof Ä",
        city="Köln", state="Nordrhein-Westfalen", latitude=50.94, longitude=6.96, published_date=date(2026, 11, 18),
        origin=Origin.API, raw={"refnr": "10000-1-S", "orte": [{"ort": "Köln", "plz": "50667"}], "flag": True, "n": None},
    )
    assert record.content_hash() == "5d7b086500d2b38679446bebbaadc0c9"


def test_awkward_text_nulls_numbers_and_dates_arrive_as_sent(engine: sa.Engine) -> None:
    record = PostingRecord(
        source=Source.ARBEITSAGENTUR, external_id="tab\there", title=AWKWARD, employer=None, city="",
        latitude=-0.1, longitude=1e-7, published_date=DAY, raw={"text": AWKWARD, "empty": "", "none": None},
    )
    stats = upsert_postings(engine, [record], partition_date=DAY, now=NOW)
    assert (stats.new, stats.lost) == (1, [])
    with engine.connect() as conn:
        row = conn.execute(sa.select(postings)).one()._mapping
    assert row["external_id"] == "tab\there"
    assert row["title"] == AWKWARD
    assert row["employer"] is None and row["city"] == ""  # NULL and the empty string stay apart
    assert (row["latitude"], row["longitude"]) == (-0.1, 1e-7)
    assert str(row["published_date"])[:10] == DAY.isoformat()
    assert row["last_seen_at"] == NOW and row["invalidated"] is False
    with engine.connect() as conn:
        raw = conn.execute(sa.select(posting_payloads.c.raw_json)).scalar_one()
    assert '"text": "Koch\\tKöchin\\nSpätschicht\\r\\\\N' in raw
    again = upsert_postings(engine, [record], partition_date=DAY, now=NOW)
    assert (again.new, again.unchanged, again.changed) == (0, 1, 0)


def test_bulk_upsert_updates_listed_columns_only_where_allowed(engine: sa.Engine) -> None:
    base = {"source": "arbeitsagentur", "origin": "api", "partition_date": DAY, "first_seen_at": NOW,
            "last_seen_at": NOW, "invalidated": False}
    with engine.begin() as conn:
        bulk_upsert(conn, postings, [{**base, "external_id": e, "title": f"old {e}", "city": "Alt"} for e in "ab"],
                    keys=["source", "external_id"], update=["title"])
        bulk_upsert(
            conn, postings, [{**base, "external_id": e, "title": f"new {e}", "city": "Neu"} for e in "abc"],
            keys=["source", "external_id"], update=["title"],
            where=lambda excluded: excluded.title != "new b",
        )
        bulk_upsert(conn, postings, [], keys=["source", "external_id"], update=["title"])  # nothing to do
    with engine.connect() as conn:
        got = {r.external_id: (r.title, r.city) for r in conn.execute(sa.select(postings))}
    assert got == {"a": ("new a", "Alt"), "b": ("old b", "Alt"), "c": ("new c", "Neu")}


def test_a_key_twice_in_one_chunk_costs_only_the_repeat_on_postgresql(engine: sa.Engine) -> None:
    """One statement per chunk: PostgreSQL refuses to upsert a row twice in it; the row-by-row retry
    (issue #9) then stores both sightings, so nothing is lost on either database."""
    records = [PostingRecord(source=Source.ARBEITSAGENTUR, external_id=e, title=t, published_date=DAY)
               for e, t in (("x", "first"), ("y", "other"), ("x", "second"))]
    stats = upsert_postings(engine, records, partition_date=DAY, now=NOW)
    assert stats.lost == []
    with engine.connect() as conn:
        got = {r.external_id: r.title for r in conn.execute(sa.select(postings))}
    assert got == {"x": "second", "y": "other"}

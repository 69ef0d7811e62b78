"""Demand snapshots: hand-checked arithmetic (of the oracle), the "active on a date" rule, per-date replacement."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from ty_pipeline.assets.demand import SNAPSHOT_CHECK, demand_snapshots, snapshot_check
from ty_pipeline.domain.demand import SnapshotRow, consistency_problems, strongest_demand
from ty_pipeline.domain.posting_record import PostingRecord, Source
from ty_pipeline.domain.states import STATES
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.postings_store import upsert_postings
from ty_pipeline.warehouse.schema import berufenet_mappings, postings
from ty_pipeline.warehouse.schema import demand_snapshots as snapshots_table
from ty_pipeline_tests.demand_oracle import ActivePosting, compute_snapshot, domain_code, round4

D = date(2026, 11, 18)
NOW = datetime(2026, 11, 19, 2, 0)


def days_ago(n: int) -> date:
    return D - timedelta(days=n)


def test_strongest_demand_is_the_top_three_ratios_per_state_and_at_most_48_rows() -> None:
    def prof(state: str, pid: str, ratio: float | None, total: int = 5) -> SnapshotRow:
        return SnapshotRow(state, "43", pid, f"Beruf {pid}", total, 1, 2, 1.0, ratio)

    rows = [
        SnapshotRow("Bayern", "43", None, None, 99, 9, 9, 1.0, 99.0),  # a domain row is never a candidate
        prof("Bayern", "P1", 2.0), prof("Bayern", "P2", 5.0), prof("Bayern", "P3", 3.0, total=4),
        prof("Bayern", "P4", 3.0, total=9), prof("Bayern", "P5", None),  # tie: more postings first
        prof("Berlin", "P1", 0.5),
    ]
    top = strongest_demand(rows)
    assert [(r.state, r.berufenet_id) for r in top] == [
        ("Bayern", "P2"), ("Bayern", "P4"), ("Bayern", "P3"), ("Berlin", "P1")]
    many = [prof(state, f"P{i}", float(i)) for state in STATES for i in range(5)]
    capped = strongest_demand(many)
    assert len(capped) == 48 and {r.berufenet_id for r in capped} == {"P4", "P3", "P2"}


# -- arithmetic on a hand-checked fixture -----------------------------------------------------------------

SW, FI, PF = ("P1", "Softwareentwickler/in"), ("P2", "Fachinformatiker/in"), ("P3", "Gesundheits- und Krankenpfleger/in")


def fixture_postings() -> list[ActivePosting]:
    def p(state: str | None, kldb: str, prof: tuple[str, str], age: int) -> ActivePosting:
        return ActivePosting(state, kldb, prof[0], prof[1], days_ago(age))

    return [
        p("Bayern", "43414", SW, 0),
        p("Bayern", "43414", SW, 6),
        p("Bayern", "43102", FI, 7),
        p("Berlin", "43414", SW, 13),
        p("Hessen", "81302", PF, 14),
        p("Hessen", "81302", PF, 30),
        p(None, "43414", SW, 1),  # no state: excluded
        p("Ausland", "43414", SW, 1),  # not a Land: excluded
        p("Berlin", "B 434", SW, 1),  # malformed KldB: excluded
    ]


def by_key(rows: list[SnapshotRow]) -> dict[tuple[str, str, str | None], SnapshotRow]:
    return {(r.state, r.domain_code, r.berufenet_id): r for r in rows}


def test_snapshot_arithmetic_on_the_hand_checked_fixture() -> None:
    snap = compute_snapshot(fixture_postings(), D, min_postings_per_profession=3)
    rows = by_key(snap.rows)
    # Domain 43: Bayern 3, Berlin 1, the other 14 Länder 0 -> national_avg 4/16 = 0.25.
    assert rows[("Bayern", "43", None)] == SnapshotRow("Bayern", "43", None, None, 3, 2, 3, 0.25, 12.0)
    assert rows[("Berlin", "43", None)] == SnapshotRow("Berlin", "43", None, None, 1, 0, 1, 0.25, 4.0)
    # Domain 81: Hessen 2 (published 14 and 30 days ago: neither fresh) -> avg 2/16 = 0.125.
    assert rows[("Hessen", "81", None)] == SnapshotRow("Hessen", "81", None, None, 2, 0, 0, 0.125, 16.0)
    # Profession P1 has 3 postings nationwide (>= 3): avg 3/16 = 0.1875; 2/0.1875 = 10.6667, 1/0.1875 = 5.3333.
    assert rows[("Bayern", "43", "P1")] == SnapshotRow(
        "Bayern", "43", "P1", "Softwareentwickler/in", 2, 2, 2, 0.1875, 10.6667
    )
    assert rows[("Berlin", "43", "P1")] == SnapshotRow(
        "Berlin", "43", "P1", "Softwareentwickler/in", 1, 0, 1, 0.1875, 5.3333
    )
    # P2 (1 posting) and P3 (2 postings) are under the threshold: no profession rows.
    assert len(snap.rows) == 5
    assert (snap.counted, snap.without_state, snap.bad_kldb) == (6, 2, 1)


def test_the_average_runs_over_all_16_states_not_only_those_with_postings() -> None:
    one_state = compute_snapshot([ActivePosting("Bremen", "43414", None, None, D)] * 4, D)
    (row,) = one_state.rows
    # Upstream averaged over present states only: avg 4, ratio 1.0 ("normal demand"). Bremen is in
    # fact the only Land with this demand: 16 times the national mean.
    assert (row.national_avg, row.demand_ratio) == (0.25, 16.0)

    everywhere = compute_snapshot([ActivePosting(s, "43414", None, None, D) for s in STATES], D)
    assert {(r.national_avg, r.demand_ratio) for r in everywhere.rows} == {(1.0, 1.0)}
    assert len(everywhere.rows) == 16


def test_profession_threshold_is_nationwide_and_defaults_to_20() -> None:
    postings = [ActivePosting(STATES[i % 16], "43414", "P1", "Softwareentwickler/in", D) for i in range(20)]
    assert len(compute_snapshot(postings, D).profession_rows) == 16
    assert compute_snapshot(postings[:19], D).profession_rows == []


def test_freshness_windows_include_the_snapshot_day_and_six_or_thirteen_days_before() -> None:
    ages = [0, 6, 7, 13, 14]
    snap = compute_snapshot([ActivePosting("Berlin", "43414", None, None, days_ago(a)) for a in ages], D)
    (row,) = snap.rows
    assert (row.total_postings, row.fresh_7d, row.fresh_14d) == (5, 2, 4)


def test_helpers() -> None:
    assert domain_code("43414") == "43" and domain_code("B 43414") is None and domain_code(None) is None
    assert round4(2 / 3) == 0.6667 and round4(0.00005) == 0.0001


def test_consistency_check_accepts_correct_rows_and_names_each_violation() -> None:
    snap = compute_snapshot(fixture_postings(), D, min_postings_per_profession=3)
    mapped = {"Bayern": 3, "Berlin": 1, "Hessen": 2}
    assert consistency_problems(snap.rows, mapped) == []

    too_many = SnapshotRow("Berlin", "43", "P9", "X", 5, 0, 0, 1.0, 1.0)
    problems = consistency_problems([*snap.rows, too_many], mapped)
    assert problems == ["Berlin/43: professions sum to 6 > domain total 1"]
    assert consistency_problems(snap.rows, {**mapped, "Bremen": 1}) == [
        "Bremen: domain rows sum to 0, but 1 mapped active postings"
    ]
    bad_fresh = SnapshotRow("Saarland", "43", None, None, 1, 2, 1, 0.0625, 16.0)
    assert any("fresh counts" in p for p in consistency_problems([bad_fresh], {"Saarland": 1}))

    # The check result an operator reads: the reason, and a table of where the sums break.
    result = snapshot_check(D, problems + consistency_problems(snap.rows, {**mapped, "Bremen": 1}))
    assert not result.passed and result.metadata["reason"].value.startswith(f"2 sums of the {D} snapshot do not add up")
    table = result.metadata["examples"].value
    assert "| state/domain/profession | problem |" in table
    assert "| Berlin/43 | professions sum to 6 > domain total 1 |" in table and "| Bremen |" in table
    assert snapshot_check(D, []).passed and "reason" not in snapshot_check(D, []).metadata


# -- the asset on a real warehouse ------------------------------------------------------------------------


def add(
    engine: sa.Engine,
    ext: str,
    *,
    state: str | None,
    published: date,
    kldb: str | None = None,
    prof: tuple[str, str] | None = None,
    mapped: bool = True,
    invalidated_at: datetime | None = None,
    invalidated: bool = False,
) -> None:
    record = PostingRecord(source=Source.ARBEITSAGENTUR, external_id=ext, title=ext, state=state,
                           published_date=published, raw={"id": ext})
    upsert_postings(engine, [record], partition_date=published, now=NOW)
    with engine.begin() as conn:
        pid = conn.execute(sa.select(postings.c.posting_id).where(postings.c.external_id == ext)).scalar_one()
        if invalidated or invalidated_at is not None:
            conn.execute(
                sa.update(postings).where(postings.c.posting_id == pid).values(
                    invalidated=True, invalidated_reason="stale_unseen", invalidated_at=invalidated_at
                )
            )
        if mapped:
            conn.execute(
                berufenet_mappings.insert().values(
                    posting_id=pid, status="ok" if kldb else "failed", kldb=kldb,
                    berufenet_id=prof[0] if prof else None, berufenet_name=prof[1] if prof else None,
                    updated_at=NOW,
                )
            )


def populate(engine: sa.Engine) -> None:
    add(engine, "a", state="Bayern", published=days_ago(2), kldb="43414", prof=SW)
    add(engine, "b", state="Bayern", published=D, kldb="43414", prof=SW)
    add(engine, "l", state="Bayern", published=days_ago(1), kldb="43102", prof=FI)
    # Invalidated after D ended (naive UTC; D+1 00:00 Berlin = D 23:00 UTC in November): active on D.
    add(engine, "c", state="Berlin", published=days_ago(10), kldb="43414", prof=SW,
        invalidated_at=datetime(2026, 11, 19, 10, 0))
    add(engine, "j", state="Berlin", published=days_ago(20), kldb="43414", prof=SW,
        invalidated_at=datetime(2026, 11, 18, 23, 0))
    # Invalidated during D, or invalidated without a date: not active on D.
    add(engine, "k", state="Berlin", published=days_ago(20), kldb="43414", prof=SW,
        invalidated_at=datetime(2026, 11, 18, 22, 59, 59))
    add(engine, "i", state="Hamburg", published=days_ago(1), kldb="81302", prof=PF, invalidated=True)
    add(engine, "e", state="Hessen", published=D + timedelta(days=1), kldb="81302", prof=PF)  # not yet published
    add(engine, "f", state="Hessen", published=days_ago(3), mapped=False)  # active, no mapping
    add(engine, "g", state="Hessen", published=days_ago(3), kldb=None)  # mapping failed: no KldB
    add(engine, "h", state=None, published=days_ago(3), kldb="43414", prof=SW)  # no state


def run(warehouse_url: str, day: date = D, min_postings: int = 2) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [demand_snapshots],
        partition_key=day.isoformat(),
        resources={"warehouse": WarehouseResource(url=warehouse_url)},
        run_config={"ops": {"demand_snapshots": {"config": {"min_postings_per_profession": min_postings}}}},
    )
    assert result.success
    return result


def meta(result: dg.ExecuteInProcessResult) -> dict:
    mat = result.asset_materializations_for_node("demand_snapshots")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def stored(engine: sa.Engine, day: date) -> dict[tuple[str, str, str | None], tuple]:
    t = snapshots_table
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.c.state, t.c.domain_code, t.c.berufenet_id, t.c.total_postings, t.c.fresh_7d, t.c.fresh_14d,
                      t.c.national_avg, t.c.demand_ratio, t.c.computed_at).where(t.c.snapshot_date == day)
        ).all()
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def test_asset_counts_postings_active_on_the_date(warehouse_url: str, engine: sa.Engine) -> None:
    populate(engine)
    result = run(warehouse_url)
    rows = {k: v[:5] for k, v in stored(engine, D).items()}
    # Domain 43: Bayern a, b, l = 3; Berlin c, j = 2; 5 nationwide -> avg 0.3125; 3/0.3125 = 9.6, 2/0.3125 = 6.4.
    # Profession P1: Bayern a, b; Berlin c, j (4 >= 2) -> avg 0.25. P2 has 1 posting, under the threshold.
    assert rows == {
        ("Bayern", "43", None): (3, 3, 3, 0.3125, 9.6),
        ("Berlin", "43", None): (2, 0, 1, 0.3125, 6.4),
        ("Bayern", "43", "P1"): (2, 2, 2, 0.25, 8.0),
        ("Berlin", "43", "P1"): (2, 0, 1, 0.25, 8.0),
    }
    m = meta(result)
    assert (m["domain_rows"], m["profession_rows"], m["states"], m["domains"], m["professions"]) == (2, 2, 2, 1, 1)
    assert (m["active_postings"], m["mapped_active_postings"], m["excluded_without_state"]) == (8, 5, 1)
    # Totals as plain ints, plotted over partitions; the day's strongest demand as a table on the asset page.
    assert (m["total_postings"], m["fresh_7d_postings"], m["fresh_14d_postings"]) == (5, 3, 4)
    assert all(type(m[k]) is int for k in ("total_postings", "fresh_7d_postings", "fresh_14d_postings"))
    table = m["strongest_demand"].splitlines()
    assert "| state | profession | id | postings | fresh 7d | mean of the Länder | demand_ratio |" in table
    assert [line for line in table if line.startswith("| B")] == [
        "| Bayern | Softwareentwickler/in | P1 | 2 | 2 | 0.25 | 8.0 |",
        "| Berlin | Softwareentwickler/in | P1 | 2 | 0 | 0.25 | 8.0 |",
    ]
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == SNAPSHOT_CHECK and evaluation.passed


def test_rematerializing_a_date_replaces_only_that_date(warehouse_url: str, engine: sa.Engine) -> None:
    populate(engine)
    run(warehouse_url, day=days_ago(1))
    run(warehouse_url, day=D)
    earlier = stored(engine, days_ago(1))
    assert earlier and earlier != stored(engine, D)

    add(engine, "m", state="Bayern", published=D, kldb="43414", prof=SW)
    run(warehouse_url, day=D)
    now_rows = stored(engine, D)
    assert now_rows[("Bayern", "43", None)][0] == 4
    assert len(now_rows) == 4  # replaced, not appended
    assert stored(engine, days_ago(1)) == earlier  # other dates untouched, computed_at included
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(snapshots_table)).scalar_one()
    assert total == len(earlier) + len(now_rows)


def test_the_check_counts_every_spelling_of_a_land_and_leaves_out_codes_without_a_domain(
    warehouse_url: str, engine: sa.Engine
) -> None:
    """Postings stored under an API's enum spelling are counted in their Land's domain rows, so the check's
    independent count must fold them too; a KldB code that yields no domain is reported in
    `excluded_bad_kldb`, not as a mismatch of the Land's sum."""
    populate(engine)
    add(engine, "v6", state="BAYERN", published=days_ago(1), kldb="43414", prof=SW)
    add(engine, "v6b", state="BADEN_WUERTTEMBERG", published=days_ago(1), kldb="81302", prof=PF)
    add(engine, "bad", state="Bayern", published=days_ago(1), kldb="B 434", prof=SW)
    result = run(warehouse_url)
    rows = stored(engine, D)
    assert rows[("Bayern", "43", None)][0] == 4
    assert rows[("Baden-Württemberg", "81", None)][0] == 1
    m = meta(result)
    assert (m["mapped_active_postings"], m["excluded_bad_kldb"]) == (7, 1)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.metadata

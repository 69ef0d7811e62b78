"""The BERUFENET REST API as a catalog source, against a loopback fake in the documented wire format:
paging, detail unwrapping and KldB parsing, skips and failures counted, retries, the failure limits, and
the `berufenet_catalog` asset with the API added to the seed catalog on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
from ty_pipeline.clients.berufenet import (
    BerufenetError,
    BerufenetFetch,
    fetch_berufenet,
    parse_kldb2010,
)
from ty_pipeline.clients.http_retry import RetryPolicy
from ty_pipeline.domain.kldb_catalog import NamedProfession
from ty_pipeline.domain.profession_names import lookup_title
from ty_pipeline.domain.titles import clean_job_title, title_key
from ty_pipeline.professions.catalog import (
    DEFAULT_SEED_CATALOG,
    SEED,
    SOURCE_BERUFENET,
    SOURCE_SEED,
    load_catalog_file,
    with_berufenet,
)
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.berufenet_store import aliases_for_keys, load_catalog
from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline.warehouse.schema import berufenet_aliases
from ty_pipeline.warehouse.schema import berufenet_catalog as catalog_table
from ty_pipeline_tests.berufenet_fakes import fake_embedder
from ty_pipeline_tests.fakes.berufenet_server import (
    API_KEY,
    BERUFE_PATH,
    FakeBeruf,
    FakeBerufenet,
    numbered_professions,
)
from ty_pipeline_tests.frozen_clock import FrozenClock

# No real waiting in the unit tests: retries record their back-off instead of sleeping it.
FAST = RetryPolicy(max_retries=2, backoff_base_s=0.0)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fake() -> Iterator[FakeBerufenet]:
    with FakeBerufenet() as server:
        yield server


def fetch(fake: FakeBerufenet, sleeps: Sleeps, **kw: Any) -> BerufenetFetch:
    # Unpaced unless a test is about the pace: `sleeps` then holds only the retries' back-off.
    options: dict[str, Any] = {"requests_per_s": None, "policy": FAST, "sleep": sleeps, **kw}
    return fetch_berufenet(fake.base_url, **options)


def test_every_list_and_detail_request_is_paced_by_one_limiter(fake: FakeBerufenet) -> None:
    fake.professions = numbered_professions(43)  # 3 list pages + 43 details
    clock = FrozenClock()
    result = fetch_berufenet(fake.base_url, policy=FAST, sleep=clock.sleep, clock=clock, workers=3,
                             requests_per_s=5.0, burst=2)
    assert (result.pages, result.fetched) == (3, 43) and len(fake.requests) == 46
    # All 46 requests arrive at one instant: 2 start at once (the burst), every later one 0.2 s after the
    # previous, list pages and details from three threads alike; nothing else pauses.
    assert sorted(clock.sleeps) == pytest.approx([k / 5.0 for k in range(1, 45)])
    assert result.pacing["requests"] == 46
    assert result.pacing["configured"] == "5 req/s, burst 2, 3 in flight"
    assert result.pacing["max_in_flight_seen"] <= 3  # type: ignore[operator]


def test_the_default_pace_is_the_polite_one(fake: FakeBerufenet) -> None:
    fake.professions = numbered_professions(3)
    clock = FrozenClock()
    result = fetch_berufenet(fake.base_url, policy=FAST, sleep=clock.sleep, clock=clock)
    assert result.pacing["configured"] == "5 req/s, burst 2, 4 in flight"
    assert sorted(clock.sleeps) == pytest.approx([0.2, 0.4])  # 1 page + 3 details: two waits


def test_list_is_paged_from_zero_and_details_become_professions(fake: FakeBerufenet, sleeps: Sleeps) -> None:
    fake.professions = numbered_professions(43)
    fake.professions.append(FakeBeruf(27272, "Kampfschwimmer/in", "B 01104"))  # leading zero kept
    fake.professions.append(FakeBeruf(33209, "Drohnenpilot/in", "B 52312", bare_detail=True))
    log: list[str] = []
    result = fetch(fake, sleeps, log=log.append)

    assert [r.query for r in fake.list_requests()] == [{"suchwoerter": "*", "page": str(n)} for n in range(3)]
    assert (result.pages, result.listed, result.reported_total, result.fetched) == (3, 45, 45, 45)
    assert (result.skipped_no_kldb, result.failed, len(result.professions)) == (0, 0, 45)
    assert sorted(r.path for r in fake.detail_requests()) == sorted(f"{BERUFE_PATH}/{p.id}" for p in fake.professions)
    by_id = {p.profession_id: p for p in result.professions}
    assert by_id["bn-27272"] == NamedProfession("bn-27272", "Kampfschwimmer/in", "01104", 4, "01")
    assert by_id["bn-33209"] == NamedProfession("bn-33209", "Drohnenpilot/in", "52312", 2, "52")  # bare object
    first = fake.professions[0]
    assert by_id[f"bn-{first.id}"].kldb == first.kldb2010.removeprefix("B ")  # type: ignore[union-attr]
    # The public client id and an explicit User-Agent on every call; a detail progress line with an ETA.
    assert {r.headers.get("x-api-key") for r in fake.requests} == {API_KEY}
    assert all(r.headers.get("user-agent", "").startswith("ty-pipeline/") for r in fake.requests)
    assert any(line.startswith("BERUFENET details: 45/45 done") and "ETA" in line for line in log)


def test_paging_stops_by_total_pages_and_on_an_empty_page(fake: FakeBerufenet, sleeps: Sleeps) -> None:
    fake.professions = numbered_professions(40)
    fake.next_on_last_page = True  # a "next" link on the last page must not make the client read on
    assert fetch(fake, sleeps).pages == 2 and len(fake.list_requests()) == 2

    fake.requests.clear()
    fake.next_on_last_page, fake.reported_total = False, 100  # claims 5 pages; page 2 comes back empty
    result = fetch(fake, sleeps)
    assert [r.query["page"] for r in fake.list_requests()] == ["0", "1", "2"]
    assert (result.listed, result.reported_total) == (40, 100)


def test_kldb2010_parsing_never_guesses() -> None:
    assert [parse_kldb2010(v) for v in ("B 28212", "B 01104", "28212", " B 43414 ")] == [
        "28212", "01104", "28212", "43414"]
    # Too short, too long, suffixed, level digit outside 1-4, not a string: unusable, not padded or cut.
    assert [parse_kldb2010(v) for v in ("B 2821", "B 282121", "B 28212-100", "B 28210", None, 28212, "")] == [
        None] * 7
    # The "bn-" id carries no KldB code, so only the code's own consistency is checked for it.
    assert NamedProfession("bn-129987", "Testberuf/in", "43414", 4, "43").profession_id == "bn-129987"
    for bad in (("bn-12a", "43414", 4, "43"), ("bn-1", "4341", 1, "43"), ("bn-1", "43414", 3, "43"),
                ("bn-1", "43414", 4, "44"), ("xx-1", "43414", 4, "43")):
        with pytest.raises(ValueError):
            NamedProfession(bad[0], "Testberuf/in", bad[1], bad[2], bad[3])


def test_skips_and_failed_details_are_counted_with_examples(fake: FakeBerufenet, sleeps: Sleeps) -> None:
    fake.professions = numbered_professions(100)
    no_kldb, malformed, dead_a, dead_b, flaky = (fake.professions[i] for i in (3, 21, 40, 77, 90))
    no_kldb.kldb2010 = None
    malformed.kldb2010 = "B 2821"
    for dead in (dead_a, dead_b):  # 500 on every attempt: counted as failed
        fake.fail_next(BERUFE_PATH + "/", status=500, times=FAST.max_retries + 1, match={"id": dead.id})
    fake.fail_next(BERUFE_PATH + "/", status=503, match={"id": flaky.id})  # once, then fine

    result = fetch(fake, sleeps, workers=3)  # 2 of 100 failed = exactly the 2 % tolerated
    assert (result.listed, result.fetched, result.skipped_no_kldb, result.failed) == (100, 98, 2, 2)
    assert len(result.professions) == 96
    ids = {p.profession_id for p in result.professions}
    assert f"bn-{flaky.id}" in ids and not {f"bn-{p.id}" for p in (no_kldb, malformed, dead_a, dead_b)} & ids
    assert sorted(e.split(":")[0] for e in result.skipped_examples) == sorted([str(no_kldb.id), str(malformed.id)])
    assert "'B 2821'" in " ".join(result.skipped_examples) and "<missing>" in " ".join(result.skipped_examples)
    assert sorted(e.split(":")[0] for e in result.failed_examples) == sorted([str(dead_a.id), str(dead_b.id)])
    assert all("HTTP 500" in e for e in result.failed_examples)
    assert len([r for r in fake.detail_requests() if r.path.endswith(f"/{flaky.id}")]) == 2


def test_429_is_retried_after_the_announced_wait(fake: FakeBerufenet, sleeps: Sleeps) -> None:
    fake.professions = numbered_professions(30)
    fake.fail_next(BERUFE_PATH, status=429, retry_after="3", match={"page": 1})
    detail_id = fake.professions[5].id
    fake.fail_next(BERUFE_PATH + "/", status=429, retry_after="2", match={"id": detail_id})
    result = fetch(fake, sleeps)
    assert (result.listed, result.failed, len(result.professions)) == (30, 0, 30)
    assert [r.query["page"] for r in fake.list_requests()] == ["0", "1", "1"]
    assert sorted(sleeps) == [2.0, 3.0]


def test_too_many_failed_details_fail_the_fetch_early(fake: FakeBerufenet, sleeps: Sleeps) -> None:
    fake.professions = numbered_professions(20)
    fake.fail_next(BERUFE_PATH + "/", status=500, times=FAST.max_retries + 1, match={"id": fake.professions[7].id})
    with pytest.raises(BerufenetError, match=r"1 of 20 BERUFENET detail calls failed, more than the 2\.0% tolerated"):
        fetch(fake, sleeps)
    assert fetch(fake, sleeps, max_failed_share=0.05).failed == 0  # the fault is used up; 1 of 20 = 5 % is fine

    # Everything failing stops within a few calls instead of trying (and retrying) all 200.
    fake.requests.clear()
    fake.professions = numbered_professions(200)
    fake.fail_next(BERUFE_PATH + "/", status=500, times=10_000)
    with pytest.raises(BerufenetError, match="more than the 2.0% tolerated"):
        fetch(fake, sleeps, workers=2)
    assert len(fake.detail_requests()) < 30 * (FAST.max_retries + 1)


def test_a_failing_list_page_is_an_error_naming_url_and_status(fake: FakeBerufenet, sleeps: Sleeps) -> None:
    fake.professions = numbered_professions(50)
    fake.fail_next(BERUFE_PATH, status=500, times=FAST.max_retries + 1, match={"page": 2})
    with pytest.raises(BerufenetError) as err:
        fetch(fake, sleeps)
    message = str(err.value)
    assert f"{fake.base_url}{BERUFE_PATH}?suchwoerter=*&page=2" in message and "HTTP 500" in message
    assert "catalog was left unchanged" in message
    assert fake.detail_requests() == []  # no half list goes on to the details


def test_the_api_key_is_required_and_a_wrong_one_fails_at_once(fake: FakeBerufenet, sleeps: Sleeps) -> None:
    fake.professions = numbered_professions(5)
    bare = requests.get(f"{fake.base_url}{BERUFE_PATH}?suchwoerter=*&page=0", timeout=5)
    assert bare.status_code == 401 and bare.json()["error"] == "Unauthorized"
    fake.requests.clear()
    with pytest.raises(BerufenetError, match="HTTP 401") as err:
        fetch(fake, sleeps, api_key="d672172b-wrong")
    assert err.value.status == 401 and len(fake.requests) == 1  # a permanent status is not retried


def test_with_berufenet_adds_the_api_professions_once(fake: FakeBerufenet, sleeps: Sleeps) -> None:
    fake.professions = [*numbered_professions(3), FakeBeruf(27272, "Kampfschwimmer/in", "B 01104")]
    api = fetch(fake, sleeps)
    seed = load_catalog_file(SEED)
    combined = with_berufenet(seed, api)
    assert combined.entries[: len(seed.entries)] == seed.entries
    assert [(e.profession.profession_id, e.source) for e in combined.entries[len(seed.entries):]] == [
        (p.profession_id, SOURCE_BERUFENET) for p in api.professions]
    assert str(DEFAULT_SEED_CATALOG) in combined.origin and fake.base_url in combined.origin
    assert combined.berufenet is api and seed.berufenet is None
    # Combining again (or an API answer repeating an id) adds nothing twice.
    again = with_berufenet(combined, api)
    assert len(again.entries) == len(combined.entries)


def test_catalog_asset_adds_berufenet_professions_to_the_seed(warehouse_url: str) -> None:
    professions = [
        *numbered_professions(21),
        FakeBeruf(27272, "Kampfschwimmer/in", "B 01104"),
        FakeBeruf(33209, "Drohnenpilot/in", "B 52312"),
        FakeBeruf(33210, "Ohne Code/in", None),
    ]
    with FakeBerufenet(professions) as fake:
        base_url = fake.base_url
        result = dg.materialize(
            [berufenet_catalog],
            resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": fake_embedder(),
                       "profession_catalog": ProfessionCatalogResource(
                           kldb_csv=SEED, berufenet_api_url=base_url, berufenet_requests_per_s=1000.0),
                       "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
        )
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("berufenet_catalog")[0].metadata.items()}
    with open(DEFAULT_SEED_CATALOG, encoding="utf-8") as fh:
        seed_count = sum(1 for _ in csv.DictReader(fh, delimiter=";"))
    assert (meta["berufenet_listed"], meta["berufenet_fetched"], meta["berufenet_skipped_no_kldb"],
            meta["berufenet_failed"]) == (24, 24, 1, 0)
    assert (meta["entries_seed"], meta["entries_berufenet"], meta["entries"]) == (seed_count, 23, seed_count + 23)
    assert base_url in str(meta["origin"])
    # The resource's pace reaches the client: every request of the build went through its limiter.
    pacing = meta["requests_berufenet"]
    assert pacing["configured"] == "1000 req/s, burst 2, 4 in flight" and pacing["requests"] == 2 + 24

    engine = get_engine(warehouse_url)
    with engine.connect() as conn:
        rows = {r.profession_id: r for r in conn.execute(sa.select(catalog_table)).all()}
        alias_ids = set(conn.execute(sa.select(berufenet_aliases.c.profession_id)).scalars())
    assert sum(r.source == SOURCE_SEED for r in rows.values()) == seed_count
    assert sum(r.source == SOURCE_BERUFENET for r in rows.values()) == 23 and "bn-33210" not in rows
    fields = ("name", "kldb", "qualification_level", "domain_code", "source")
    assert tuple(getattr(rows["bn-27272"], f) for f in fields) == ("Kampfschwimmer/in", "01104", 4, "01", "berufenet")
    assert tuple(getattr(rows["bn-33209"], f) for f in fields) == ("Drohnenpilot/in", "52312", 2, "52", "berufenet")
    assert {"bn-27272", "bn-33209", "29302-100"} <= alias_ids

    # A posting titled with a BERUFENET-only name resolves to it through the alias table.
    title = "Drohnenpilotin (m/w/d)"
    key = title_key(clean_job_title(title))
    index = aliases_for_keys(engine, [key])
    assert index == {key: ["bn-33209"]}
    resolution = lookup_title(title, index, load_catalog(engine).snapshot.professions)
    assert resolution.accepted and resolution.profession_id == "bn-33209"

"""Failed Berufenet titles as dynamic partitions, on SQLite and PostgreSQL: the sensor registers them (most
frequent first, capped, cursor-based) and a backfill of `berufenet_title_retry` through FakeOllama maps
every posting with the title, or fails the partition with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_mappings import berufenet_mappings
from ty_pipeline.assets.berufenet_retry import berufenet_title_retry, failed_titles_partitions, retry_check
from ty_pipeline.automation.berufenet_sensor import SENSOR_NAME, berufenet_failed_titles_sensor
from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.failed_titles import PARTITIONS_NAME, partition_key_for
from ty_pipeline.professions.catalog import SEED
from ty_pipeline.professions.catalog_build import build_catalog
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.descriptions_store import DescriptionOutcome, PendingDescription, save_description
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.schema import berufenet_failed_titles, berufenet_learned_aliases
from ty_pipeline_tests.berufenet_fakes import (
    ENCODE_CALLS,
    NOW,
    add_postings,
    choose_by_name,
    encoded,
    fake_embedder,
    prompts_sent,
)
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.helpers import UNUSED_URL, tick_failed_titles_sensor

DAY1 = date(2026, 11, 18)
DAY2 = date(2026, 11, 19)
LLM = "qwen2.5:7b-instruct"
CONFIG = {"accept_threshold": 0.80, "verify_threshold": 0.40, "llm_model": LLM}
LONG_TEXT = ("Wir suchen Verstärkung für unser Lager in Nürnberg. Sie kommissionieren Waren, bedienen Handscanner "
             "und packen Sendungen für den Versand. ") * 12


@pytest.fixture(autouse=True)
def _reset_encoder_log() -> None:
    ENCODE_CALLS.clear()


@pytest.fixture
def engine(warehouse_url: str) -> sa.Engine:
    eng = get_engine(warehouse_url)
    ensure_schema(eng)
    build_catalog(eng, ProfessionCatalogResource(kldb_csv=SEED).load(), open_encoder=fake_embedder().open_encoder, now=lambda: NOW)
    ENCODE_CALLS.clear()
    return eng


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def resources(warehouse_url: str, ollama_url: str, cap: int = 5000) -> dict[str, Any]:
    return {
        "warehouse": WarehouseResource(url=warehouse_url),
        "embedder": fake_embedder(),
        "ollama": OllamaResource(host=ollama_url, max_retries=0, read_timeout_s=10),
        "profession_catalog": ProfessionCatalogResource(kldb_csv=SEED, max_failed_title_partitions=cap),
    }


def map_day(warehouse_url: str, day: date, ollama: FakeOllama, instance: dg.DagsterInstance) -> None:
    ollama.reset()
    ollama.responder = choose_by_name({})  # the mapping's LLM rejects everything in the band
    result = dg.materialize(
        [berufenet_mappings], partition_key=day.isoformat(), instance=instance,
        resources=resources(warehouse_url, ollama.base_url),
        run_config={"ops": {"berufenet_mappings": {"config": CONFIG}}},
    )
    assert result.success


def tick(instance: dg.DagsterInstance, warehouse_url: str, cursor: str | None = None, cap: int = 5000) -> Any:
    assert berufenet_failed_titles_sensor.name == SENSOR_NAME
    return tick_failed_titles_sensor(instance, resources(warehouse_url, UNUSED_URL, cap), cursor)


def retry(warehouse_url: str, key: str, ollama: FakeOllama, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [berufenet_title_retry], partition_key=key, instance=instance, raise_on_error=False,
        resources=resources(warehouse_url, ollama.base_url),
    )


def describe(engine: sa.Engine, posting_id: int, text: str) -> None:
    pending = PendingDescription(posting_id, "arbeitsagentur", str(posting_id), "api", None, 0)
    save_description(engine, pending, DescriptionOutcome(status=DescriptionStatus.OK, description=text), NOW)


def mapping_rows(engine: sa.Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT posting_id, berufenet_id, kldb, qualification_level, berufenet_status FROM postings_enriched"
        )).mappings()
        return {r["posting_id"]: dict(r) for r in rows}


def test_sensor_registers_failed_titles_most_frequent_first_with_a_cap(
    warehouse_url: str, engine: sa.Engine, ollama: FakeOllama, instance: dg.DagsterInstance
) -> None:
    # Three unresolved titles with 3, 2 and 1 postings, one resolved title.
    add_postings(engine, DAY1, [("Xyzzy Quux", None)] + [("Lagermitarbeiter", None)] * 3
                 + [("Verkaufsmitarbeiter", None)] * 2 + [("Koch", None)])
    map_day(warehouse_url, DAY1, ollama, instance)
    keys = {t: t for t in ("Lagermitarbeiter", "Verkaufsmitarbeiter", "Xyzzy Quux")}  # the key is the title

    first = tick(instance, warehouse_url, cap=2)
    assert instance.get_dynamic_partitions(PARTITIONS_NAME) == [keys["Lagermitarbeiter"], keys["Verkaufsmitarbeiter"]]
    # The sensor launches no runs, so the tick history shows every tick as skipped: the reason says what it did.
    assert first.skip_message == (
        f"registered 2 failed titles as partitions, most frequent first ({keys['Lagermitarbeiter']}); no run "
        "launched: backfill `berufenet_title_retry` to retry them; 1 failed titles wait for room under the cap"
    )
    # At the cap with nothing resolved: no new keys, the cursor stays so no title is skipped.
    blocked = tick(instance, warehouse_url, first.cursor, cap=2)
    assert not blocked.dynamic_partitions_requests and "cap of 2" in (blocked.skip_message or "")

    # One registered title gets resolved: its key is dropped to make room for the waiting one.
    with engine.begin() as conn:
        conn.execute(sa.update(berufenet_failed_titles).where(berufenet_failed_titles.c.title_key == "lagermitarbeiter")
                     .values(resolved=True))
    freed = tick(instance, warehouse_url, first.cursor, cap=2)
    assert sorted(instance.get_dynamic_partitions(PARTITIONS_NAME)) == sorted(
        [keys["Verkaufsmitarbeiter"], keys["Xyzzy Quux"]])
    assert "removed 1 partitions of titles resolved since" in (freed.skip_message or "")
    again = tick(instance, warehouse_url, freed.cursor, cap=2)
    assert not again.dynamic_partitions_requests
    assert again.skip_message == "no new failed titles since the last tick"
    # Titles read again (a reset cursor) that are all registered or resolved: nothing to add, and it says so.
    reread = tick(instance, warehouse_url, None, cap=2)
    assert not reread.dynamic_partitions_requests
    assert reread.skip_message == "the 3 failed titles recorded since the last tick are resolved or already registered"


def test_backfill_of_a_failed_title_maps_every_posting_with_it(
    warehouse_url: str, engine: sa.Engine, ollama: FakeOllama, instance: dg.DagsterInstance
) -> None:
    day1 = add_postings(engine, DAY1, [("Lagermitarbeiter (m/w/d)", None), ("Lagermitarbeiter in Nürnberg", None)])
    day2 = add_postings(engine, DAY2, [("Lagermitarbeiter - ab sofort", None)])
    describe(engine, day1["Lagermitarbeiter in Nürnberg"][0], LONG_TEXT)
    map_day(warehouse_url, DAY1, ollama, instance)
    map_day(warehouse_url, DAY2, ollama, instance)
    ids = [i for v in (*day1.values(), *day2.values()) for i in v]
    assert {mapping_rows(engine)[i]["berufenet_status"] for i in ids} == {"llm_rejected"}
    tick(instance, warehouse_url)
    (key,) = instance.get_dynamic_partitions(PARTITIONS_NAME)

    ollama.reset()
    ollama.responder = choose_by_name({"Lagermitarbeiter": "Lagerhelfer"})
    result = retry(warehouse_url, key, ollama, instance)
    assert result.success
    rows = mapping_rows(engine)
    assert {(rows[i]["berufenet_id"], rows[i]["berufenet_status"], rows[i]["qualification_level"]) for i in ids} == {
        ("51311-188", "llm_description_retry", 1)}
    mat = result.asset_materializations_for_node("berufenet_title_retry")[0]
    assert mat.partition == key and mat.metadata["postings_updated"].value == 3
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "every_posting_with_title_resolved" and check.passed
    assert check.metadata["postings_by_status"].value == {"llm_description_retry": 3}
    # The LLM saw the title, its stored candidates and the description cut at a word boundary.
    ((title, cands, desc),) = prompts_sent(ollama)
    assert title == "Lagermitarbeiter" and any("Lagerhelfer" in name for _n, name, _k in cands)
    assert LONG_TEXT.startswith(desc.removesuffix(" …")) and 700 < len(desc) <= 802 and desc.endswith(" …")
    assert LONG_TEXT[len(desc) - 2] == " "  # the cut fell on a space
    with engine.connect() as conn:
        learned = conn.execute(sa.select(berufenet_learned_aliases.c.profession_id, berufenet_learned_aliases.c.status)
                               .where(berufenet_learned_aliases.c.title_key == "lagermitarbeiter")).one()
    assert tuple(learned) == ("51311-188", "llm_description_retry")

    # A later partition with the title uses the learned alias: no encoder, no LLM.
    later = add_postings(engine, date(2026, 11, 20), [("Lagermitarbeiter (w/m/d)", None)])
    calls = len(ollama.chat_calls())
    ENCODE_CALLS.clear()
    map_day(warehouse_url, date(2026, 11, 20), ollama, instance)
    assert mapping_rows(engine)[later["Lagermitarbeiter (w/m/d)"][0]]["berufenet_status"] == "learned"
    assert encoded() == [] and len(ollama.chat_calls()) == 0 <= calls


def test_a_rejected_retry_fails_the_partition_with_its_reason(
    warehouse_url: str, engine: sa.Engine, ollama: FakeOllama, instance: dg.DagsterInstance
) -> None:
    ids = add_postings(engine, DAY1, [("Xyzzy Qüux", None)])
    map_day(warehouse_url, DAY1, ollama, instance)
    tick(instance, warehouse_url)
    (key,) = instance.get_dynamic_partitions(PARTITIONS_NAME)
    assert key == "Xyzzy Qüux"  # umlauts and all: Dagster takes them as a dynamic partition key

    # Ollama unreachable: fails fast with the client's message.
    unreachable = dg.materialize(
        [berufenet_title_retry], partition_key=key, instance=instance, raise_on_error=False,
        resources=resources(warehouse_url, UNUSED_URL),
    )
    assert not unreachable.success and "not reachable" in failure_text(unreachable)

    ollama.reset()
    ollama.responder = choose_by_name({})  # none of the candidates
    rejected = retry(warehouse_url, key, ollama, instance)
    assert not rejected.success
    reason = failure_text(rejected)
    assert "Xyzzy Qüux" in reason and "none of the 5 candidates" in reason and "no description" in reason
    # The failed step carries the reason and the title as metadata: the UI shows it on the run, no log needed.
    meta = failure_metadata_of(rejected)
    assert meta["title"] == "Xyzzy Qüux" and meta["partition_key"] == key and meta["postings"] == 1
    assert meta["status"] == "no_match" and "none of the 5 candidates" in str(meta["reason"])
    assert not instance.get_materialized_partitions(berufenet_title_retry.key)
    row = mapping_rows(engine)[ids["Xyzzy Qüux"][0]]
    assert row["berufenet_status"] == "no_match" and row["berufenet_id"] is None
    with engine.connect() as conn:
        error = conn.execute(sa.select(berufenet_failed_titles.c.error)).scalar_one()
    assert "none of the 5 candidates" in error

    # The same partition can be backfilled again later, e.g. with a better model: it succeeds then.
    ollama.responder = choose_by_name({"Xyzzy Qüux": "Logopäde"})
    assert retry(warehouse_url, key, ollama, instance).success
    assert key in instance.get_materialized_partitions(berufenet_title_retry.key)
    assert failed_titles_partitions.name == PARTITIONS_NAME


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures
    return str(failures[0].step_failure_data.error) + str(failures[0].step_failure_data.user_failure_data)


def failure_metadata_of(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data.user_failure_data
    assert data is not None
    return {k: v.value for k, v in data.metadata.items()}


def test_the_profession_assets_load_with_the_rest_of_the_code_location() -> None:
    """What the lead wires into definitions.py: the graph resolves (deps, partitions, pools, resources)."""
    from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
    from ty_pipeline.assets.profession_similarity import profession_similarity
    from ty_pipeline.definitions import DAILY_ASSETS, build_resources

    defs = dg.Definitions(
        assets=[*DAILY_ASSETS, berufenet_catalog, berufenet_mappings, berufenet_title_retry, profession_similarity],
        sensors=[berufenet_failed_titles_sensor],
        resources={**build_resources(), "ollama": OllamaResource(), "profession_catalog": ProfessionCatalogResource(kldb_csv=SEED)},
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    mappings = graph.get(dg.AssetKey("berufenet_mappings"))
    assert {k.to_user_string() for k in mappings.parent_keys} == {"postings", "berufenet_catalog"}
    assert mappings.pools == {"ollama"} and graph.get(berufenet_title_retry.key).pools == {"ollama"}
    retry_partitions = graph.get(berufenet_title_retry.key).partitions_def
    assert isinstance(retry_partitions, dg.DynamicPartitionsDefinition) and retry_partitions.name == PARTITIONS_NAME


def test_the_sensor_runs_by_default_and_launches_nothing() -> None:
    assert berufenet_failed_titles_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert not berufenet_failed_titles_sensor.targets


def test_the_retry_check_names_the_title_and_what_is_left_unresolved() -> None:
    key = partition_key_for("Lagermitarbeiter", "lagermitarbeiter")
    assert retry_check(key, "Lagermitarbeiter", {"llm_verified": 3}, {}).passed
    failed = retry_check(key, "Lagermitarbeiter", {"llm_verified": 3, "error": 1}, {"error": 1})
    assert not failed.passed
    assert failed.metadata["reason"].value == (
        "1 postings with the title 'Lagermitarbeiter' are still unresolved after the retry (expected 0): "
        "materialize this partition again")
    assert f"| {key} | Lagermitarbeiter | error | 1 |" in failed.metadata["examples"].value

"""Failed-title partition keys that read as the title (issue #12 item 1): the key itself, collisions, the
migration of keys of the old hash-first form (warehouse rows and Dagster's registrations), and the
open-failed-titles table on `berufenet_mappings`."""

from __future__ import annotations

import importlib
from datetime import date, datetime

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ty_pipeline.domain.failed_titles import (
    PARTITIONS_NAME,
    TITLE_CHARS,
    failure_reason,
    is_legacy_key,
    is_partition_key,
    legacy_partition_key,
    open_titles_rows,
    partition_key_for,
    readable_key,
)
from ty_pipeline.domain.titles import title_key
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse import berufenet_store as store
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.migrations import alembic_config, head_revision, upgrade_to_head
from ty_pipeline.warehouse.schema import berufenet_failed_titles
from ty_pipeline_tests.helpers import tick_failed_titles_sensor

NOW = datetime(2026, 12, 1, 3, 0)
# What Dagster 1.13 or its UI's partition selection treat as syntax or refuse: never in a key.
SYNTAX = [",", "[", "]", "|", "...", "*", '"', "\\", "\n", "\t", "\0"]


def test_a_key_is_the_title_with_umlauts_and_case() -> None:
    assert readable_key("Junior Notfallsanitäter") == "Junior Notfallsanitäter"
    assert readable_key("Koch/Köchin (Kantine)") == "Koch/Köchin (Kantine)"
    assert readable_key("Straßenbauer  Tiefbau") == "Straßenbauer Tiefbau"
    # A decomposed umlaut (o + combining diaeresis) becomes the one character a reader types.
    assert readable_key("Ko\u0308chin") == "Köchin"


@pytest.mark.parametrize("title", [
    "Mitarbeiter [Lager] | Versand... *dringend*", 'Koch, "Jungkoch"\\Beikoch', "Tab\tNew\nline\0null",
    "Pfleger 😀 ✓ € § # ? % = ; < >",
])
def test_characters_dagster_or_its_ui_treat_as_syntax_never_reach_a_key(title: str) -> None:
    key = readable_key(title)
    assert not any(bad in key for bad in SYNTAX) and is_partition_key(key) and key == key.strip()
    assert "  " not in key


def test_dagster_refuses_none_of_the_keys() -> None:
    """Dagster's own rule for static keys (the strictest it has) accepts them."""
    keys = [readable_key(t) for t in ("Koch/Köchin (Kantine), 3. Schicht", "Mitarbeiter... Lager", "Bäcker\tin")]
    dg.StaticPartitionsDefinition(keys)  # raises DagsterInvalidDefinitionError on "..." or control characters


def test_a_long_title_is_cut_at_a_word_and_an_unclosed_bracket_dropped() -> None:
    title = "Fachkraft für Lagerlogistik und Kommissionierung im Schichtbetrieb (Vollzeit)"
    key = readable_key(title)
    assert key == "Fachkraft für Lagerlogistik und Kommissionierung" and len(key) <= TITLE_CHARS
    assert readable_key("Mitarbeiter Kundenservice und Auftragsabwicklung (Innendienst Vollzeit)") == (
        "Mitarbeiter Kundenservice und Auftragsabwicklung")
    # No space near the limit: cut hard rather than keep only a short first word.
    assert readable_key("Kraftfahrzeugmechatronikermeisterstellvertretungsanwärter") == (
        "Kraftfahrzeugmechatronikermeisterstellvertretung")
    # Nothing readable left: the fixed fallback word "Titel" (a collision gets a suffix), never an empty key.
    assert readable_key("??? !!!") == "Titel"


def test_the_disambiguator_comes_last_and_only_when_the_readable_key_is_taken() -> None:
    assert partition_key_for("Koch", "koch") == "Koch"
    clash = partition_key_for("Koch.", "koch.", taken={"Koch"})
    assert clash.startswith("Koch ~") and len(clash) == len("Koch ~") + 6
    assert clash == partition_key_for("Koch.", "koch.", taken={"Koch"})  # stable
    assert partition_key_for("Koch?", "koch?", taken={"Koch"}) != clash  # another title, another suffix
    longest = partition_key_for("x" * 90, "x" * 90, taken={"x" * TITLE_CHARS})
    assert len(longest) <= 64 and is_partition_key(longest)  # fits the column
    third = partition_key_for("Koch.", "koch.", taken={"Koch", clash})
    assert third.startswith("Koch ~") and third not in {"Koch", clash}


def test_old_keys_are_recognised() -> None:
    assert legacy_partition_key("junior notfallsanitaeter") == "6ffb3286ef-junior-notfallsanitaeter"
    assert is_legacy_key("6ffb3286ef-junior-notfallsanitaeter") and not is_legacy_key("Junior Notfallsanitäter")


def _failed_row(title: str, **extra: object) -> dict[str, object]:
    return {"title_key": title_key(title), "title": title, "status": "no_match", "score": 0.3,
            "candidates_json": "[]", "fingerprint": "f", **extra}


def _keys(engine: sa.Engine) -> dict[str, str]:
    ft = berufenet_failed_titles.c
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(ft.title, ft.partition_key)).tuples().all())


def test_stored_keys_are_readable_disambiguated_on_collision_and_never_change(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    # "Koch, Köchin" and "Koch Köchin" are different titles (title keys) that read the same once the comma,
    # list syntax in the UI, is gone.
    store.upsert_failed_titles(engine, [_failed_row("Koch, Köchin"), _failed_row("Bäcker/in")], NOW)
    store.upsert_failed_titles(engine, [_failed_row("Koch Köchin"), _failed_row("Koch, Köchin", status="llm_rejected")],
                               NOW)
    keys = _keys(engine)
    assert keys["Koch, Köchin"] == "Koch Köchin" and keys["Bäcker/in"] == "Bäcker/in"  # the first keeps the plain key
    assert keys["Koch Köchin"] == partition_key_for("Koch Köchin", "koch koechin", taken={"Koch Köchin"})
    assert keys["Koch Köchin"].startswith("Koch Köchin ~")
    # Two colliding titles in one batch get different keys too.
    store.upsert_failed_titles(engine, [_failed_row("Maler."), _failed_row("Maler")], NOW)
    keys = _keys(engine)
    assert keys["Maler."] == "Maler" and keys["Maler"].startswith("Maler ~")
    found = store.failed_title(engine, "Koch Köchin")
    assert found is not None and found.title == "Koch, Köchin" and found.status == "llm_rejected"


def _build_at_0001_with_old_keys(engine: sa.Engine, titles: list[str]) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(berufenet_failed_titles.insert(), [
            {**_failed_row(t), "partition_key": legacy_partition_key(title_key(t)), "resolved": False,
             "first_failed_at": NOW, "updated_at": NOW}
            for t in titles
        ])


def test_migration_0002_renames_old_keys_to_readable_ones(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    # Two titles whose readable keys collide (the earlier one keeps the plain form) and a plain one.
    titles = ["Junior Notfallsanitäter", "Koch, Köchin", "Koch Köchin"]
    _build_at_0001_with_old_keys(engine, titles)

    result = upgrade_to_head(engine)

    assert (result.before, result.after) == ("0001", head_revision())
    keys = _keys(engine)
    assert keys["Junior Notfallsanitäter"] == "Junior Notfallsanitäter" and keys["Koch, Köchin"] == "Koch Köchin"
    # The migrated keys are the ones the code would choose.
    assert keys["Koch Köchin"] == partition_key_for("Koch Köchin", "koch koechin", taken={"Koch Köchin"})
    assert keys["Koch Köchin"].startswith("Koch Köchin ~")
    # A backfill queued under an old key before the upgrade still finds its title.
    old = legacy_partition_key(title_key("Koch Köchin"))
    found = store.failed_title(engine, old)
    assert found is not None and found.title == "Koch Köchin"


def test_the_migration_leaves_current_keys_alone() -> None:
    migration = importlib.import_module("ty_pipeline.warehouse.migrations.versions.0002_readable_failed_title_keys")
    for title in ["Junior Notfallsanitäter", "Koch/Köchin (Kantine), 3. Schicht", "x" * 90, "???"]:
        for taken in (set(), {readable_key(title)}):
            assert migration.new_key(title, title_key(title), taken) == partition_key_for(title, title_key(title), taken)


def _tick(instance: dg.DagsterInstance, warehouse_url: str) -> SensorExecutionData:
    return tick_failed_titles_sensor(instance, {
        "warehouse": WarehouseResource(url=warehouse_url), "profession_catalog": ProfessionCatalogResource()})


def test_the_sensor_replaces_partitions_registered_under_old_keys(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    titles = ["Junior Notfallsanitäter", "Lagerhelfer Nachtschicht", "Xyzzy"]
    _build_at_0001_with_old_keys(engine, titles)
    upgrade_to_head(engine)
    with engine.begin() as conn:  # resolved since it was registered: its old key is only removed
        conn.execute(sa.update(berufenet_failed_titles).where(berufenet_failed_titles.c.title == "Xyzzy")
                     .values(resolved=True))
    with dg.instance_for_test() as instance:
        old = [legacy_partition_key(title_key(t)) for t in titles]
        instance.add_dynamic_partitions(PARTITIONS_NAME, [*old, "4c0ffee000-not-in-this-warehouse"])

        first = _tick(instance, warehouse_url)

        assert sorted(instance.get_dynamic_partitions(PARTITIONS_NAME)) == [
            "Junior Notfallsanitäter", "Lagerhelfer Nachtschicht"]
        assert first.skip_message == (
            "replaced 4 partitions registered under the old key form (hash first) by 2 keys that read as the "
            "title; their run history stays under the old keys")
        assert first.cursor is None  # new failed titles are still read from the start
        second = _tick(instance, warehouse_url)
        assert "replaced" not in (second.skip_message or "")
        assert sorted(instance.get_dynamic_partitions(PARTITIONS_NAME)) == [
            "Junior Notfallsanitäter", "Lagerhelfer Nachtschicht"]


def test_open_failed_titles_most_postings_first_with_reason_and_key(warehouse_url: str) -> None:
    from ty_pipeline.assets.berufenet_mappings import open_titles_metadata

    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    assert open_titles_metadata(engine) == {"open_failed_titles": 0,
                                            "open_failed_titles_top": dg.MetadataValue.md("no open failed titles")}
    store.upsert_failed_titles(engine, [
        _failed_row("Xyzzy | Quux"), _failed_row("Lagerhelfer Nacht", status="llm_rejected"),
        _failed_row("Erledigt"), *[_failed_row(f"Titel {i:02d}") for i in range(30)],
    ], NOW)
    store.set_title_error(engine, "Lagerhelfer Nacht", "The LLM found none of the 5 candidates fitting", NOW)
    ft = berufenet_failed_titles.c
    with engine.begin() as conn:
        for title, n in [("Xyzzy | Quux", 3), ("Lagerhelfer Nacht", 7), ("Erledigt", 50)]:
            conn.execute(sa.update(berufenet_failed_titles).where(ft.title == title).values(posting_count=n))
        conn.execute(sa.update(berufenet_failed_titles).where(ft.title == "Erledigt").values(resolved=True))

    meta = open_titles_metadata(engine)

    assert meta["open_failed_titles"] == 32
    table = meta["open_failed_titles_top"].value
    lines = table.splitlines()
    assert lines[0] == "| title | postings | status | last failure | partition key |"
    assert lines[2] == ("| Lagerhelfer Nacht | 7 | llm_rejected | The LLM found none of the 5 candidates fitting | "
                        "Lagerhelfer Nacht |")
    assert lines[3] == ("| Xyzzy \\| Quux | 3 | no_match | nearest catalog name below the verify threshold | "
                        "Xyzzy Quux |")
    assert "Erledigt" not in table  # resolved titles are not open
    assert sum(1 for line in lines if line.startswith("| Titel")) == 23  # 25 rows shown in all
    assert "… and 7 more" in table and "Backfill `berufenet_title_retry`" in table


def test_failure_reasons_say_what_a_status_means() -> None:
    assert failure_reason("llm_unavailable", None) == "uncertain band, the LLM was unavailable"
    assert failure_reason("no_match", "retry: OllamaUnavailable: down") == "retry: OllamaUnavailable: down"
    (row,) = open_titles_rows([("Koch", "Koch!", 2, "error", None)])
    assert list(row) == ["title", "postings", "status", "last failure", "partition key"]


def test_mapping_coverage_counts_the_whole_partition(warehouse_url: str) -> None:
    from ty_pipeline_tests.berufenet_fakes import add_postings

    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    day = date(2026, 11, 18)
    ids = add_postings(engine, day, [("Koch", None), ("Xyzzy", None), ("Maler", None)])
    assert store.partition_mapping_coverage(engine, day).share == 0.0
    store.save_mappings(engine, [
        store.mapping_row(ids["Koch"][0], "koch", "exact", None, None, NOW),
        store.mapping_row(ids["Xyzzy"][0], "xyzzy", "no_match", None, None, NOW),
    ])
    coverage = store.partition_mapping_coverage(engine, day)
    assert (coverage.postings, coverage.resolved, coverage.share) == (3, 1, 0.3333)

"""The official KldB 2010 directory shipped in data/kldb/ is the profession catalog a user gets without
setting anything; `TY_KLDB_CSV=seed` picks the small seed catalog (what the tests use for speed)."""

from __future__ import annotations

import dagster as dg
import pytest

from ty_pipeline import data_files
from ty_pipeline.definitions import build_resources
from ty_pipeline.professions.catalog import (
    DEFAULT_SEED_CATALOG,
    SEED,
    SOURCE_KLDB,
    SOURCE_KLDB_OCCUPATION,
    SOURCE_SEED,
    load_catalog_file,
)
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline_tests.paths import KLDB_CSV


def test_the_shipped_kldb_directory_is_the_default_catalog() -> None:
    loaded = ProfessionCatalogResource().load()
    assert loaded.origin == str(KLDB_CSV)
    sources = [e.source for e in loaded.entries]
    # docs/wire_formats.md §3.4: 18,838 named professions plus the 1,300 current five-digit occupations.
    assert sources.count(SOURCE_KLDB) == 18_838
    assert sources.count(SOURCE_KLDB_OCCUPATION) == 1_300
    assert loaded.occupations == 1_301
    assert "43414-102" in {p.profession_id for p in loaded.professions}  # Softwareentwickler/in


def test_seed_is_chosen_by_name_and_is_a_small_subset() -> None:
    seed = load_catalog_file(SEED)
    assert seed.origin == str(DEFAULT_SEED_CATALOG)
    assert {e.source for e in seed.entries} == {SOURCE_SEED}
    assert len(seed.entries) == 146
    assert load_catalog_file(None).origin == str(data_files.kldb_csv())


@pytest.mark.parametrize(
    ("env_value", "expected_origin"),
    [(None, str(KLDB_CSV)), ("", str(KLDB_CSV)), (SEED, str(DEFAULT_SEED_CATALOG))],
)
def test_the_code_location_follows_ty_kldb_csv(
    monkeypatch: pytest.MonkeyPatch, env_value: str | None, expected_origin: str
) -> None:
    """What `dagster dev -m ty_pipeline` builds: unset (or empty) means the shipped directory."""
    if env_value is None:
        monkeypatch.delenv("TY_KLDB_CSV", raising=False)
    else:
        monkeypatch.setenv("TY_KLDB_CSV", env_value)
    # Resolved the way a run resolves it (an EnvVar is read at launch).
    with dg.build_resources({"profession_catalog": build_resources()["profession_catalog"]}) as resources:
        assert resources.profession_catalog.load().origin == expected_origin

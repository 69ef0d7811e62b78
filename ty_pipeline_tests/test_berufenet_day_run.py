"""`professions.partition_run.map_day`, the service behind `berufenet_mappings`, called without Dagster:
a real SQLite warehouse, the trigram fake encoder and the loopback FakeOllama (or no server at all)."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ty_pipeline.clients.ollama import OllamaClient
from ty_pipeline.domain.berufenet_status import BerufenetStatus as S
from ty_pipeline.professions.catalog import DEFAULT_SEED_CATALOG, SEED, load_catalog_file
from ty_pipeline.professions.catalog_build import build_catalog
from ty_pipeline.professions.partition_run import CatalogMissing, DaySettings, map_day
from ty_pipeline_tests.berufenet_fakes import (
    FAKE_MODEL_ID,
    NOW,
    TrigramEncoder,
    add_postings,
    choose_by_name,
    write_test_catalog,
)
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.helpers import UNUSED_URL

DAY = date(2026, 11, 18)
LLM = "qwen2.5:7b-instruct"
# The trigram encoder's thresholds (as in test_berufenet_assets): >= 0.80 accept, < 0.40 no_match.
SETTINGS = DaySettings(accept_threshold=0.80, verify_threshold=0.40, llm_model=LLM)
BAND_TITLE = "Junior Datenbank Administrator"  # lands in the uncertain band


def open_encoder() -> Any:
    return nullcontext(TrigramEncoder())


class Clients:
    """Opens Ollama clients for one base URL and records which were opened and closed."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opened: list[OllamaClient] = []
        self.closed: list[OllamaClient] = []

    def __call__(self) -> OllamaClient:
        client = OllamaClient(self.base_url, max_retries=0, connect_timeout_s=1.0, read_timeout_s=10)
        real_close = client.close

        def close() -> None:
            self.closed.append(client)
            real_close()

        client.close = close  # type: ignore[method-assign]
        self.opened.append(client)
        return client


@pytest.fixture
def engine(sqlite_engine: sa.Engine, tmp_path: Path) -> sa.Engine:
    loaded = load_catalog_file(SEED, write_test_catalog(tmp_path, DEFAULT_SEED_CATALOG))
    build_catalog(sqlite_engine, loaded, open_encoder=open_encoder, now=lambda: NOW)
    return sqlite_engine


def test_an_unreachable_llm_leaves_the_band_unverified_and_names_its_titles(engine: sa.Engine) -> None:
    ids = add_postings(engine, DAY, [(BAND_TITLE, None), (BAND_TITLE, None), ("Senior Softwareentwickler", None)])
    clients, warned = Clients(UNUSED_URL), []
    mapped = map_day(engine, DAY, SETTINGS, embed_model_id=FAKE_MODEL_ID, open_encoder=open_encoder,
                     open_llm_client=clients, now=lambda: NOW, warn=warned.append)

    assert mapped.calibrated and not warned  # both thresholds given: nothing to calibrate
    assert (mapped.thresholds.accept, mapped.thresholds.verify) == (0.80, 0.40)
    assert mapped.run.processed == 3 and mapped.run.encoder_model == FAKE_MODEL_ID
    assert mapped.llm_unavailable_titles == 1 and mapped.error_titles == 0
    assert mapped.run.report.llm_problem and "not reachable" in mapped.run.report.llm_problem
    assert [r.group.title for r in mapped.unverified] == [BAND_TITLE]
    assert sorted(mapped.unverified[0].group.posting_ids) == sorted(ids[BAND_TITLE])
    key = mapped.unverified[0].group.key
    assert mapped.unverified_partition_keys == {key: BAND_TITLE}  # the failed title's backfill key
    assert mapped.resolved_postings == 1 and mapped.postings_by_status[str(S.LLM_UNAVAILABLE)] == 2
    assert (mapped.coverage.postings, mapped.coverage.resolved) == (3, 1)
    assert mapped.unmapped == 0 and mapped.unmapped_ids == []  # every posting has a row, with its reason
    # The client was opened for the band's preflight and closed although the preflight failed.
    assert len(clients.opened) == 1 and clients.closed == clients.opened


def test_the_llm_verifies_the_band_and_is_opened_only_when_there_is_one(engine: sa.Engine) -> None:
    add_postings(engine, DAY, [("Softwareentwickler (m/w/d)", None)])
    with FakeOllama() as ollama:
        ollama.responder = choose_by_name({BAND_TITLE: "Datenbankadministrator"})
        clients, warned = Clients(ollama.base_url), []
        # Default thresholds: the fake encoder is not calibrated, which is said before the run.
        exact = map_day(engine, DAY, DaySettings(llm_model=LLM), embed_model_id=FAKE_MODEL_ID,
                        open_encoder=open_encoder, open_llm_client=clients, now=lambda: NOW, warn=warned.append)
        assert not exact.calibrated and len(warned) == 1 and f"No calibrated thresholds for {FAKE_MODEL_ID}" in warned[0]
        assert exact.titles_by_status == {str(S.EXACT): 1} and clients.opened == []

        add_postings(engine, DAY, [(BAND_TITLE, None)], prefix="b")
        verified = map_day(engine, DAY, SETTINGS, embed_model_id=FAKE_MODEL_ID, open_encoder=open_encoder,
                           open_llm_client=clients, now=lambda: NOW)
    assert verified.run.up_to_date == 1 and verified.run.processed == 1
    assert verified.titles_by_status == {str(S.LLM_VERIFIED): 1} and verified.unverified == []
    assert verified.coverage.resolved == 2 and len(clients.opened) == 1 and clients.closed == clients.opened


def test_an_empty_catalog_raises_before_any_write(sqlite_engine: sa.Engine) -> None:
    add_postings(sqlite_engine, DAY, [("Koch", None)])
    clients = Clients(UNUSED_URL)
    with pytest.raises(CatalogMissing, match="berufenet_catalog"):
        map_day(sqlite_engine, DAY, SETTINGS, embed_model_id=FAKE_MODEL_ID, open_encoder=open_encoder,
                open_llm_client=clients, now=lambda: NOW)
    with sqlite_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM berufenet_mappings")).scalar_one() == 0
    assert clients.opened == []

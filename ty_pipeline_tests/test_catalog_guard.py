"""Defect 5 of issue 9: a truncated KldB CSV must not replace the stored catalog."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
from ty_pipeline.domain.catalog_guard import CatalogRejected, check_catalog_size
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline.warehouse.schema import berufenet_aliases
from ty_pipeline.warehouse.schema import berufenet_catalog as catalog_table
from ty_pipeline_tests.paths import KLDB_CSV
from ty_pipeline_tests.test_berufenet_catalog import TinyEmbedder


def first_lines(tmp_path: Path, n: int, cut_last: bool = False) -> Path:
    """The first `n` lines of the official directory, optionally with the last line cut in half."""
    lines = KLDB_CSV.read_text(encoding="utf-8-sig").splitlines(keepends=True)[:n]
    if cut_last:
        lines[-1] = lines[-1][: len(lines[-1]) // 2]
    path = tmp_path / f"kldb_first_{n}{'_cut' if cut_last else ''}.csv"
    path.write_text("".join(lines), encoding="utf-8-sig")
    return path


def materialize(warehouse_url: str, kldb_csv: Path | str, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [berufenet_catalog],
        resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": TinyEmbedder(),
                   "profession_catalog": ProfessionCatalogResource(kldb_csv=str(kldb_csv)),
                   "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
        run_config=run_config,
        raise_on_error=False,
    )


def stored(warehouse_url: str) -> tuple[int, int]:
    with get_engine(warehouse_url).connect() as conn:
        entries = conn.execute(sa.select(sa.func.count()).select_from(catalog_table)).scalar_one()
        aliases = conn.execute(sa.select(sa.func.count()).select_from(berufenet_aliases)).scalar_one()
    return entries, aliases


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def test_truncated_kldb_csv_fails_and_keeps_the_stored_catalog(warehouse_url: str, tmp_path: Path) -> None:
    assert materialize(warehouse_url, KLDB_CSV).success
    before = stored(warehouse_url)
    assert before[0] == 20138

    result = materialize(warehouse_url, first_lines(tmp_path, 400))

    assert not result.success
    message = failure_text(result)
    assert "looks truncated" in message and "20138 stored" in message and "min_share_of_stored" in message
    assert stored(warehouse_url) == before
    # Not retried: the same file would be read again (one attempt, no RetryRequested).
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]

    # An operator who means it accepts the smaller catalog for one run.
    accepted = materialize(warehouse_url, first_lines(tmp_path, 400),
                           {"ops": {"berufenet_catalog": {"config": {"min_share_of_stored": 0}}}})
    assert accepted.success
    assert 0 < stored(warehouse_url)[0] < 20138 * 0.9


def test_kldb_csv_with_a_cut_last_row_fails_and_writes_nothing(warehouse_url: str, tmp_path: Path) -> None:
    # A full-size file minus half a line (the row-count rule alone would let this one through).
    full = KLDB_CSV.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    result = materialize(warehouse_url, first_lines(tmp_path, len(full), cut_last=True))

    assert not result.success
    message = failure_text(result)
    assert f"line {len(full)} has" in message and "cut or damaged" in message and "TY_KLDB_CSV" in message
    assert stored(warehouse_url) == (0, 0)


def test_catalog_size_rule() -> None:
    check_catalog_size("f", 18_200, 20_138)  # 90.4 %: a new edition may drop some entries
    check_catalog_size("f", 5, 0)  # first build
    check_catalog_size("f", 1, 20_138, min_share=0)
    with pytest.raises(CatalogRejected, match="23%"):
        check_catalog_size("f", 4_600, 20_138)
    with pytest.raises(CatalogRejected, match="no entries"):
        check_catalog_size("f", 0, 0)


def test_an_unreachable_catalog_url_is_retried_and_shown_without_credentials(warehouse_url: str) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again: the download is refused
    result = materialize(warehouse_url, f"http://ops:pw123@127.0.0.1:{port}/kldb.csv?token=abc")
    assert not result.success
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) >= 1  # transient
    message = failure_text(result)
    assert message.startswith(
        f"OSError: the KldB directory at TY_KLDB_CSV=http://127.0.0.1:{port} could not be downloaded: ConnectionError")
    events = str(result.all_events)  # messages, error info and metadata as the event log keeps them
    assert "pw123" not in events and "token=abc" not in events
    assert stored(warehouse_url) == (0, 0)

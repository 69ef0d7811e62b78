"""How a run reaches the posting sources, as plain values: client factories and listing settings.

The Dagster resources build this (`resources/job_sources.py`); the Dagster-free services
(`fetching/postings_run.py`, `fetching/descriptions_run.py`) open the clients they need and close them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ty_pipeline.clients.deutsche_bank import DeutscheBankClient
from ty_pipeline.clients.jobsuche import JobsucheClient
from ty_pipeline.fetching.sample import DEFAULT_SAMPLE_DIR


@dataclass(frozen=True)
class SourceAccess:
    # Each call builds a client with its own rate limiter: one per step, shared by its threads.
    jobsuche: Callable[[], JobsucheClient]
    deutsche_bank: Callable[[], DeutscheBankClient]
    sample_dir: Path = DEFAULT_SAMPLE_DIR
    jobsuche_page_size: int = 100
    deutsche_bank_page_size: int = 100
    deutsche_bank_country_ids: list[str] | None = None  # None or empty: no country filter (worldwide)
    deutsche_bank_max_items: int = 5000
    # Detail fetches in flight per source: enough threads for both to use their caps at once.
    jobsuche_in_flight: int = 6
    deutsche_bank_in_flight: int = 2

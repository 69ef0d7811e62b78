"""Where the data files the product reads at run time are, in a checkout and in an installed package.

The files live in the repository's top-level `data/` (a maintainer edits them there; provenance notes sit
beside them). `setup.py` ships the same directory inside the package as `ty_pipeline/data/`, so a wheel
or a non-editable install finds them without a checkout. An editable install or `PYTHONPATH=<checkout>`
runs from the source tree, where `ty_pipeline/data/` does not exist and the checkout's `data/` is used.

No Dagster import here: the catalog loaders and the offline sample source read these paths.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

KLDB_CSV_NAME = "kldb/KldB_2010_V2020_Gliederung_mit_Erlaeuterung.csv"
SEED_CATALOG_NAME = "seed_catalog.csv"
SAMPLE_DIR_NAME = "sample"
SAMPLE_FILE_NAMES = (
    "jobsuche_search_v6.json",
    "jobsuche_details.json",
    "deutsche_bank_search.json",
    "deutsche_bank_jobhtml.json",
)

RUNTIME_FILES: tuple[str, ...] = (
    KLDB_CSV_NAME,
    SEED_CATALOG_NAME,
    *(f"{SAMPLE_DIR_NAME}/{name}" for name in SAMPLE_FILE_NAMES),
)
"""Every data file the product reads at run time, relative to the data directory. The packaging test
checks that `setup.py` ships each of them and that each is tracked by git."""


def data_dir() -> Path:
    """The directory holding the shipped data: inside the package when installed, else the checkout's."""
    installed = _PACKAGE_DIR / "data"
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / "data"


def data_file(name: str) -> Path:
    """One shipped file by its name relative to the data directory (see `RUNTIME_FILES`)."""
    return data_dir() / name


def kldb_csv() -> Path:
    """The official KldB 2010 directory (data/kldb/PROVENANCE.md): the default profession catalog."""
    return data_file(KLDB_CSV_NAME)


def seed_catalog_csv() -> Path:
    """The 146-row hand-written catalog, a subset of the KldB names, for tests that need speed."""
    return data_file(SEED_CATALOG_NAME)


def sample_dir() -> Path:
    """Invented postings in the real wire formats, for the offline `sample` source."""
    return data_file(SAMPLE_DIR_NAME)

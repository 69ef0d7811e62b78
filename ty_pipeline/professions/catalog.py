"""The profession catalog as the mapper sees it: which entries, what text each name is embedded as,
and a version so that remembered decisions can tell whether the catalog changed under them."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ty_pipeline import data_files
from ty_pipeline.domain.catalog_guard import CatalogRejected
from ty_pipeline.domain.embedding_text import content_hash, normalize_text
from ty_pipeline.domain.kldb_catalog import (
    KldbCatalog,
    NamedProfession,
    catalog_rows,
    load_kldb_catalog,
    load_seed_catalog,
)
from ty_pipeline.domain.titles import clean_job_title
from ty_pipeline.domain.urls import redact_secrets_of, redact_url

if TYPE_CHECKING:  # only the type: importing it here would pull `requests` into every catalog reader
    from ty_pipeline.clients.berufenet import BerufenetFetch

DEFAULT_KLDB_CSV = data_files.kldb_csv()  # the official directory shipped in data/kldb/: the default catalog
DEFAULT_SEED_CATALOG = data_files.seed_catalog_csv()  # 146 rows: builds in a blink, for tests that need speed
SEED = "seed"
"""The value of `TY_KLDB_CSV` (and of `kldb_csv` arguments) that picks the seed catalog instead."""

SOURCE_KLDB = "kldb"  # a named profession from the KldB column "Umfasst ferner"
SOURCE_KLDB_OCCUPATION = "kldb_occupation"  # a five-digit KldB occupation standing in as a profession
SOURCE_SEED = "seed"  # the hand-written seed catalog in data/seed_catalog.csv
SOURCE_BERUFENET = "berufenet"  # a profession from the BERUFENET REST API, id "bn-<Berufs-ID>"


@lru_cache(maxsize=65536)
def embed_text_for(name: str) -> str:
    """The text a catalog name is embedded as: the name cleaned exactly like a posting title.

    Titles reach the embedding stage cleaned ("Softwareentwickler"), catalog names are written in the
    BA's gendered style ("Softwareentwickler/in", "Bankkaufmann/-frau"). Cleaning both sides the same
    way compares like with like. Cached: the cleaning rules are regex-heavy and a KldB catalog has
    20,000 names, rebuilt and re-read by several assets.
    """
    cleaned = clean_job_title(name)
    return normalize_text(cleaned or name)


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog row with the source it came from."""

    profession: NamedProfession
    source: str


@dataclass(frozen=True)
class LoadedCatalog:
    """What the catalog asset writes: every entry plus where the file came from."""

    entries: tuple[CatalogEntry, ...]
    origin: str  # path or URL, for the metadata
    occupations: int = 0  # five-digit occupations in the source file (0 for the seed catalog)
    berufenet: BerufenetFetch | None = None  # the API walk's counts, when the API was added

    @property
    def professions(self) -> list[NamedProfession]:
        return [e.profession for e in self.entries]


def from_kldb(catalog: KldbCatalog, origin: str) -> LoadedCatalog:
    entries = [CatalogEntry(p, SOURCE_KLDB) for p in catalog.professions]
    entries += [CatalogEntry(p, SOURCE_KLDB_OCCUPATION) for p in catalog.occupation_entries]
    return LoadedCatalog(tuple(entries), origin, catalog.occupation_count)


def load_catalog_file(kldb_csv: str | None, seed_csv: str | Path = DEFAULT_SEED_CATALOG) -> LoadedCatalog:
    """The catalog file `kldb_csv` names: unset, the shipped KldB directory; `"seed"`, the seed catalog at
    `seed_csv`; otherwise a path or URL of a KldB directory CSV."""
    if kldb_csv == SEED:
        seed = load_seed_catalog(seed_csv)
        return LoadedCatalog(tuple(CatalogEntry(p, SOURCE_SEED) for p in seed), str(seed_csv))
    if kldb_csv and kldb_csv.startswith(("http://", "https://")):
        import requests

        shown = redact_url(kldb_csv)  # a token in the URL must not reach logs or metadata
        try:
            resp = requests.get(kldb_csv, timeout=(10, 120))
            resp.raise_for_status()
        except requests.RequestException as exc:
            # `from None`: the library's exception quotes the full URL, and Dagster shows the chain.
            # An OSError, not a ValueError: a failed download may pass, so the step retries it
            # (ty_pipeline.step_retries sees the ConnectionError/HTTPError in __context__).
            raise OSError(
                f"the KldB directory at TY_KLDB_CSV={shown} could not be downloaded: "
                f"{redact_secrets_of(f'{type(exc).__name__}: {exc}', kldb_csv)}"
            ) from None
        return from_kldb(_parse_kldb(io.BytesIO(resp.content), shown), shown)
    path = kldb_csv or str(DEFAULT_KLDB_CSV)
    return from_kldb(_parse_kldb(path, path), path)


def _parse_kldb(source: str | io.BytesIO, shown: str) -> KldbCatalog:
    """Parse errors name the file (TY_KLDB_CSV), so an operator knows which setting to fix."""
    try:
        return load_kldb_catalog(source)
    except CatalogRejected as exc:
        raise CatalogRejected(f"KldB CSV {shown} (TY_KLDB_CSV): {exc}") from None
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"KldB CSV {shown} (TY_KLDB_CSV) is not the KldB 2010 directory: {exc}") from None


def with_berufenet(loaded: LoadedCatalog, api_result: BerufenetFetch) -> LoadedCatalog:
    """The file catalog (KldB CSV or seed) plus the BERUFENET professions, each profession id once.

    The file's entries come first and win a clash: the catalog table's key is the profession id, and the
    official directory is the reference. ("bn-" ids cannot clash with KldB ids; the check guards repeats.)
    """
    entries = list(loaded.entries)
    seen = {e.profession.profession_id for e in entries}
    for profession in api_result.professions:
        if profession.profession_id not in seen:
            seen.add(profession.profession_id)
            entries.append(CatalogEntry(profession, SOURCE_BERUFENET))
    origin = f"{loaded.origin} + BERUFENET API {redact_url(api_result.base_url)}"
    return LoadedCatalog(tuple(entries), origin, loaded.occupations, api_result)


def warehouse_rows(catalog: LoadedCatalog) -> list[dict[str, Any]]:
    """Rows of the `berufenet_catalog` table (without `updated_at`)."""
    rows: list[dict[str, Any]] = []
    for entry in catalog.entries:
        (row,) = catalog_rows([entry.profession], source=entry.source)
        text = embed_text_for(entry.profession.name)
        rows.append({**row, "embed_text": text, "embed_hash": content_hash(text)})
    return rows


def settings_fingerprint(**settings: object) -> str:
    """Hash of everything that decides an unresolved outcome; a remembered failure counts only while
    its fingerprint is current."""
    text = "\n".join(f"{key}={settings[key]}" for key in sorted(settings))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

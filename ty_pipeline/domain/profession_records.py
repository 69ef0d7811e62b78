"""The records the profession mapping and its warehouse store hand each other.

Pure data, in the domain layer so that `warehouse/berufenet_store.py` can read and write them without
importing the mapping service (`ty_pipeline.professions`), which itself uses the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ty_pipeline.domain.berufenet_status import BerufenetStatus
from ty_pipeline.domain.kldb_catalog import NamedProfession
from ty_pipeline.domain.profession_matching import Candidate


@dataclass(frozen=True, slots=True)
class PostingTitle:
    posting_id: int
    title: str | None
    beruf: str | None = None
    city: str | None = None  # lets the cleaner strip "- Unterschleißheim" from this posting's title


@dataclass(frozen=True)
class LearnedAlias:
    title_key: str
    profession_id: str
    status: str
    score: float | None = None


@dataclass(frozen=True)
class KnownFailure:
    title_key: str
    status: BerufenetStatus
    score: float | None
    candidates: tuple[Candidate, ...] = ()


def catalog_version(rows: Iterable[Mapping[str, Any]]) -> str:
    """A short hash of (id, name) over the whole catalog: changes whenever an entry does."""
    digest = hashlib.sha256()
    for pid, name in sorted((str(r["profession_id"]), str(r["name"])) for r in rows):
        digest.update(f"{pid}\t{name}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CatalogSnapshot:
    """The catalog for one mapping run: professions by id and the version they were read at."""

    professions: Mapping[str, NamedProfession]
    version: str

    def __len__(self) -> int:
        return len(self.professions)

    @classmethod
    def from_professions(cls, professions: Sequence[NamedProfession]) -> CatalogSnapshot:
        by_id = {p.profession_id: p for p in professions}
        version = catalog_version({"profession_id": p.profession_id, "name": p.name} for p in professions)
        return cls(by_id, version)

"""The KldB 2010 (Fassung 2020) directory as a profession catalog.

Source: the Bundesagentur für Arbeit's "Gliederung mit Erläuterungen" CSV (UTF-8 with BOM, `;`-separated,
one row per classification node on five levels; see `data/kldb/PROVENANCE.md` and docs/wire_formats.md §3).
What we take from it:

* **Occupations** (Ebene 5, "Berufsgattungen", 1,301 rows): the five-digit code, `Titel` and `Kurztitel`.
  Military codes lost their leading zero in the CSV ("1104" is 01104); `zfill(Ebene)` restores it.
  One of them (81122) is marked "(weggefallen)": it stays in `occupations` so the count matches the
  official directory, but it is not offered as a profession.
* **Named professions**: the column "Umfasst ferner" lists, per occupation, named professions with a
  code such as `43414-102 Softwareentwickler/in` (18,838 in the 2020 edition). The code's first five
  digits are the KldB occupation; its 5th digit is the qualification level (1 Helfer, 2 Fachkraft,
  3 Spezialist, 4 Experte) and its first two digits the Berufshauptgruppe ("domain").
  "Einschlüsse" was checked as well: it holds free-text activity descriptions and carries no coded
  names (0 matches of `NNNNN-NNN` in the 2020 file), so it is not parsed for professions.

The text columns contain HTML entities (`&nbsp;` in "Einschlüsse" and "Allgemeine Bemerkungen"); every
text we keep is entity-decoded and whitespace-normalised so a name never differs from its display form
by an invisible character.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any, cast

from ty_pipeline.domain.catalog_guard import check_row_width
from ty_pipeline.domain.text_clean import strip_unstorable

# Column headers of the official CSV (after BOM removal).
COL_KEY = "Schlüssel KldB 2010, V. 2020"
COL_LEVEL = "Ebene"
COL_TITLE = "Titel"
COL_SHORT_TITLE = "Kurztitel"
COL_ALSO_COVERS = "Umfasst ferner"
REQUIRED_COLUMNS = (COL_KEY, COL_LEVEL, COL_TITLE, COL_SHORT_TITLE, COL_ALSO_COVERS)

# Occupations whose title says they were withdrawn from the classification.
_WITHDRAWN_TITLE = "(weggefallen)"

# A coded named profession inside "Umfasst ferner". The occupation part may have lost its leading zero
# in the same way as the key column, so 4 digits are accepted and padded.
_PROFESSION_CODE = re.compile(r"(?<![\d-])(\d{4,5})-(\d{3})(?![\d])")
_WHITESPACE = re.compile(r"\s+")
_KLDB5 = re.compile(r"^\d{5}$")
_PROFESSION_ID = re.compile(r"^\d{5}(?:-\d{3})?$")
# BERUFENET professions carry their Berufs-ID behind a prefix, so they can never collide with a bare
# five-digit occupation id; the id says nothing about the KldB code (it fits the 16-character id columns).
BERUFENET_ID_PREFIX = "bn-"
_BERUFENET_ID = re.compile(r"^bn-\d{1,13}$")

QUALIFICATION_LEVELS = {1: "Helfer", 2: "Fachkraft", 3: "Spezialist", 4: "Experte"}


def clean_text(value: str) -> str:
    """Decode HTML entities, drop what cannot be stored and collapse all whitespace (incl. NBSP, tabs)
    to single spaces."""
    # Entities can be double-encoded ("&amp;nbsp;"); two rounds are enough for anything seen in practice.
    # A catalog file (TY_KLDB_CSV may be any URL) can carry a NUL or a control character like any other
    # source; stripping after decoding keeps the whole catalog replace from failing on it.
    text = strip_unstorable(html.unescape(html.unescape(value)))
    return _WHITESPACE.sub(" ", text.replace("\u00a0", " ")).strip()


def normalise_kldb(code: str, level: int = 5) -> str:
    """Restore leading zeros the CSV lost (military codes) and check the result is all digits."""
    code = code.strip()
    if code.startswith("B "):  # BERUFENET delivers "B 43414"; the letter names the catalogue
        code = code[2:].strip()
    padded = code.zfill(level)
    if not padded.isdigit() or len(padded) != level:
        raise ValueError(f"not a level-{level} KldB code: {code!r}")
    return padded


@dataclass(frozen=True, slots=True)
class Occupation:
    """A KldB 2010 Berufsgattung (five-digit code)."""

    kldb: str
    title: str
    short_title: str

    @property
    def qualification_level(self) -> int:
        return int(self.kldb[4])

    @property
    def domain_code(self) -> str:
        return self.kldb[:2]

    @property
    def withdrawn(self) -> bool:
        return self.title == _WITHDRAWN_TITLE


@dataclass(frozen=True, slots=True)
class NamedProfession:
    """A profession that titles are mapped to.

    Either a named profession from "Umfasst ferner" (`profession_id` like "43414-102") or an occupation
    standing in as its own profession (`profession_id` is the bare five-digit code, name its "Titel"),
    so a title can map to an occupation that has no fitting named profession. Professions from the
    BERUFENET API have ids like "bn-27272" (their Berufs-ID) and take the KldB code from the API.
    """

    profession_id: str
    name: str
    kldb: str
    qualification_level: int
    domain_code: str

    def __post_init__(self) -> None:
        # The derived fields are redundant on purpose (they are warehouse columns); refuse inconsistent
        # ones so a bad seed row fails at load time rather than as a wrong demand snapshot later.
        berufenet = bool(_BERUFENET_ID.match(self.profession_id))
        if not berufenet and not _PROFESSION_ID.match(self.profession_id):
            raise ValueError(f"bad profession id {self.profession_id!r}")
        if not _KLDB5.match(self.kldb) or not (berufenet or self.profession_id.startswith(self.kldb)):
            raise ValueError(f"kldb {self.kldb!r} does not belong to profession {self.profession_id!r}")
        if self.qualification_level != int(self.kldb[4]) or self.qualification_level not in QUALIFICATION_LEVELS:
            raise ValueError(f"qualification level {self.qualification_level} does not match kldb {self.kldb}")
        if self.domain_code != self.kldb[:2]:
            raise ValueError(f"domain {self.domain_code!r} does not match kldb {self.kldb}")
        if not self.name:
            raise ValueError(f"profession {self.profession_id} has no name")

    @classmethod
    def from_code(cls, profession_id: str, name: str) -> NamedProfession:
        """Build from an id ("43414-102", "43414" or military "1104-100") and derive the KldB fields."""
        head, sep, tail = profession_id.strip().partition("-")
        kldb = normalise_kldb(head)
        pid = f"{kldb}-{tail}" if sep else kldb
        return cls(pid, clean_text(name), kldb, int(kldb[4]), kldb[:2])

    @property
    def is_occupation(self) -> bool:
        """True for the entry standing for a whole occupation rather than a named profession."""
        return "-" not in self.profession_id


@dataclass(frozen=True)
class KldbCatalog:
    """Everything taken from one KldB CSV; `entries` is what the title mapping searches."""

    occupations: tuple[Occupation, ...]
    professions: tuple[NamedProfession, ...]
    domain_titles: dict[str, str] = field(default_factory=dict)

    @property
    def occupation_count(self) -> int:
        return len(self.occupations)

    @property
    def profession_count(self) -> int:
        return len(self.professions)

    @cached_property
    def occupation_entries(self) -> tuple[NamedProfession, ...]:
        """One profession per (not withdrawn) occupation, keyed by the five-digit code."""
        return tuple(
            NamedProfession(o.kldb, o.title, o.kldb, o.qualification_level, o.domain_code)
            for o in self.occupations
            if not o.withdrawn
        )

    @cached_property
    def entries(self) -> tuple[NamedProfession, ...]:
        """Named professions followed by the occupation entries."""
        return self.professions + self.occupation_entries

    def by_id(self) -> dict[str, NamedProfession]:
        return {p.profession_id: p for p in self.entries}

    def occupation(self, kldb: str) -> Occupation | None:
        kldb = normalise_kldb(kldb)
        return next((o for o in self.occupations if o.kldb == kldb), None)


def _open_text(path_or_file: str | Path | IO[str] | IO[bytes]) -> tuple[IO[str], Callable[[], object]]:
    """A text stream over the source and how to let go of it without closing the caller's file."""
    if isinstance(path_or_file, str | Path):
        fh = open(path_or_file, encoding="utf-8-sig", newline="")  # noqa: SIM115
        return fh, fh.close
    if isinstance(path_or_file, io.TextIOBase):
        return path_or_file, lambda: None
    # A binary stream (e.g. BytesIO or an HTTP body): wrap it, and detach afterwards so the wrapper's
    # finaliser does not close the caller's stream. Text streams are all TextIOBase (handled above), so
    # what is left is bytes; typing cannot narrow IO[str] | IO[bytes] by isinstance.
    wrapper = io.TextIOWrapper(cast(IO[bytes], path_or_file), encoding="utf-8-sig", newline="")
    return wrapper, wrapper.detach


def parse_named_professions(text: str) -> list[tuple[str, str]]:
    """(profession_id, name) pairs from an "Umfasst ferner" cell.

    The cell reads "Zugeordnete Berufe (Beispiele):  43414-100 Name  43414-101 Other name"; each name
    runs until the next code. Text before the first code is the heading and dropped.
    """
    text = clean_text(text)
    matches = list(_PROFESSION_CODE.finditer(text))
    pairs: list[tuple[str, str]] = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        name = text[m.end() : end].strip()
        if name:
            pairs.append((f"{m.group(1).zfill(5)}-{m.group(2)}", name))
    return pairs


def load_kldb_catalog(path_or_file: str | Path | IO[str] | IO[bytes]) -> KldbCatalog:
    """Parse the official KldB 2010 CSV (path or open file) into occupations and named professions."""
    stream, release = _open_text(path_or_file)
    try:
        reader = csv.reader(stream, delimiter=";")
        header = next(reader, None)
        if header is None:
            raise ValueError("KldB CSV is empty")
        header = [h.lstrip("\ufeff").strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"KldB CSV lacks columns {missing}; header was {header}")
        idx = {name: header.index(name) for name in REQUIRED_COLUMNS}
        occupations: list[Occupation] = []
        professions: dict[str, NamedProfession] = {}
        domain_titles: dict[str, str] = {}
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            # A cut last line would otherwise still parse: its occupation with half its named professions.
            check_row_width(reader.line_num, len(row), len(header))
            level = int(row[idx[COL_LEVEL]])
            code = normalise_kldb(row[idx[COL_KEY]], level)
            title = clean_text(row[idx[COL_TITLE]])
            if level == 2:
                domain_titles[code] = title
            if level != 5:
                continue
            occupations.append(Occupation(code, title, clean_text(row[idx[COL_SHORT_TITLE]])))
            for pid, name in parse_named_professions(row[idx[COL_ALSO_COVERS]]):
                # Ids are unique in the 2020 edition; should a later edition repeat one, the first wins
                # so the catalog stays a function of the file.
                professions.setdefault(pid, NamedProfession.from_code(pid, name))
        return KldbCatalog(tuple(occupations), tuple(professions.values()), domain_titles)
    finally:
        release()


SEED_COLUMNS = ("profession_id", "name", "kldb", "qualification_level")


def load_seed_catalog(path: str | Path) -> list[NamedProfession]:
    """The small hand-written catalog in `data/seed_catalog.csv` (used when no KldB CSV is configured).

    Every row is validated: kldb and qualification level must agree with the profession id.
    """
    out: list[NamedProfession] = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=";")
        if tuple(reader.fieldnames or ()) != SEED_COLUMNS:
            raise ValueError(f"seed catalog header must be {';'.join(SEED_COLUMNS)}, got {reader.fieldnames}")
        for line_no, row in enumerate(reader, start=2):
            try:
                prof = NamedProfession.from_code(row["profession_id"], row["name"])
                if prof.kldb != normalise_kldb(row["kldb"]) or prof.qualification_level != int(
                    row["qualification_level"]
                ):
                    raise ValueError("kldb/qualification_level disagree with profession_id")
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from exc
            out.append(prof)
    return out


def catalog_rows(professions: Iterable[NamedProfession], source: str = "kldb") -> Iterator[dict[str, Any]]:
    """Rows for the warehouse catalog table, one per profession."""
    for p in professions:
        yield {
            "profession_id": p.profession_id,
            "name": p.name,
            "kldb": p.kldb,
            "qualification_level": p.qualification_level,
            "domain_code": p.domain_code,
            "source": source,
        }

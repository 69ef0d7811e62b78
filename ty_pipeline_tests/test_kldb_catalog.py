"""The KldB 2010 directory parser and the seed catalog, against the official CSV in data/kldb/."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import pytest

from ty_pipeline.domain.kldb_catalog import (
    KldbCatalog,
    NamedProfession,
    catalog_rows,
    clean_text,
    load_kldb_catalog,
    load_seed_catalog,
    normalise_kldb,
    parse_named_professions,
)
from ty_pipeline_tests.paths import KLDB_CSV

SEED_CSV = Path(__file__).resolve().parents[1] / "data" / "seed_catalog.csv"

HEADER = (
    "\ufeffSchlüssel KldB 2010, V. 2020;Ebene;Titel;Kurztitel;Allgemeine Bemerkungen;Einschlüsse;"
    "Umfasst ferner;Ausschlüsse;\n"
)


@pytest.fixture(scope="module")
def catalog() -> KldbCatalog:
    return load_kldb_catalog(KLDB_CSV)


def test_official_counts(catalog: KldbCatalog) -> None:
    assert catalog.occupation_count == 1301
    assert catalog.profession_count == 18838
    assert len(catalog.domain_titles) == 37
    # Distribution of the 5th digit over the occupations (docs/wire_formats.md §3.2).
    assert Counter(o.qualification_level for o in catalog.occupations) == {1: 64, 2: 420, 3: 447, 4: 370}


def test_ids_are_unique_and_well_formed(catalog: KldbCatalog) -> None:
    ids = [p.profession_id for p in catalog.professions]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"\d{5}-\d{3}", pid) for pid in ids)
    assert len({o.kldb for o in catalog.occupations}) == 1301
    assert all(re.fullmatch(r"\d{5}", o.kldb) for o in catalog.occupations)


def test_military_codes_get_their_leading_zero_back(catalog: KldbCatalog) -> None:
    military = [o.kldb for o in catalog.occupations if o.domain_code == "01"]
    assert military == ["01104", "01203", "01302", "01402"]
    officer = catalog.occupation("1104")
    assert officer is not None and officer.title == "Offiziere" and officer.qualification_level == 4
    prof = catalog.by_id()["01104-102"]
    assert (prof.name, prof.kldb, prof.domain_code, prof.qualification_level) == (
        "Offizier - Truppendienst", "01104", "01", 4,
    )


def test_named_profession_fields_are_derived_from_the_code(catalog: KldbCatalog) -> None:
    by_id = catalog.by_id()
    dev = by_id["43414-102"]
    assert (dev.name, dev.kldb, dev.qualification_level, dev.domain_code) == ("Softwareentwickler/in", "43414", 4, "43")
    helper = by_id["51311-188"]
    assert (helper.name, helper.qualification_level, helper.domain_code) == ("Lagerhelfer/in", 1, "51")
    for p in catalog.professions:
        assert p.profession_id.startswith(p.kldb)
        assert p.qualification_level == int(p.kldb[4]) and 1 <= p.qualification_level <= 4
        assert p.domain_code == p.kldb[:2]


def test_every_named_profession_belongs_to_a_listed_occupation(catalog: KldbCatalog) -> None:
    occupations = {o.kldb for o in catalog.occupations}
    assert {p.kldb for p in catalog.professions} <= occupations


def test_names_are_clean_text(catalog: KldbCatalog) -> None:
    for p in catalog.professions:
        assert p.name == p.name.strip() and "  " not in p.name and "&" not in p.name and "\u00a0" not in p.name
        assert not re.search(r"\d{5}-\d{3}", p.name), p.name


def test_occupations_are_profession_entries_too(catalog: KldbCatalog) -> None:
    entries = catalog.by_id()
    occ = entries["43414"]
    assert occ.is_occupation and not entries["43414-102"].is_occupation
    assert occ.name == "Berufe in der Softwareentwicklung – hoch komplexe Tätigkeiten"
    assert (occ.kldb, occ.qualification_level, occ.domain_code) == ("43414", 4, "43")
    # 81122 is "(weggefallen)": counted as an occupation, never offered as a profession.
    withdrawn = catalog.occupation("81122")
    assert withdrawn is not None and withdrawn.withdrawn
    assert "81122" not in entries
    assert len(catalog.entries) == 18838 + 1300


def test_einschluesse_carries_no_coded_names() -> None:
    """Documented finding: only "Umfasst ferner" lists coded professions; "Einschlüsse" is free text."""
    with open(KLDB_CSV, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    code = re.compile(r"\d{5}-\d{3}")
    assert sum(len(code.findall(r["Einschlüsse"])) for r in rows) == 0
    assert sum(len(code.findall(r["Umfasst ferner"])) for r in rows) == 18838


def _csv_text(rows: list[list[str]]) -> str:
    """A file in the official layout; cells holding ";" (every "&nbsp;") are quoted, as in the real CSV."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    for row in rows:
        writer.writerow([*row, *[""] * (8 - len(row)), ""])
    return HEADER + out.getvalue()


def test_entities_whitespace_and_short_keys_in_a_small_file() -> None:
    text = _csv_text([
        ["1", "2", "Angehörige der Streitkräfte", "Streitkräfte"],
        ["1104", "5", "Offiziere", "Offiziere", "", "z.&nbsp;B. 99999-999 (free text, not a profession)",
         "Zugeordnete Berufe (Beispiele):  1104-100 Offizier\u00a0 - Truppendienst  01104-101 Stabs&amp;offizier"],
        ["43", "2", "Informatik", "Informatik"],
        ["43414", "5", "Berufe in der Softwareentwicklung &ndash; Experte", "Softwareentwicklung", "", "",
         "Zugeordnete Berufe (Beispiele):  43414-102 Software\tentwickler/in   43414-103 Data &amp; AI Engineer"],
    ])
    cat = load_kldb_catalog(io.StringIO(text))
    assert [o.kldb for o in cat.occupations] == ["01104", "43414"]
    assert cat.occupations[1].title == "Berufe in der Softwareentwicklung – Experte"
    names = {p.profession_id: p.name for p in cat.professions}
    assert names == {
        "01104-100": "Offizier - Truppendienst",
        "01104-101": "Stabs&offizier",
        "43414-102": "Software entwickler/in",
        "43414-103": "Data & AI Engineer",
    }
    assert cat.domain_titles == {"01": "Angehörige der Streitkräfte", "43": "Informatik"}


def test_control_characters_in_a_catalog_file_are_not_kept() -> None:
    """A NUL would fail the whole catalog replace on PostgreSQL (TY_KLDB_CSV may point at any file)."""
    text = _csv_text([
        ["43", "2", "Informatik\x00", "Informatik"],
        ["43414", "5", "Berufe in der \x01Softwareentwicklung", "Softwareentwicklung\x7f", "", "",
         "Zugeordnete Berufe (Beispiele):  43414-102 Software\x00entwickler/in\x1b   43414-103 Data &amp;#0; AI"],
    ])
    cat = load_kldb_catalog(io.StringIO(text))
    assert {p.profession_id: p.name for p in cat.professions} == {
        "43414-102": "Softwareentwickler/in", "43414-103": "Data \ufffd AI"}
    assert (cat.occupations[0].title, cat.occupations[0].short_title) == (
        "Berufe in der Softwareentwicklung", "Softwareentwicklung")
    assert cat.domain_titles == {"43": "Informatik"}


def test_binary_stream_is_accepted_and_left_open() -> None:
    raw = io.BytesIO(
        (HEADER + "43414;5;Softwareentwicklung;SW;;;Zugeordnete Berufe (Beispiele):  43414-102 Entwickler/in;;\n")
        .encode("utf-8")
    )
    cat = load_kldb_catalog(raw)
    assert [p.profession_id for p in cat.professions] == ["43414-102"]
    assert not raw.closed


def test_missing_columns_are_reported() -> None:
    with pytest.raises(ValueError, match="Umfasst ferner"):
        load_kldb_catalog(io.StringIO("Schlüssel KldB 2010, V. 2020;Ebene;Titel;Kurztitel\n43414;5;x;y\n"))


def test_helpers() -> None:
    assert clean_text(" a&amp;b&nbsp;\u00a0c\t d ") == "a&b c d"
    assert normalise_kldb("1104") == "01104"
    assert normalise_kldb("B 43414") == "43414"
    assert normalise_kldb("11", 3) == "011"
    with pytest.raises(ValueError):
        normalise_kldb("43A14")
    assert parse_named_professions("Zugeordnete Berufe (Beispiele):  43414-100 A  43414-101 B/in (C)") == [
        ("43414-100", "A"), ("43414-101", "B/in (C)"),
    ]
    assert parse_named_professions("") == []


def test_inconsistent_profession_is_rejected() -> None:
    with pytest.raises(ValueError):
        NamedProfession("43414-102", "X", "43413", 3, "43")
    with pytest.raises(ValueError):
        NamedProfession("43414-102", "X", "43414", 3, "43")
    with pytest.raises(ValueError):
        NamedProfession("43414-102", "X", "43414", 4, "44")
    with pytest.raises(ValueError):
        NamedProfession.from_code("43410-100", "QL 0 does not exist")
    assert NamedProfession.from_code("1104-100", "Offizier").profession_id == "01104-100"


def test_catalog_rows(catalog: KldbCatalog) -> None:
    rows = list(catalog_rows(catalog.professions[:2]))
    assert rows[0] == {
        "profession_id": "01104-101",
        "name": "Offizier - Militärfachlicher Dienst",
        "kldb": "01104",
        "qualification_level": 4,
        "domain_code": "01",
        "source": "kldb",
    }
    assert len(rows) == 2
    assert {r["source"] for r in catalog_rows(catalog.occupation_entries[:3], source="seed")} == {"seed"}


# --------------------------------------------------------------------------------------------------
# Seed catalog
# --------------------------------------------------------------------------------------------------


def test_seed_catalog_matches_the_official_directory(catalog: KldbCatalog) -> None:
    seed = load_seed_catalog(SEED_CSV)
    assert 100 <= len(seed) <= 200
    assert len({p.profession_id for p in seed}) == len(seed)
    occupation_codes = {o.kldb for o in catalog.occupations if not o.withdrawn}
    official = catalog.by_id()
    for p in seed:
        assert p.kldb in occupation_codes, p
        # The id is a named profession of "Umfasst ferner" or an occupation's own code, with its name.
        assert p.profession_id in official, p
        assert official[p.profession_id].name == p.name, p
    assert len({p.domain_code for p in seed}) >= 15
    assert {p.qualification_level for p in seed} == {1, 2, 3, 4}
    assert any(p.is_occupation for p in seed)
    assert any(p.kldb.startswith("0") for p in seed)  # leading zero survives the CSV round trip


def test_seed_catalog_rejects_bad_rows(tmp_path: Path) -> None:
    bad = tmp_path / "seed.csv"
    bad.write_text("profession_id;name;kldb;qualification_level\n43414-102;Softwareentwickler/in;43414;3\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match=":2:"):
        load_seed_catalog(bad)
    bad.write_text("id;name\n43414-102;X\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        load_seed_catalog(bad)

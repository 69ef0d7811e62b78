"""A fresh clone is all a maintainer gets: nothing may point outside the repository, every document a
comment cites must exist with the cited section, and the data the product reads must be tracked and ship
inside the package."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from ty_pipeline import data_files
from ty_pipeline.warehouse.migrations import head_revision
from ty_pipeline_tests.conftest import IN_CI
from ty_pipeline_tests.paths import REPO_ROOT

# Written in two parts so this file does not match itself.
OUTSIDE_REFERENCES = re.compile(r"\.\./" + r"shared\b|/work/" + r"shared\b")

SECTION = r"§\s?[A-Z]?\d+(?:\.\d+)*"
# "docs/wire_formats.md §1.1, §1.8", "§1.4/§1.5", "§1.4-1.6", "§3.2, §10.3": a citation and its run of sections.
CITATION = re.compile(
    r"docs/(?P<doc>[a-z_]+)\.md`?(?P<sections>(?:\s*" + SECTION + r"(?:\s*(?:,|/|-|–|and)\s*§?\s?[A-Z]?\d+(?:\.\d+)*)*)?)"
)
SECTION_NUMBER = re.compile(r"[A-Z]?\d+(?:\.\d+)*")
HEADING = re.compile(r"^#{1,6}\s+§?\s?(?P<number>[A-Z]?\d+(?:\.\d+)*)\.?(?:\s|$)")


def tracked_files() -> list[str]:
    """Files git tracks here (a fresh clone holds exactly these)."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        message = f"not a git checkout, cannot list tracked files: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return [name for name in done.stdout.decode("utf-8").split("\0") if name]


def tracked_texts() -> dict[str, str]:
    """Every tracked file that decodes as UTF-8 text, by its path in the repository."""
    texts: dict[str, str] = {}
    for name in tracked_files():
        path = REPO_ROOT / name
        if not path.is_file():  # deleted in the working tree but still in the index
            continue
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def citations(text: str) -> list[tuple[str, list[str]]]:
    """(document, [sections]) for every `docs/X.md §N` citation in `text`."""
    found = []
    for match in CITATION.finditer(text):
        found.append((match["doc"], SECTION_NUMBER.findall(match["sections"])))
    return found


def headings(doc: Path) -> set[str]:
    numbers = set()
    for line in doc.read_text(encoding="utf-8").splitlines():
        match = HEADING.match(line)
        if match:
            numbers.add(match["number"])
    return numbers


def test_the_citation_parser_reads_runs_and_ranges() -> None:
    """The parser below is what the citation test trusts; pin the forms the code base uses."""
    text = (
        "see docs/wire_formats.md §1.1, §1.8 and docs/wire_formats.md §1.4/§1.5; docs/wire_formats.md §1.4-1.6; "
        "docs/domain_rules.md §3.2, §10.3). Also `docs/contract.md` and docs/dagster_pitfalls.md §C3: 2 x"
    )
    assert citations(text) == [
        ("wire_formats", ["1.1", "1.8"]),
        ("wire_formats", ["1.4", "1.5"]),
        ("wire_formats", ["1.4", "1.6"]),
        ("domain_rules", ["3.2", "10.3"]),
        ("contract", []),
        ("dagster_pitfalls", ["C3"]),
    ]
    assert HEADING.match("### 1.1 Status")["number"] == "1.1"  # type: ignore[index]
    assert HEADING.match("## 10. Incidents")["number"] == "10"  # type: ignore[index]
    assert HEADING.match("## C1. Dynamic partitions")["number"] == "C1"  # type: ignore[index]
    assert HEADING.match("## §6.3 Three tiers")["number"] == "6.3"  # type: ignore[index]


def test_no_tracked_file_points_outside_the_repository() -> None:
    offenders = [
        f"{name}:{n}: {line.strip()}"
        for name, text in tracked_texts().items()
        for n, line in enumerate(text.splitlines(), start=1)
        if OUTSIDE_REFERENCES.search(line)
    ]
    assert not offenders, "\n".join(offenders)


def test_every_cited_document_and_section_exists() -> None:
    cited: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for name, text in tracked_texts().items():
        for doc, sections in citations(text):
            cited.setdefault(doc, set()).update(sections)
            where.setdefault((doc, ""), name)
            for section in sections:
                where.setdefault((doc, section), name)
    assert {"wire_formats", "domain_rules", "contract", "dagster_pitfalls"} <= cited.keys()
    missing = []
    for doc, sections in sorted(cited.items()):
        path = REPO_ROOT / "docs" / f"{doc}.md"
        if not path.is_file():
            missing.append(f"docs/{doc}.md (cited in {where[(doc, '')]})")
            continue
        present = headings(path)
        missing += [f"docs/{doc}.md §{s} (cited in {where[(doc, s)]})" for s in sorted(sections - present)]
    assert not missing, "cited but not a heading:\n" + "\n".join(missing)


def test_every_data_file_the_product_reads_is_tracked_and_exists() -> None:
    tracked = set(tracked_files())
    for name in data_files.RUNTIME_FILES:
        assert data_files.data_file(name).is_file(), name
        assert f"data/{name}" in tracked, f"data/{name} is read at run time but not tracked by git"
    # Each shipped data set carries its provenance note.
    assert {"data/kldb/PROVENANCE.md", "data/sample/README.md", "ty_pipeline_tests/fixtures/PROVENANCE.md"} <= tracked


def test_the_package_ships_the_data_files_it_reads(tmp_path: Path) -> None:
    """Build the package the way an installer does and look for the data inside it, found from there."""
    build = tmp_path / "build"
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in data_files.RUNTIME_FILES:
        shipped = build / "ty_pipeline" / "data" / name
        assert shipped.is_file(), f"setup.py does not ship data/{name}"
        assert shipped.read_bytes() == data_files.data_file(name).read_bytes(), name
    # Package data matches the files: every tracked non-Python file of the package and of data/ ships,
    # and nothing else does (no stray pattern, no local warehouse file).
    tracked = tracked_files()
    expected = {f"ty_pipeline/{n[len('ty_pipeline/'):]}" for n in tracked
                if n.startswith("ty_pipeline/") and not n.endswith(".py")}
    expected |= {f"ty_pipeline/data/{n[len('data/'):]}" for n in tracked if n.startswith("data/")}
    shipped = {p.relative_to(build).as_posix() for p in build.rglob("*") if p.is_file() and p.suffix != ".py"}
    assert shipped == expected
    assert any(name.startswith("ty_pipeline/prompts/") for name in shipped)
    # The warehouse migrations run from the installed package (no alembic.ini there): every revision ships.
    migrations = build / "ty_pipeline" / "warehouse" / "migrations"
    assert ScriptDirectory(str(migrations)).get_current_head() == head_revision()
    assert (migrations / "env.py").is_file()

    # Installed (no checkout around it), the locator finds the copy inside the package.
    installed = runpy.run_path(str(build / "ty_pipeline" / "data_files.py"))
    assert installed["data_dir"]() == build / "ty_pipeline" / "data"
    assert installed["kldb_csv"]().is_file() and installed["sample_dir"]().is_dir()
    # From the checkout (editable install or PYTHONPATH) it is the repository's data/.
    assert data_files.data_dir() == REPO_ROOT / "data"

"""Where the test data lives: everything ships inside this repository (see fixtures/PROVENANCE.md)."""

import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
# The official KldB 2010 directory (data/kldb/PROVENANCE.md).
KLDB_CSV = REPO_ROOT / "data" / "kldb" / "KldB_2010_V2020_Gliederung_mit_Erlaeuterung.csv"


def summary_grading_cases() -> list[dict[str, Any]]:
    """The graded real summaries (`expected_verdict` PASS or FAIL, with the reason) of
    fixtures/summary_grading_cases.json."""
    cases: list[dict[str, Any]] = json.loads(
        (FIXTURES_DIR / "summary_grading_cases.json").read_text(encoding="utf-8"))["test_cases"]
    return cases

"""Where the test data lives: everything ships inside this repository (see fixtures/PROVENANCE.md)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
# The official KldB 2010 directory (data/kldb/PROVENANCE.md).
KLDB_CSV = REPO_ROOT / "data" / "kldb" / "KldB_2010_V2020_Gliederung_mit_Erlaeuterung.csv"

"""The layering (README "Layout"): what runs outside Dagster really imports no Dagster, and the
import-linter contracts in pyproject.toml hold (issue #10 item 2).

Each import runs in a fresh interpreter: in this test process Dagster is long loaded by other tests,
so `sys.modules` here would say nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ty_pipeline_tests.paths import REPO_ROOT

# Imports the module and, for a package, every module inside it, then lists the Dagster modules loaded.
PROBE = """
import importlib, json, pkgutil, sys
root = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(getattr(root, "__path__", []), root.__name__ + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("dagster", "dagster_postgres", "dagster_webserver"))))
"""

DAGSTER_FREE = [
    "ty_pipeline.domain.titles",  # the issue's own example: a pure unit test pays no Dagster start-up
    "ty_pipeline.domain",
    "ty_pipeline.clients",
    "ty_pipeline.fetching",
    "ty_pipeline.enrichment",
    "ty_pipeline.professions",
    "ty_pipeline.warehouse",
    "ty_pipeline.prompts",
    "ty_pipeline.cli",  # `ty-pipeline status` starts without building the Definitions
]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    # This checkout first on the path, so the probe imports the code under test, not another install.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("module", DAGSTER_FREE)
def test_module_imports_no_dagster(module: str) -> None:
    result = _run([sys.executable, "-c", PROBE, module])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], f"{module} loads Dagster"


STATUS_PROBE = """
import json, sys
from ty_pipeline import cli
cli.main(["status", "--warehouse-url", sys.argv[1]])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("dagster", "dagster_postgres", "dagster_webserver"))))
"""


def test_the_status_command_runs_without_loading_dagster(tmp_path: Path) -> None:
    """A cold `ty-pipeline status` (issue #13: <= 1 s) checks the environment too; that check must not
    pull the Dagster resources in (it did, for the source names and the retry settings: ~0.4 s)."""
    env_without_dagster_home = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    result = subprocess.run(
        [sys.executable, "-c", STATUS_PROBE, f"sqlite:///{tmp_path / 'missing.sqlite'}"], cwd=REPO_ROOT,
        env={**env_without_dagster_home, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert "LLM hosts" in result.stdout
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], "ty-pipeline status loads Dagster"


def test_probe_sees_dagster_where_it_is_loaded() -> None:
    """The probe itself can fail: the resources are Dagster's and must show up."""
    result = _run([sys.executable, "-c", PROBE, "ty_pipeline.resources"])
    assert result.returncode == 0, result.stderr
    assert "dagster" in json.loads(result.stdout.strip().splitlines()[-1])


def test_import_contracts_hold() -> None:
    """Layers, no Dagster below the resources, no import cycles: `lint-imports` (also in `make lint`)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = _run([str(lint_imports), "--no-cache"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout

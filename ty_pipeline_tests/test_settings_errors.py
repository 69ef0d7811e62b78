"""Defect 14 of issue 9: a wrong setting gives one line naming the variable, the redacted value and
what is expected, in the CLI (subprocess, as an operator runs it) and when Dagster loads the code location."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from ty_pipeline.settings_check import check_environment

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TY_")}
    clean.update(PYTHONPATH=str(ROOT), DAGSTER_HOME=str(tmp_path), **env)
    return subprocess.run(args, capture_output=True, text=True, env=clean, cwd=tmp_path, timeout=300)


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def test_cli_garbage_warehouse_url_is_one_line(tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "ty_pipeline.cli", "status"], tmp_path, TY_WAREHOUSE_URL="not a url")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "ty-pipeline status: TY_WAREHOUSE_URL='not a url' is not valid: expected an SQLAlchemy URL such as "
        "sqlite:////path/warehouse.sqlite or postgresql://user@host:5432/db"
    ]


def test_cli_unreachable_warehouse_is_one_redacted_line(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://postgres:hunter2@127.0.0.1:{port}/test"
    done = run([sys.executable, "-m", "ty_pipeline.cli", "status"], tmp_path, TY_WAREHOUSE_URL=url)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"ty-pipeline status: cannot read the warehouse at postgresql://127.0.0.1:{port}: "
                           "OperationalError: ")
    assert "hunter2" not in done.stderr + done.stdout


def test_cli_names_an_unknown_source_in_one_line_and_still_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.sqlite'}"
    done = run([sys.executable, "-m", "ty_pipeline.cli", "status"], tmp_path, TY_WAREHOUSE_URL=url,
               TY_SOURCES="arbeitsagentur,stepstone")
    assert done.returncode == 0, done.stderr
    assert ("ty-pipeline status: warning: TY_SOURCES='arbeitsagentur,stepstone' is not valid: expected a comma "
            "list of arbeitsagentur, deutsche_bank, sample") in done.stderr.splitlines()


def test_dagster_load_names_every_bad_setting_in_one_line(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    done = run([str(dagster), "definitions", "validate", "-m", "ty_pipeline"], tmp_path,
               TY_SOURCES="jobboerse", TY_WAREHOUSE_URL="mysql://root:topsecret@db:3306/x")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert ("SettingsInvalid: TY_WAREHOUSE_URL='mysql://db:3306' is not valid: expected an SQLAlchemy URL such as "
            "sqlite:////path/warehouse.sqlite or postgresql://user@host:5432/db; TY_SOURCES='jobboerse' is not "
            "valid: expected a comma list of arbeitsagentur, deutsche_bank, sample") in output
    assert "topsecret" not in output


def test_every_checked_setting_names_itself() -> None:
    bad = {
        "TY_LLM_SOURCES": "everything", "TY_LLM_MAX_POSTINGS": "many", "TY_LLM_MIN_COMPLETE": "2",
        "TY_EMBED_BACKEND": "openai", "TY_AA_BASE_URL": "rest.arbeitsagentur.de", "TY_DB_BASE_URL": "ftp://x",
        "TY_BERUFENET_API_URL": "https://", "TY_STEP_RETRY_DELAY_S": "-1", "TY_STEP_MAX_RETRIES": "1.5",
        "TY_LLM_HOSTS": "http://gpu1:8000=zero", "OLLAMA_HOST": "ftp://gpu1", "TY_LLM_BACKEND": "vllm",
        "TY_SOURCES": "jobboerse", "TY_WAREHOUSE_URL": "mysql://db/x", "TY_EMBED_CACHE_DIR": "relative/dir",
    }
    problems = check_environment(bad)
    assert sorted(p.name for p in problems) == sorted(bad)
    assert all(str(p).startswith(f"{p.name}=") and "\n" not in str(p) for p in problems)
    assert check_environment({"TY_SOURCES": "sample", "TY_WAREHOUSE_URL": "postgresql://u:p@h/db",
                              "TY_LLM_MIN_COMPLETE": "90%", "TY_STEP_MAX_RETRIES": "0"}) == []


def test_cli_reports_with_the_default_llm_scope_when_ty_llm_sources_is_bad(tmp_path: Path) -> None:
    """The status reads `TY_LLM_SOURCES` with the pipeline's own parser; a bad value is one warning line,
    and the report counts the default scope instead of failing."""
    url = f"sqlite:///{tmp_path / 'none.sqlite'}"
    done = run([sys.executable, "-m", "ty_pipeline.cli", "status", "--json"], tmp_path, TY_WAREHOUSE_URL=url,
               TY_LLM_SOURCES="deutsche_bank,stepstone")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == ("ty-pipeline status: warning: TY_LLM_SOURCES='deutsche_bank,stepstone' is "
                                           "not valid: expected a comma list of arbeitsagentur, deutsche_bank")
    assert json.loads(done.stdout)["llm_sources"] == ["deutsche_bank"]

"""The code location loads and exposes the contract's public names."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from ty_pipeline import defs
from ty_pipeline.automation.executor import PRELOADED_MODULES, step_executor


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)


def test_built_assets_use_contract_names_and_daily_partitions() -> None:
    contract = {"postings", "job_descriptions", "posting_summaries", "skill_keywords", "ihl_scores",
                "berufenet_mappings", "posting_embeddings", "demand_snapshots", "berufenet_catalog"}
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    # Every contract asset, plus the two the professions issue adds beside them.
    assert set(specs) == contract | {"profession_similarity", "berufenet_title_retry"}
    retry = specs["berufenet_title_retry"].partitions_def
    assert isinstance(retry, dg.DynamicPartitionsDefinition) and retry.name == "berufenet_failed_titles"
    for name, spec in specs.items():
        if name != "berufenet_catalog" and name in contract:
            assert isinstance(spec.partitions_def, dg.DailyPartitionsDefinition), name
            assert spec.partitions_def.timezone == "Europe/Berlin"


def test_every_job_forks_its_steps_from_a_preloaded_fork_server() -> None:
    """Steps start from a fork server that imported the pipeline once (automation/executor.py), not from
    a fresh `spawn` interpreter each: the browser test's night went from 204 s to 62 s with it."""
    jobs = [defs.resolve_implicit_global_asset_job_def(), *(defs.resolve_job_def(j.name) for j in defs.jobs or [])]
    assert len(jobs) >= 3
    for job in jobs:
        assert job.executor_def is step_executor, job.name
    config = step_executor.apply_config_mapping({}).value["config"]  # what `configured` fixed
    assert config["start_method"] == {"forkserver": {"preload_modules": PRELOADED_MODULES}}


def test_the_fork_server_preload_is_safe_to_fork() -> None:
    """What the fork server imports must leave nothing a forked step could inherit half-used: no thread,
    no database connection, no native runtime that starts thread pools (torch, ONNX Runtime, tokenizers
    are imported inside the steps that embed)."""
    probe = (
        "import sys, threading, importlib\n"
        f"for name in {PRELOADED_MODULES!r}: importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime', 'tokenizers', 'sentence_transformers', 'psycopg2')"
        " if m in sys.modules)\n"
        "print(threading.active_count(), heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "1 []", out.stdout + out.stderr

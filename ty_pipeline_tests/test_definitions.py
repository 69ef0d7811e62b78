"""The code location loads and exposes the contract's public names."""

from __future__ import annotations

import dagster as dg

from ty_pipeline import defs


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

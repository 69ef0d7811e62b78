"""`llm_enrichment`: one step that computes `posting_summaries`, `skill_keywords` and `ihl_scores`.

Why one step for three assets: the GPU hosts run a fixed number of calls at once (their slots). Three
separate steps ran one after the other behind the `ollama` pool and each kept only a few postings in
flight, so slots idled while postings waited. Here every selected asset is a lane of one run over one
client: the client's slot budget per host decides how many calls run, and the tasks of all lanes fill
it (README "LLM throughput"). The assets keep their names, tables, checks and metadata; selecting one
of them (UI, job, `--select skill_keywords`) runs only that lane (`can_subset`).
"""

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import dagster as dg

from ty_pipeline.assets.ihl import ASSET as IHL
from ty_pipeline.assets.ihl import DESCRIPTION as IHL_DESCRIPTION
from ty_pipeline.assets.ihl import IhlConfig, ihl_pipeline
from ty_pipeline.assets.llm_common import (
    LlmRunConfig,
    check_results,
    check_specs,
    lane_failure,
    llm_metadata,
    run_settings,
)
from ty_pipeline.assets.skills import ASSET as SKILLS
from ty_pipeline.assets.skills import DESCRIPTION as SKILLS_DESCRIPTION
from ty_pipeline.assets.skills import SkillsConfig, skill_pipeline
from ty_pipeline.assets.summaries import ASSET as SUMMARIES
from ty_pipeline.assets.summaries import DESCRIPTION as SUMMARIES_DESCRIPTION
from ty_pipeline.assets.summaries import SummariesConfig, summary_metadata, summary_pipeline
from ty_pipeline.clients.ollama import OllamaError, OllamaModelMissing, OllamaUnavailable
from ty_pipeline.domain.clock import utcnow_aware
from ty_pipeline.domain.llm_capacity import (
    FALLBACK_CAP,
    RunThroughput,
    capacity_cap,
    eta,
    host_rates,
    hours_left,
    posting_equivalents,
    total_rate,
)
from ty_pipeline.domain.pool_names import OLLAMA_POOL
from ty_pipeline.enrichment.partition_run import (
    Lane,
    LlmPipeline,
    PartitionRun,
    client_slots,
    enrich_partition,
    tasks_in_flight,
)
from ty_pipeline.enrichment.throughput import run_throughput
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_multi_asset
from ty_pipeline.warehouse.llm_results_store import saved_statuses
from ty_pipeline.warehouse.llm_throughput_store import recent_runs, record_run
from ty_pipeline.warehouse.schema import ihl_scores as ihl_table
from ty_pipeline.warehouse.schema import posting_summaries as summaries_table
from ty_pipeline.warehouse.schema import skill_keywords as skills_table

LANES = (SUMMARIES, SKILLS, IHL)
TABLES = {SUMMARIES: summaries_table, SKILLS: skills_table, IHL: ihl_table}


class LlmEnrichmentConfig(LlmRunConfig):
    """Run config of the step: shared settings at the top, each asset's own under its key."""

    summaries: SummariesConfig = SummariesConfig()
    skills: SkillsConfig = SkillsConfig()
    ihl: IhlConfig = IhlConfig()


def _spec(name: str, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        name,
        description=description,
        group_name="llm",
        kinds={"python", "sql", "ollama"},
        deps=["job_descriptions"],
        partitions_def=daily_partitions,
    )


SPECS = [
    _spec(SUMMARIES, SUMMARIES_DESCRIPTION),
    _spec(SKILLS, SKILLS_DESCRIPTION),
    _spec(IHL, IHL_DESCRIPTION),
]


def cap_origin(config: LlmEnrichmentConfig, scope: LlmScopeResource, rate: float | None, now: datetime) -> str:
    """Where the run's cap comes from, in words for the log and the metadata."""
    if config.max_postings is not None:
        return "run config max_postings"
    if not scope.cap_is_measured:
        return "TY_LLM_MAX_POSTINGS"
    if rate is None:
        return f"no measured run yet: the first-night default of {FALLBACK_CAP}"
    return f"measured {rate:.0f} postings/h x {hours_left(now):.1f} h until 06:00 Berlin"


def fleet_metadata(
    throughput: RunThroughput, recent: list[RunThroughput], runs: dict[str, PartitionRun], now: datetime, *,
    cap: int | None, cap_source: str,
) -> dict[str, Any]:
    """What every lane's materialization says about the hosts: this run's rate per host, the recent
    rate, and when the partition's pending postings would be done against the 06:00 deadline."""
    rows = ["| host | slots | calls | busy slot-s | saturation | postings/h (recent runs) |", "|---|---|---|---|---|---|"]
    recent_rates = {r.host: r.postings_per_hour for r in host_rates([throughput, *recent])}
    for h in throughput.hosts:
        saturation = h.busy_s / (h.slots * throughput.wall_s) if throughput.wall_s > 0 and h.slots else 0.0
        rows.append(f"| {h.host} | {h.slots} | {h.calls} | {h.busy_s:.0f} | {saturation:.2f} | "
                    f"{recent_rates.get(h.host, 0.0):.0f} |")
    pending = posting_equivalents({name: run.pending for name, run in runs.items()})
    rate = total_rate([throughput, *recent])
    this_rate = throughput.postings / (throughput.wall_s / 3600) if throughput.wall_s > 0 else 0.0
    return {
        "llm_hosts": dg.MetadataValue.md("\n".join(rows)),
        "postings_per_hour": round(this_rate, 1),
        "postings_per_hour_recent": round(rate, 1) if rate else 0.0,
        "llm_cap": cap if cap is not None else 0,
        "llm_cap_source": cap_source,
        "pending_eta": eta(round(pending), rate, now).text(),
    }


def build_lanes(config: LlmEnrichmentConfig, client: Any, selected: set[str]) -> list[Lane]:
    builders: dict[str, Callable[[], LlmPipeline]] = {
        SUMMARIES: lambda: summary_pipeline(config.summaries, client, num_ctx=config.num_ctx),
        SKILLS: lambda: skill_pipeline(config.skills, client, num_ctx=config.num_ctx),
        IHL: lambda: ihl_pipeline(config.ihl, client, num_ctx=config.num_ctx),
    }
    return [Lane(name, TABLES[name], builders[name]()) for name in LANES if name in selected]


@retried_multi_asset(
    name="llm_enrichment",
    specs=SPECS,
    check_specs=[spec for name in LANES for spec in check_specs(name)],
    can_subset=True,
    # The pool guards the LLM hosts across runs: one enrichment step (or BERUFENET/embedding step on
    # the GPU) at a time drives them; inside the step the client's slot budget spreads the calls.
    pool=OLLAMA_POOL,
)
def llm_enrichment(
    context: dg.AssetExecutionContext,
    config: LlmEnrichmentConfig,
    warehouse: WarehouseResource,
    ollama: OllamaResource,
    llm_scope: LlmScopeResource,
) -> Iterator[dg.MaterializeResult]:
    day = partition_date(context)
    selected = {key.path[-1] for key in context.selected_asset_keys}
    try:
        sources = llm_scope.source_list()
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    engine = warehouse.get_engine()
    now = utcnow_aware()
    recent = recent_runs(engine)
    rate = total_rate(recent)
    cap_source = cap_origin(config, llm_scope, rate, now)
    client = ollama.get_client()  # one pooled client, shared by the preflight and every worker
    lanes = build_lanes(config, client, selected)
    settings = run_settings(config, llm_scope, measured_cap=capacity_cap(rate, now))
    context.log.info(f"llm_enrichment {day}: sources {', '.join(sources)}; cap {settings.max_postings or 'none'} "
                     f"({cap_source})")
    try:
        runs = enrich_partition(
            engine=engine, lanes=lanes, day=day, sources=sources, client=client, settings=settings,
            log=context.log.info, what="llm_enrichment",
        )
    except (OllamaUnavailable, OllamaModelMissing) as exc:
        # Before any posting: nothing was written, and retrying the step cannot install a model.
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except OllamaError as exc:  # the preflight met a busy or failing server
        raise dg.Failure(description=f"LLM preflight failed: {exc}") from exc
    finally:
        client.close()

    workers, slots = tasks_in_flight(settings, client), client_slots(client)
    throughput = run_throughput(client, runs)
    record_run(engine, run_id=context.run.run_id, day=day, run=throughput)
    fleet = fleet_metadata(throughput, recent, runs, now, cap=settings.max_postings, cap_source=cap_source)
    problems: list[tuple[str, bool, dict[str, Any]]] = []
    for lane in lanes:
        run = runs[lane.name]
        rows = saved_statuses(engine, lane.table, day)
        metadata = llm_metadata(run, lane.pipeline, sources, rows, config, workers=workers, slots=slots)
        metadata.update(fleet)
        if lane.name == SUMMARIES:
            metadata.update(summary_metadata(config.summaries))
        for message in run.report.failures[:10]:
            context.log.warning(f"{lane.name}: {message}")
        for message in run.report.server_errors[:10]:
            context.log.warning(f"server failure, posting left pending (no attempt charged): {message}")
        problem = lane_failure(lane.name, day, run)
        if problem is not None:
            problems.append((*problem, metadata))
            continue
        context.log.info(
            f"{lane.name} {day}: {run.report.saved} computed ({dict(run.report.statuses)}), {run.plan.cached} "
            f"cached, {len(run.plan.skipped)} without description, {run.pending} pending; {run.stats.calls} LLM calls"
        )
        yield dg.MaterializeResult(
            asset_key=lane.name, metadata=metadata, check_results=check_results(lane.name, run, rows, engine)
        )
    if problems:
        # The lanes that succeeded are materialized above; the step fails for the others.
        raise dg.Failure(
            description=" | ".join(description for description, _retry, _meta in problems),
            metadata=problems[0][2],
            allow_retries=all(retry for _description, retry, _meta in problems),
        )

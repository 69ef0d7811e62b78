"""The `skill_keywords` asset: one JSON-schema call per posting, normalised skill lists."""


import dagster as dg

from ty_pipeline.assets.llm_common import LlmRunConfig, llm_asset, materialize_llm_asset
from ty_pipeline.enrichment.llm_call import ModelOptions
from ty_pipeline.enrichment.skills import DEFAULT_SKILLS_MODEL, SkillPipeline, SkillSettings
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.schema import skill_keywords as skills_table


class SkillsConfig(LlmRunConfig):
    model: str = DEFAULT_SKILLS_MODEL
    num_predict: int = 768


def skill_pipeline(config: SkillsConfig, client: object) -> SkillPipeline:
    options = ModelOptions(num_ctx=config.num_ctx, num_predict=config.num_predict)
    return SkillPipeline(client, SkillSettings(model=config.model, options=options))


@llm_asset(
    "skill_keywords",
    (
        "Skill keywords per posting (scope: `llm_scope`): one JSON-schema call, names cleaned and de-duplicated "
        "in code (best importance first). `skills_json` is a JSON array of distinct strings, set only on "
        "success; `skill_keyword_items` holds each skill with its importance and rank. An empty list is a "
        "failure, never a result."
    ),
)
def skill_keywords(
    context: dg.AssetExecutionContext,
    config: SkillsConfig,
    warehouse: WarehouseResource,
    ollama: OllamaResource,
    llm_scope: LlmScopeResource,
) -> dg.MaterializeResult:
    return materialize_llm_asset(
        context, asset="skill_keywords", table=skills_table,
        build_pipeline=lambda client: skill_pipeline(config, client), config=config,
        warehouse=warehouse, ollama=ollama, llm_scope=llm_scope,
    )

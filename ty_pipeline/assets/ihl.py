"""The `ihl_scores` asset: Internal Hire Likelihood from analyst, skeptic and HR expert."""


import dagster as dg

from ty_pipeline.assets.llm_common import LlmRunConfig, llm_asset, materialize_llm_asset
from ty_pipeline.enrichment.ihl import DEFAULT_IHL_MODEL, IhlPipeline, IhlSettings
from ty_pipeline.enrichment.llm_call import ModelOptions
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.schema import ihl_scores as ihl_table


class IhlConfig(LlmRunConfig):
    analyst_model: str = DEFAULT_IHL_MODEL
    skeptic_model: str = DEFAULT_IHL_MODEL
    hr_expert_model: str = DEFAULT_IHL_MODEL


def ihl_pipeline(config: IhlConfig, client: object) -> IhlPipeline:
    options = ModelOptions(num_ctx=config.num_ctx, num_predict=config.num_predict)
    return IhlPipeline(
        client,
        IhlSettings(
            analyst_model=config.analyst_model, skeptic_model=config.skeptic_model,
            hr_expert_model=config.hr_expert_model, options=options,
        ),
    )


@llm_asset(
    "ihl_scores",
    (
        "Internal Hire Likelihood per posting (scope: `llm_scope`): an analyst looks for real red flags, a "
        "skeptic argues the job is genuine (seeing the analyst), an HR expert weighs both. `ihl_score` (0-10) "
        "is the expert's; `ihl_category` follows from the score by code (0-3 GENUINE, 4-6 BORDERLINE, 7-9 "
        "COMPLIANCE_THEATER, 10 FAKE). The three role outputs are kept in `details_json`."
    ),
)
def ihl_scores(
    context: dg.AssetExecutionContext,
    config: IhlConfig,
    warehouse: WarehouseResource,
    ollama: OllamaResource,
    llm_scope: LlmScopeResource,
) -> dg.MaterializeResult:
    return materialize_llm_asset(
        context, asset="ihl_scores", table=ihl_table,
        build_pipeline=lambda client: ihl_pipeline(config, client), config=config,
        warehouse=warehouse, ollama=ollama, llm_scope=llm_scope,
    )

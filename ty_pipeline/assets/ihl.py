"""The `ihl_scores` lane of `llm_enrichment`: Internal Hire Likelihood from analyst, skeptic and HR expert."""


import dagster as dg

from ty_pipeline.enrichment.ihl import DEFAULT_IHL_MODEL, IhlPipeline, IhlSettings
from ty_pipeline.enrichment.llm_call import ModelOptions

ASSET = "ihl_scores"
DESCRIPTION = (
    "Internal Hire Likelihood per posting (scope: `llm_scope`): an analyst looks for real red flags, a "
    "skeptic argues the job is genuine (seeing the analyst), an HR expert weighs both. `ihl_score` (0-10) "
    "is the expert's; `ihl_category` follows from the score by code (0-3 GENUINE, 4-6 BORDERLINE, 7-9 "
    "COMPLIANCE_THEATER, 10 FAKE). The three role outputs are kept in `details_json`. Computed by the "
    "`llm_enrichment` step."
)


class IhlConfig(dg.Config):
    analyst_model: str = DEFAULT_IHL_MODEL
    skeptic_model: str = DEFAULT_IHL_MODEL
    hr_expert_model: str = DEFAULT_IHL_MODEL
    num_predict: int = 1024  # output token cap; an answer cut here gets one corrective retry


def ihl_pipeline(config: IhlConfig, client: object, *, num_ctx: int) -> IhlPipeline:
    options = ModelOptions(num_ctx=num_ctx, num_predict=config.num_predict)
    return IhlPipeline(
        client,
        IhlSettings(
            analyst_model=config.analyst_model, skeptic_model=config.skeptic_model,
            hr_expert_model=config.hr_expert_model, options=options,
        ),
    )

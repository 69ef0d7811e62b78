"""The `posting_summaries` lane of `llm_enrichment`: extract, grade twice in parallel, improve once,
render in code."""


import dagster as dg

from ty_pipeline.enrichment.llm_call import ModelOptions
from ty_pipeline.enrichment.summaries import (
    DEFAULT_EXTRACT_MODEL,
    DEFAULT_GRADER_MODELS,
    DEFAULT_LANGUAGE,
    SummaryPipeline,
    SummarySettings,
)

ASSET = "posting_summaries"
DESCRIPTION = (
    "Structured summaries of the partition's postings (scope: `llm_scope`, newest first, capped per run). "
    "The model extracts fields (JSON schema); two graders judge accuracy, completeness and layout against "
    "the posting at the same time; a FAIL triggers one improve step and a regrade. The text is rendered "
    "by code. `summary` is set only for `passed` / `passed_after_improve`; results are memoized by a "
    "hash of input text, prompt versions, models and language. Computed by the `llm_enrichment` step."
)


class SummariesConfig(dg.Config):
    extract_model: str = DEFAULT_EXTRACT_MODEL
    grader_models: list[str] = list(DEFAULT_GRADER_MODELS)  # run concurrently; two model families by default
    improve_model: str | None = None  # None = the extract model
    language: str = DEFAULT_LANGUAGE  # language of the summary text (postings are German or English)
    max_improve_rounds: int = 1  # improve + regrade rounds after a FAIL
    num_predict: int = 1024  # output token cap; an answer cut here gets one corrective retry


def summary_pipeline(config: SummariesConfig, client: object, *, num_ctx: int) -> SummaryPipeline:
    return SummaryPipeline(
        client,
        SummarySettings(
            extract_model=config.extract_model,
            grader_models=tuple(config.grader_models),
            improve_model=config.improve_model or config.extract_model,
            language=config.language,
            max_improve_rounds=max(0, config.max_improve_rounds),
            options=ModelOptions(num_ctx=num_ctx, num_predict=config.num_predict),
        ),
    )


def summary_metadata(config: SummariesConfig) -> dict[str, object]:
    return {"language": config.language, "max_improve_rounds": config.max_improve_rounds}

"""The `skill_keywords` lane of `llm_enrichment`: one JSON-schema call per posting, normalised skill lists."""


import dagster as dg

from ty_pipeline.enrichment.llm_call import ModelOptions
from ty_pipeline.enrichment.skills import DEFAULT_SKILLS_MODEL, SkillPipeline, SkillSettings

ASSET = "skill_keywords"
DESCRIPTION = (
    "Skill keywords per posting (scope: `llm_scope`): one JSON-schema call, names cleaned and de-duplicated "
    "in code (best importance first). `skills_json` is a JSON array of distinct strings, set only on "
    "success; `skill_keyword_items` holds each skill with its importance and rank. An empty list is a "
    "failure, never a result. Computed by the `llm_enrichment` step."
)


class SkillsConfig(dg.Config):
    model: str = DEFAULT_SKILLS_MODEL
    num_predict: int = 768  # output token cap; an answer cut here gets one corrective retry


def skill_pipeline(config: SkillsConfig, client: object, *, num_ctx: int) -> SkillPipeline:
    options = ModelOptions(num_ctx=num_ctx, num_predict=config.num_predict)
    return SkillPipeline(client, SkillSettings(model=config.model, options=options))

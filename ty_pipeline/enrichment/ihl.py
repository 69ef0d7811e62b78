"""The IHL pipeline for one posting: analyst, then skeptic (sees the analyst), then HR expert (sees both).

The stored score is the HR expert's; the category comes from the score by code (`ihl_result`), never
from the model's verdict word.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel

from ty_pipeline.domain.ihl import AnalystOutput, HRExpertOutput, RedFlag, SkepticOutput, ihl_result
from ty_pipeline.domain.llm_selection import LlmStatus, WorkItem
from ty_pipeline.enrichment.llm_call import ModelOptions, PipelineIdentity, free_text_problems, retry_message
from ty_pipeline.enrichment.runner import POSTING_ERRORS, Outcome, error_outcome
from ty_pipeline.prompts import Prompt, load_prompt

DEFAULT_IHL_MODEL = "qwen2.5:7b-instruct"


def _flag_texts(flags: list[RedFlag], label: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for i, flag in enumerate(flags, start=1):
        out += [(f"{label} {i} flag", flag.flag), (f"{label} {i} evidence", flag.evidence)]
    return out


def validate_role_output(answer: BaseModel) -> str | None:
    """Free-text fields must not loop, echo template variables or refuse; flags need evidence."""
    texts: list[tuple[str, str]] = [("reasoning", str(getattr(answer, "reasoning", "")))]
    problems: list[str] = []
    if not texts[0][1].strip():
        problems.append("reasoning: empty; explain the verdict in one or two sentences")
    if isinstance(answer, AnalystOutput | HRExpertOutput):
        texts += _flag_texts(answer.red_flags, "red_flags item")
        for i, flag in enumerate(answer.red_flags, start=1):
            # A flag can also be empty once its control characters are removed: never store it blank.
            if not flag.flag.strip():
                problems.append(f"red_flags item {i}: flag is empty; name the red flag")
            if not flag.evidence.strip():
                problems.append(f"red_flags item {i}: evidence is empty; quote the posting")
    if isinstance(answer, SkepticOutput):
        for i, c in enumerate(answer.counter_arguments, start=1):
            texts += [(f"counter_arguments item {i} counter_evidence", c.counter_evidence),
                      (f"counter_arguments item {i} severity_downgrade", c.severity_downgrade)]
    return retry_message(problems + free_text_problems(texts))


@dataclass(frozen=True)
class IhlSettings:
    analyst_model: str = DEFAULT_IHL_MODEL
    skeptic_model: str = DEFAULT_IHL_MODEL
    hr_expert_model: str = DEFAULT_IHL_MODEL
    options: ModelOptions = ModelOptions(num_predict=1024)


class IhlPipeline(PipelineIdentity):
    family = "ihl"  # prompt_version `ihl/<analyst>.<skeptic>.<hr_expert>+p<posting context>`

    def __init__(self, client: Any, settings: IhlSettings) -> None:
        self.client = client
        self.settings = settings
        self.analyst_prompt: Prompt = load_prompt("ihl_analyst")
        self.skeptic_prompt: Prompt = load_prompt("ihl_skeptic")
        self.expert_prompt: Prompt = load_prompt("ihl_hr_expert")

    @property
    def prompts(self) -> list[Prompt]:
        return [self.analyst_prompt, self.skeptic_prompt, self.expert_prompt]

    @property
    def models(self) -> list[str]:
        s = self.settings
        return [s.analyst_model, s.skeptic_model, s.hr_expert_model]

    def models_json(self) -> str:
        s = self.settings
        return json.dumps({"analyst": s.analyst_model, "skeptic": s.skeptic_model, "hr_expert": s.hr_expert_model})

    def base_values(self) -> dict[str, Any]:
        """Columns every row gets, skipped postings included."""
        return {"models": self.models_json(), "prompt_version": self.prompt_version}

    def _chat(self, model: str, prompt: Prompt, schema: type[BaseModel], **values: str) -> tuple[Any, list[Any]]:
        answer, metrics = self.client.chat_structured(
            model=model, messages=prompt.render(**values), schema=schema,
            options=self.settings.options.as_dict(), validate=validate_role_output,
        )
        return answer, list(metrics)

    def run(self, item: WorkItem) -> Outcome:
        s = self.settings
        metrics: list[Any] = []
        roles: dict[str, Any] = {}
        base = self.base_values()

        def values() -> dict[str, Any]:
            return {**base, "details_json": json.dumps(roles, ensure_ascii=False) if roles else None}

        stage = "analyst"
        try:
            analyst, m = self._chat(s.analyst_model, self.analyst_prompt, AnalystOutput, posting=item.text)
            metrics += m
            roles["analyst"] = analyst.model_dump()
            analyst_json = analyst.model_dump_json(indent=2)
            stage = "skeptic"
            skeptic, m = self._chat(s.skeptic_model, self.skeptic_prompt, SkepticOutput,
                                    posting=item.text, analyst=analyst_json)
            metrics += m
            roles["skeptic"] = skeptic.model_dump()
            stage = "hr_expert"
            expert, m = self._chat(s.hr_expert_model, self.expert_prompt, HRExpertOutput,
                                   posting=item.text, analyst=analyst_json, skeptic=skeptic.model_dump_json(indent=2))
            metrics += m
            roles["hr_expert"] = expert.model_dump()
        except POSTING_ERRORS as exc:
            return error_outcome(exc, stage=f"ihl {stage}", values=values(), metrics=metrics)
        result = ihl_result(expert)
        roles["result"] = {**asdict(result), "category": str(result.category)}
        return Outcome(
            LlmStatus.OK,
            {
                **values(),
                "ihl_score": result.score,
                "ihl_category": str(result.category),
                "ihl_verdict": result.model_verdict,
                "verdict_disagrees": result.verdict_disagrees,
                "confidence": result.confidence,
                "recommendation": result.recommendation,
                "candidate_pool_estimate": result.candidate_pool_estimate,
                "red_flags_json": json.dumps([f.model_dump() for f in expert.red_flags], ensure_ascii=False),
            },
            metrics=metrics,
        )

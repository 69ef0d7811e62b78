"""The summary pipeline for one posting: extract fields, two graders in parallel, improve and regrade.

The model only extracts `SummaryFields`; the stored text comes from `render_summary`, never from an LLM.
Two graders (by default two different model families, so one model's blind spot is not graded by
itself) judge the rendered summary against the posting at the same time. If either fails it, one improve
step rewrites the fields with both graders' reasons and both grade again (`max_improve_rounds`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

from ty_pipeline.domain.answer_text import AnswerText
from ty_pipeline.domain.concurrency import run_all
from ty_pipeline.domain.llm_hashing import input_hash
from ty_pipeline.domain.llm_selection import LlmStatus, WorkItem
from ty_pipeline.domain.summary_layout import SummaryFields, render_summary, validate_summary_fields
from ty_pipeline.enrichment.llm_call import ModelOptions, PipelineIdentity, free_text_problems, retry_message
from ty_pipeline.enrichment.runner import POSTING_ERRORS, Outcome, error_metrics, error_outcome
from ty_pipeline.prompts import Prompt, load_prompt

DEFAULT_EXTRACT_MODEL = "qwen2.5:7b-instruct"
DEFAULT_GRADER_MODELS = ("qwen2.5:7b-instruct", "llama3.1:8b")
DEFAULT_LANGUAGE = "English"
MAX_REASONS = 8


def _fail_needs_a_reason(schema: dict[str, Any]) -> None:
    """The grade schema as two variants: PASS with 0..MAX_REASONS reasons, FAIL with 1..MAX_REASONS
    non-empty ones. `validate_grade` rejects a FAIL without a reason; a grammar-constrained server
    cannot produce one when the schema says so (`anyOf` is supported by Ollama's and llama.cpp's
    schema-to-grammar converters)."""
    props = schema.pop("properties")
    for key in ("type", "required", "additionalProperties"):
        schema.pop(key, None)
    reasons = props["reasons"]
    reasons.pop("default", None)
    variants = []
    for verdict, at_least in (("PASS", 0), ("FAIL", 1)):
        items = {**reasons["items"], "minLength": 1} if at_least else reasons["items"]
        variants.append({
            "type": "object",
            "properties": {
                "verdict": {**props["verdict"], "enum": [verdict]},
                "reasons": {**reasons, "items": items, "minItems": at_least},
            },
            "required": ["verdict", "reasons"],
            "additionalProperties": False,
        })
    schema["anyOf"] = variants


class Grade(BaseModel):
    """One grader's verdict on a rendered summary."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_fail_needs_a_reason)

    verdict: Literal["PASS", "FAIL"] = Field(
        description="PASS if the summary is accurate, complete and follows the layout; otherwise FAIL."
    )
    reasons: list[AnswerText] = Field(
        default_factory=list,
        max_length=MAX_REASONS,
        description="Short sentences, each naming one concrete problem; empty for PASS.",
    )


def validate_grade(grade: BaseModel) -> str | None:
    assert isinstance(grade, Grade)
    problems: list[str] = []
    if grade.verdict == "FAIL" and not any(r.strip() for r in grade.reasons):
        problems.append("verdict FAIL without any reason: name each concrete problem")
    problems += free_text_problems(
        [(f"reason {i}", r) for i, r in enumerate(grade.reasons, start=1)], refusals=False
    )
    return retry_message(problems)


def _validate_fields(fields: BaseModel) -> str | None:
    assert isinstance(fields, SummaryFields)
    return validate_summary_fields(fields)


@dataclass(frozen=True)
class SummarySettings:
    extract_model: str = DEFAULT_EXTRACT_MODEL
    grader_models: tuple[str, ...] = DEFAULT_GRADER_MODELS
    improve_model: str = DEFAULT_EXTRACT_MODEL
    language: str = DEFAULT_LANGUAGE
    max_improve_rounds: int = 1
    options: ModelOptions = ModelOptions()

M = TypeVar("M", bound=BaseModel)


class SummaryPipeline(PipelineIdentity):
    """Stateless per posting; one instance is shared by the worker threads of a run."""

    family = "summary"  # prompt_version `summary/<extract>.<grade>.<improve>+p<posting context>`

    def __init__(self, client: Any, settings: SummarySettings) -> None:
        if not settings.grader_models:
            raise ValueError("at least one grader model is needed")
        self.client = client
        self.settings = settings
        self.extract_prompt: Prompt = load_prompt("summary_extract")
        self.grade_prompt: Prompt = load_prompt("summary_grade")
        self.improve_prompt: Prompt = load_prompt("summary_improve")

    # -- identity of the computation ------------------------------------------------------------------

    @property
    def prompts(self) -> list[Prompt]:
        return [self.extract_prompt, self.grade_prompt, self.improve_prompt]

    @property
    def models(self) -> list[str]:
        s = self.settings
        return [s.extract_model, *s.grader_models, s.improve_model]

    def models_json(self) -> str:
        s = self.settings
        return json.dumps(
            {"extract": s.extract_model, "graders": list(s.grader_models), "improve": s.improve_model},
            ensure_ascii=False,
        )

    def hash_for(self, text: str) -> str:
        # The shared hash plus the output language: a German and an English summary are different results.
        return input_hash(
            text, prompt_versions=self.prompt_versions, models=self.models, language=self.settings.language
        )

    def base_values(self) -> dict[str, Any]:
        """Columns every row gets, skipped postings included."""
        return {"models": self.models_json(), "prompt_version": self.prompt_version}

    # -- the steps -------------------------------------------------------------------------------------

    def _chat(
        self, model: str, messages: list[dict[str, str]], schema: type[M], validate: Any
    ) -> tuple[M, list[Any]]:
        obj, metrics = self.client.chat_structured(
            model=model, messages=messages, schema=schema, options=self.settings.options.as_dict(),
            validate=validate,
        )
        # chat_structured returns the answer validated into `schema`.
        return cast(M, obj), metrics

    def extract(self, posting: str) -> tuple[SummaryFields, list[Any]]:
        messages = self.extract_prompt.render(posting=posting, language=self.settings.language)
        fields, metrics = self._chat(self.settings.extract_model, messages, SummaryFields, _validate_fields)
        return fields, list(metrics)

    def improve(
        self, posting: str, fields: SummaryFields, grades: list[dict[str, Any]]
    ) -> tuple[SummaryFields, list[Any]]:
        reasons = [f"- {g['model']}: {r}" for g in grades for r in g["reasons"]]
        if not reasons:
            reasons = ["- A reviewer rejected the summary without naming a reason; check every field."]
        messages = self.improve_prompt.render(
            posting=posting,
            previous=fields.model_dump_json(indent=2),
            reasons="\n".join(reasons),
            language=self.settings.language,
        )
        improved, metrics = self._chat(self.settings.improve_model, messages, SummaryFields, _validate_fields)
        return improved, list(metrics)

    def grade_all(self, posting: str, summary: str) -> tuple[list[dict[str, Any]], list[Any]]:
        """Every grader at once, each in its own thread; raises the first grader error after all finish."""
        messages = self.grade_prompt.render(posting=posting, summary=summary, language=self.settings.language)
        models = self.settings.grader_models
        ends = run_all(lambda model: self._chat(model, messages, Grade, validate_grade), models, name="grader")
        grades: list[dict[str, Any]] = []
        metrics: list[Any] = []
        first_error: BaseException | None = None
        for end in ends:
            if end.error is not None and not isinstance(end.error, POSTING_ERRORS):
                raise end.error  # server gone, model missing, or a bug: not this posting's failure
        for end in ends:
            model, exc = end.item, end.error
            if exc is not None:
                if first_error is None:
                    first_error = _GraderError(model, exc)  # its call metrics travel with the cause
                else:
                    metrics += error_metrics(exc)
                continue
            grade, call_metrics = end.result()
            metrics += list(call_metrics)
            # A reason with nothing left once cleaned says nothing: it is not kept as an empty string.
            reasons = [r.strip() for r in grade.reasons if r.strip()]
            grades.append({"model": model, "verdict": grade.verdict, "reasons": reasons})
        if first_error is not None:
            assert isinstance(first_error, _GraderError)
            first_error.metrics_so_far = metrics
            raise first_error
        return grades, metrics

    # -- one posting -----------------------------------------------------------------------------------

    def run(self, item: WorkItem) -> Outcome:
        posting = item.text
        metrics: list[Any] = []
        rounds: list[dict[str, Any]] = []
        fields: SummaryFields | None = None

        def values() -> dict[str, Any]:
            return {
                "fields_json": fields.model_dump_json() if fields is not None else None,
                "grades_json": json.dumps(rounds, ensure_ascii=False) if rounds else None,
                **self.base_values(),
            }

        stage = "extract"
        try:
            fields, m = self.extract(posting)
            metrics += m
            for round_no in range(self.settings.max_improve_rounds + 1):
                if round_no > 0:
                    stage = f"improve round {round_no}"
                    fields, m = self.improve(posting, fields, rounds[-1]["grades"])
                    metrics += m
                stage = "grade" if round_no == 0 else f"regrade round {round_no}"
                grades, m = self.grade_all(posting, render_summary(fields))
                metrics += m
                rounds.append({"round": round_no, "grades": grades})
                if all(g["verdict"] == "PASS" for g in grades):
                    status = LlmStatus.PASSED if round_no == 0 else LlmStatus.PASSED_AFTER_IMPROVE
                    return Outcome(status, {**values(), "summary": render_summary(fields)}, metrics=metrics)
        except _GraderError as exc:
            return error_outcome(exc.cause, stage=f"{stage} ({exc.model})", values=values(),
                                 metrics=metrics + exc.metrics_so_far)
        except POSTING_ERRORS as exc:
            return error_outcome(exc, stage=stage, values=values(), metrics=metrics)
        failing = [f"{g['model']}: {'; '.join(g['reasons']) or 'no reason given'}"
                   for g in rounds[-1]["grades"] if g["verdict"] != "PASS"]
        error = f"graders failed the summary after {len(rounds) - 1} improve round(s): " + " | ".join(failing)
        return Outcome(LlmStatus.FAILED_GRADING, values(), error=error[:2000], metrics=metrics)


class _GraderError(Exception):
    """A grader's posting-level error, carrying the metrics of the grader calls that did answer."""

    def __init__(self, model: str, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.model = model
        self.cause = cause
        self.metrics_so_far: list[Any] = []

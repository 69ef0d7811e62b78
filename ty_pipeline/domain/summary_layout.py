"""The posting summary as structured fields, and its deterministic text layout.

The LLM only extracts `SummaryFields` (its JSON schema is sent as Ollama's `format`); the standard layout
of docs/domain_rules.md §3.2 is produced here in code. The replaced chain spent 38% of its time on an LLM
"format" step that still let code fences, blank lines and "Not available" through.
"""

from __future__ import annotations

import html
import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from ty_pipeline.domain.degenerate import (
    DEFAULT_MAX_CHARS,
    Finding,
    detect_filler,
    detect_length,
    detect_refusal,
    detect_repetition,
    detect_template_artifacts,
    is_filler_value,
    normalize_output,
)

MIN_BULLETS = 3
MAX_BULLETS = 5
MAX_DETAILS = 6
MAX_VALUE_CHARS = 200
MAX_BULLET_CHARS = 300

HEADER_ROLE = "**Role:**"
HEADER_COMPANY = "**Company:**"
HEADER_LOCATION = "**Location:**"
HEADER_JOB_ID = "**Job ID:**"
HEADER_RESPONSIBILITIES = "**Key Responsibilities:**"
HEADER_REQUIREMENTS = "**Requirements:**"
HEADER_DETAILS = "**Details:**"
SUMMARY_HEADERS = (
    HEADER_ROLE, HEADER_COMPANY, HEADER_LOCATION, HEADER_JOB_ID,
    HEADER_RESPONSIBILITIES, HEADER_REQUIREMENTS, HEADER_DETAILS,
)

_TAG_RE = re.compile(r"</?[a-zA-Z][^<>]*>")
# A fence's language tag ("```text") goes with it; inline ```code``` keeps its word.
_MARKDOWN_RE = re.compile(r"```[\w+-]*(?=\s|$)|```|\*\*|`")
_INVISIBLE_RE = re.compile(r"[\u200b\u200c\u200d\ufeff]")
_BULLET_RE = re.compile(r"^(?:[-*•·–—▪►]|\d{1,2}[.)])\s+")


def clean_inline(value: str) -> str:
    """One tidy line: HTML entities and tags, markdown emphasis, code fences and line breaks removed.

    Values are inserted after a bold header, so stray `**` or newlines would break the layout.
    """
    text = html.unescape(value)
    text = _TAG_RE.sub(" ", text)
    text = _MARKDOWN_RE.sub("", text)
    text = _INVISIBLE_RE.sub("", text)
    return " ".join(text.split())


def clean_bullet(value: str) -> str:
    """A bullet's text without the bullet the model may have typed itself ("- ", "• ", "1. ")."""
    text = clean_inline(value)
    while (stripped := _BULLET_RE.sub("", text, count=1)) != text:
        text = stripped
    return text


def _inline_or_same(value: object) -> object:
    return clean_inline(value) if isinstance(value, str) else value


def _bullet_or_same(value: object) -> object:
    return clean_bullet(value) if isinstance(value, str) else value


InlineText = Annotated[
    str, BeforeValidator(_inline_or_same), StringConstraints(min_length=1, max_length=MAX_VALUE_CHARS)
]
BulletText = Annotated[
    str, BeforeValidator(_bullet_or_same), StringConstraints(min_length=2, max_length=MAX_BULLET_CHARS)
]


class SummaryFields(BaseModel):
    """What the model extracts from one posting. Extract only: nothing may be invented."""

    model_config = ConfigDict(extra="forbid")

    role: InlineText = Field(description="The job title exactly as the posting states it.")
    company: InlineText = Field(
        description="The hiring company or organisation as named in the posting (e.g. 'Deutsche Bank', 'DWS')."
    )
    location: InlineText = Field(description="Where the job is based (city, and country if stated).")
    job_id: InlineText | None = Field(
        default=None,
        description="The job or requisition ID if the posting states one (e.g. 'R0391904'), otherwise null. "
        "Never invent an ID and never write 'not available'.",
    )
    responsibilities: list[BulletText] = Field(
        min_length=MIN_BULLETS,
        max_length=MAX_BULLETS,
        description=f"The {MIN_BULLETS} to {MAX_BULLETS} most important duties stated in the posting, "
        "one short sentence each, without bullet characters.",
    )
    requirements: list[BulletText] = Field(
        min_length=MIN_BULLETS,
        max_length=MAX_BULLETS,
        description=f"The {MIN_BULLETS} to {MAX_BULLETS} most important qualifications, skills or experience "
        "the posting asks for, one short sentence each, without bullet characters. Do not repeat duties here.",
    )
    details: list[BulletText] = Field(
        default_factory=list,
        max_length=MAX_DETAILS,
        description="Other facts the posting states: contract type, working hours, remote work, salary, "
        "start date, benefits. An empty list if the posting states none; never list what is missing.",
    )

    @field_validator("job_id", mode="before")
    @classmethod
    def _missing_job_id_is_none(cls, value: object) -> object:
        # "Not available" and friends mean "no ID": store None so the line is omitted, not a retry.
        if isinstance(value, str) and (not clean_inline(value) or is_filler_value(clean_inline(value))):
            return None
        return value

    @field_validator("details", mode="before")
    @classmethod
    def _drop_filler_details(cls, value: object) -> object:
        # Details are optional: a "- Salary: not specified" style item is dropped rather than retried.
        if not isinstance(value, list):
            return value
        return [item for item in value if not (isinstance(item, str) and _is_empty_or_filler_item(item))]


def _is_empty_or_filler_item(item: str) -> bool:
    text = clean_bullet(item)
    if not text or is_filler_value(text):
        return True
    label, sep, rest = text.partition(":")
    return bool(sep) and len(label) <= 40 and is_filler_value(rest)


def _bullets(items: list[str]) -> list[str]:
    lines: list[str] = []
    for item in items:
        text = clean_bullet(item)
        if text and not is_filler_value(text):
            lines.append(f"- {text}")
    return lines


def render_summary(fields: SummaryFields) -> str:
    """The standard layout: headers in fixed order, `- ` bullets, no blank lines, no fences.

    An absent job ID or an empty details list leaves out the line (and header) instead of writing filler.
    """
    lines = [
        f"{HEADER_ROLE} {clean_inline(fields.role)}",
        f"{HEADER_COMPANY} {clean_inline(fields.company)}",
        f"{HEADER_LOCATION} {clean_inline(fields.location)}",
    ]
    job_id = clean_inline(fields.job_id or "")
    if job_id and not is_filler_value(job_id):
        lines.append(f"{HEADER_JOB_ID} {job_id}")
    lines += [HEADER_RESPONSIBILITIES, *_bullets(fields.responsibilities)]
    lines += [HEADER_REQUIREMENTS, *_bullets(fields.requirements)]
    details = _bullets(fields.details)
    if details:
        lines += [HEADER_DETAILS, *details]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Validation for the corrective retry


def _field_values(fields: SummaryFields) -> list[tuple[str, str]]:
    """(label the model understands, value) for every filled value."""
    values = [("role", fields.role), ("company", fields.company), ("location", fields.location)]
    if fields.job_id:
        values.append(("job_id", fields.job_id))
    for name in ("responsibilities", "requirements", "details"):
        items: list[str] = getattr(fields, name)
        values += [(f"{name} item {i}", item) for i, item in enumerate(items, start=1)]
    return values


def _value_findings(value: str) -> list[Finding]:
    return detect_repetition(value) + detect_template_artifacts(value) + detect_filler(value) + detect_refusal(value)


def _duplicate_items(fields: SummaryFields) -> list[str]:
    problems: list[str] = []
    for name in ("responsibilities", "requirements", "details"):
        seen: dict[str, int] = {}
        for i, item in enumerate(getattr(fields, name), start=1):
            key = normalize_output(item)
            if key in seen:
                problems.append(f"{name} item {i}: repeats item {seen[key]}; list each point once")
            else:
                seen[key] = i
    return problems


def summary_problems(fields: SummaryFields) -> list[str]:
    """Human-readable problems, one per line of the retry message; empty when the fields are usable."""
    problems = [
        f"{label}: {finding.detail}" for label, value in _field_values(fields) for finding in _value_findings(value)
    ]
    problems += _duplicate_items(fields)
    rendered = render_summary(fields)
    # Loops spread over many bullets and an overall size beyond the QA limit only show on the whole text.
    whole = detect_repetition(rendered) + detect_length(rendered, min_chars=None, max_chars=DEFAULT_MAX_CHARS)
    already = {p.split(": ", 1)[1] for p in problems}
    problems += [f"whole summary: {f.detail}" for f in whole if f.detail not in already]
    return problems


def validate_summary_fields(fields: SummaryFields) -> str | None:
    """None if the fields are usable, else the message the corrective retry shows the model."""
    problems = summary_problems(fields)
    if not problems:
        return None
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        "Your previous answer cannot be used because of these problems:\n"
        f"{listed}\n"
        "Answer again with JSON in the same schema. Use only facts stated in the posting; "
        "leave job_id null and details empty instead of writing that something is missing."
    )

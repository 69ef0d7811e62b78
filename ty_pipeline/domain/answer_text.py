"""Free text in an LLM answer schema, cleaned where pydantic validates the answer.

An LLM answer is text from outside like any API answer, and fails the same ways (issue #9): a model
can write `\\u0000` or a lone `\\ud800` escape inside its JSON (PostgreSQL rejects NUL in text; neither
psycopg2 nor sqlite3 can encode a surrogate), stray control characters, or HTML entities it saw in a
posting (`R&amp;D`). The client already removes what cannot be stored from the whole decoded answer
(`clients/llm_base.judge_answer`); a text field typed `AnswerText` also gets its entities decoded
exactly once (`domain/text_clean.clean_text`), so the stored value reads as the posting does.

Line breaks, tabs and markdown stay: a reasoning may span lines. A value that is empty once cleaned is
left empty for the schema's own checks (minimum lengths, the pipelines' validators) to reject, which
asks the model again and records a failure if the second answer is no better.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from ty_pipeline.domain.text_clean import clean_text


def _clean_if_text(value: object) -> object:
    # Anything that is not a string is left to pydantic's own type check (and its error message).
    return clean_text(value) if isinstance(value, str) else value


AnswerText = Annotated[str, BeforeValidator(_clean_if_text)]

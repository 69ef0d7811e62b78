"""Every LLM answer schema encodes its real constraints, so a grammar-constrained server cannot produce
an answer the pipeline rejects (issue: the Berufenet verify `choice` was bounded 0..50, a constrained
decoder answered 24 for five candidates, and 15 postings became `error`).

The fake server here answers *anything the schema sent with the request allows*: a random instance
drawn from that JSON schema (enum, const, anyOf, min/max, minItems/maxItems, minLength/maxLength,
optional keys left out). Each answer must be accepted at once, by pydantic and by the caller's own
validator, with no corrective retry. Free text is drawn from ordinary words and list items are
distinct: the free-text checks (loops, filler, refusals, a point listed twice) are content rules that a
JSON schema cannot express for a grammar (no `uniqueItems`), and stay with the validators.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from ty_pipeline.clients.ollama import OllamaClient
from ty_pipeline.domain.ihl import AnalystOutput, HRExpertOutput, SkepticOutput
from ty_pipeline.domain.kldb_catalog import NamedProfession
from ty_pipeline.domain.profession_matching import Candidate
from ty_pipeline.domain.skills import SkillList
from ty_pipeline.domain.summary_layout import SummaryFields
from ty_pipeline.enrichment.ihl import validate_role_output
from ty_pipeline.enrichment.skills import validate_skill_list
from ty_pipeline.enrichment.summaries import Grade, _validate_fields, validate_grade
from ty_pipeline.professions.llm import LlmChooser
from ty_pipeline_tests.fakes.ollama_server import FakeOllama

MODEL = "qwen2.5:7b-instruct"
ANSWERS_PER_SCHEMA = 60
WORDS = ["Buchhaltung", "Python", "Teamarbeit", "Frankfurt", "Kundenberatung", "Projektleitung", "Controlling",
         "Vertrieb", "Analyse", "Reporting", "Pflege", "Logistik", "Englisch", "Datenbanken", "Steuerrecht",
         "Vollzeit", "Schichtdienst", "Führerschein", "Kommunikation", "Organisation"]


def random_instance(schema: Any, rng: random.Random, root: dict[str, Any] | None = None) -> Any:
    """Any value the JSON schema allows (the subset pydantic emits and Ollama turns into a grammar)."""
    root = schema if root is None else root
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return random_instance(target, rng, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return random_instance(rng.choice(schema[key]), rng, root)
    kind = schema.get("type")
    if kind == "object":
        required = set(schema.get("required", []))
        return {name: random_instance(sub, rng, root) for name, sub in schema.get("properties", {}).items()
                if name in required or rng.random() < 0.5}
    if kind == "array":
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", low + 6)
        items: list[Any] = []
        for _ in range(rng.randint(low, high)):
            for _draw in range(20):  # distinct items: "each point once" is a content rule (see above)
                item = random_instance(schema.get("items", {}), rng, root)
                if item not in items:
                    break
            items.append(item)
        return items
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 400)
        text = " ".join(rng.sample(WORDS, rng.randint(0, 4)))[:high]
        while len(text) < low:
            text = (text + " " + rng.choice(WORDS)).strip()[:high]
        return text
    if kind == "integer":
        return rng.randint(schema.get("minimum", -10**6), schema.get("maximum", 10**6))
    if kind == "number":
        return rng.uniform(schema.get("minimum", -1e6), schema.get("maximum", 1e6))
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    raise AssertionError(f"schema construct not covered by the generator: {schema}")


def schema_following_server(seed: int) -> Callable[[str, dict[str, Any]], Any]:
    rng = random.Random(seed)
    return lambda _model, body: random_instance(body["format"], rng)


@pytest.fixture
def fake() -> Any:
    with FakeOllama(models=[MODEL]) as server:
        yield server


CASES: list[tuple[type[BaseModel], Callable[[BaseModel], str | None] | None]] = [
    (SummaryFields, _validate_fields),
    (Grade, validate_grade),
    (SkillList, validate_skill_list),
    (AnalystOutput, validate_role_output),
    (SkepticOutput, validate_role_output),
    (HRExpertOutput, validate_role_output),
]


@pytest.mark.parametrize(("schema", "validate"), CASES, ids=[c[0].__name__ for c in CASES])
def test_every_schema_valid_answer_is_accepted_at_once(
    fake: FakeOllama, schema: type[BaseModel], validate: Callable[[BaseModel], str | None] | None
) -> None:
    fake.responder = schema_following_server(seed=len(schema.__name__))
    with OllamaClient(fake.base_url, max_retries=0) as client:
        for _ in range(ANSWERS_PER_SCHEMA):
            answer, metrics = client.chat_structured(
                model=MODEL, messages=[{"role": "user", "content": "x"}], schema=schema, validate=validate
            )
            assert isinstance(answer, schema) and len(metrics) == 1  # no corrective retry was needed
    assert len(fake.chat_calls()) == ANSWERS_PER_SCHEMA


def professions(n: int) -> tuple[list[Candidate], dict[str, NamedProfession]]:
    made = [NamedProfession.from_code(f"4{i}11{i % 4 + 1}-10{i}", f"Beruf {i}") for i in range(n)]
    catalog = {p.profession_id: p for p in made}
    return [Candidate(p.profession_id, 0.5) for p in made], catalog


@pytest.mark.parametrize("n", [1, 2, 5])
def test_the_verify_choice_is_bounded_by_the_number_of_candidates(fake: FakeOllama, n: int) -> None:
    fake.responder = schema_following_server(seed=n)
    candidates, catalog = professions(n)
    chooser = LlmChooser(OllamaClient(fake.base_url, max_retries=0), MODEL)
    numbers = set()
    for _ in range(ANSWERS_PER_SCHEMA):
        choice = chooser.verify("Beruf", candidates, catalog)
        assert 0 <= choice.number <= n and len(choice.metrics) == 1
        assert choice.profession_id == (candidates[choice.number - 1].profession_id if choice.number else None)
        numbers.add(choice.number)
    assert numbers == set(range(n + 1))  # every allowed answer was drawn, and nothing else
    sent = json.loads(fake.chat_calls()[0].body)["format"]["properties"]["choice"]
    assert (sent["minimum"], sent["maximum"]) == (0, n)

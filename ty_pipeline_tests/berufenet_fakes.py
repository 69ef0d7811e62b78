"""Shared pieces of the profession-mapping tests: a recording character-trigram encoder, a test catalog
with an `alias_majority` case, posting set-up, and FakeOllama responders that pick candidates by name.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from ty_pipeline.clients.embedder import TextEncoder
from ty_pipeline.domain.posting_record import PostingRecord, Source
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.warehouse.postings_store import upsert_postings
from ty_pipeline.warehouse.schema import postings

FAKE_MODEL_ID = "fake:trigram"
NOW = datetime(2026, 11, 20, 22, 0)
DIM = 256

# Every text the fake encoder was asked for, per call (reset by the tests' autouse fixture).
ENCODE_CALLS: list[list[str]] = []


def trigram_vector(text: str) -> np.ndarray:
    """Hashed character trigrams, L2-normalised: similar spellings get a high cosine, like a real model."""
    padded = f"  {text.casefold()}  "
    vector = np.zeros(DIM, dtype=np.float64)
    for i in range(len(padded) - 2):
        vector[zlib.crc32(padded[i : i + 3].encode()) % DIM] += 1.0
    return (vector / (np.linalg.norm(vector) or 1.0)).astype(np.float32)


class TrigramEncoder:
    model_id = FAKE_MODEL_ID
    window_tokens = 512

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        ENCODE_CALLS.append(list(texts))
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.stack([trigram_vector(t) for t in texts])


class TrigramEmbedder(EmbedderResource):
    def backend_name(self) -> str:
        # Not a backend the resource accepts as a setting (its field validator refuses unknown ones);
        # `build_encoder` below never asks for one.
        return "fake"

    def build_encoder(self, ollama: OllamaResource | None = None) -> TextEncoder:
        return TrigramEncoder()


def fake_embedder() -> TrigramEmbedder:
    # backend:model spells the encoder's model_id, which is what the mapping asset reads before loading it.
    return TrigramEmbedder(model="trigram")


def encoded() -> list[str]:
    return [t for call in ENCODE_CALLS for t in call]


# A profession family in one domain with mixed levels: the bare alias "Pflegeberater" is alias_majority.
EXTRA_ROWS = [
    ("81302-901", "Pflegeberater/in - Krankenpflege", "81302", "2"),
    ("81313-901", "Pflegeberater/in - Intensivpflege", "81313", "3"),
    ("81313-902", "Pflegeberater/in - Dialyse", "81313", "3"),
]


def write_test_catalog(tmp_path: Path, seed: Path) -> Path:
    """The seed catalog plus `EXTRA_ROWS`, as a seed file for `ProfessionCatalogResource(seed_csv=...)`."""
    path = tmp_path / "catalog.csv"
    lines = seed.read_text(encoding="utf-8").rstrip("\n").split("\n")
    lines += [";".join(row) for row in EXTRA_ROWS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def add_postings(
    engine: sa.Engine, day: date, items: Sequence[tuple[str, str | None] | tuple[str, str | None, str | None]],
    *, prefix: str = "",
) -> dict[str, list[int]]:
    """Insert postings (title, beruf[, source]) for `day`; returns title -> posting ids."""
    records = []
    for i, item in enumerate(items):
        title, beruf = item[0], item[1]
        source = Source.DEUTSCHE_BANK if len(item) > 2 and item[2] == "deutsche_bank" else Source.ARBEITSAGENTUR
        records.append(PostingRecord(source=source, external_id=f"{prefix}{day}-{i}", title=title, beruf=beruf,
                                     state="Bayern", published_date=day, raw={"i": i}))
    upsert_postings(engine, records, partition_date=day, now=NOW)
    out: dict[str, list[int]] = {}
    with engine.connect() as conn:
        for r in conn.execute(sa.select(postings.c.posting_id, postings.c.title, postings.c.external_id)):
            if r.external_id.startswith(f"{prefix}{day}-"):
                out.setdefault(r.title, []).append(r.posting_id)
    return out


_CANDIDATE_LINE = re.compile(r"^(\d+)\. (.+) \(KldB (\d{5}), Niveau (\d)")


def parse_request(body: dict[str, Any]) -> tuple[str, list[tuple[int, str, str]], str]:
    """(title, [(number, name, kldb)], description) from a berufenet prompt sent to FakeOllama."""
    user = body["messages"][-1]["content"] if body["messages"][-1]["role"] == "user" else ""
    for message in body["messages"]:
        if message["role"] == "user" and message["content"].startswith("Title:"):
            user = message["content"]
            break
    title = user.split("\n", 1)[0].removeprefix("Title: ").strip()
    cands = []
    for line in user.splitlines():
        m = _CANDIDATE_LINE.match(line)
        if m:
            cands.append((int(m.group(1)), m.group(2), m.group(3)))
    desc = ""
    if "<description>" in user:
        desc = user.split("<description>\n", 1)[1].split("\n</description>", 1)[0]
    return title, cands, desc


def choose_by_name(wanted: dict[str, str | None]) -> Callable[[str, dict[str, Any]], dict[str, int]]:
    """Responder: for title T pick the candidate whose name contains wanted[T]; None (or unknown) -> 0."""

    def responder(_model: str, body: dict[str, Any]) -> dict[str, int]:
        title, cands, _desc = parse_request(body)
        needle = wanted.get(title)
        if needle is None:
            return {"choice": 0}
        for number, name, _kldb in cands:
            if needle.casefold() in name.casefold():
                return {"choice": number}
        return {"choice": 0}

    return responder


def prompts_sent(fake: Any) -> list[tuple[str, list[tuple[int, str, str]], str]]:
    return [parse_request(json.loads(r.body)) for r in fake.chat_calls()]

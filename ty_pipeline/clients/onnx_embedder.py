"""The `onnx` embedding backend: a sentence-transformers model exported once to ONNX, int8-quantized, and
run with ONNX Runtime on the CPU (Dagster-free; `ty_pipeline.resources.embedder` builds it).

Why not `SentenceTransformer(..., backend="onnx")`: that path needs `optimum-onnx`, whose only release
pins transformers < 4.58, while sentence-transformers 6 needs transformers 5, so the two cannot be
installed together. The export here is the same thing done with the libraries already installed: torch
exports the transformer (`torch.onnx.export`), ONNX Runtime's own `quantize_dynamic` makes the int8
weights, and mean pooling + L2 normalisation (what the model's Pooling/Normalize modules do) run in
numpy.

The export needs torch and the model files once, offline; it is cached in `TY_EMBED_CACHE_DIR` (default
`$XDG_CACHE_HOME/ty_pipeline/onnx`, else `~/.cache/ty_pipeline/onnx`) under a key of the model's files,
so a changed model is exported again. Encoding afterwards imports neither torch nor transformers:
ONNX Runtime, the `tokenizers` library and numpy only, which is what keeps the process small.

The export is noisy (torch's TracerWarnings, the quantizer's advice on the root logger, transformers'
progress bar): it runs with warnings, log records and the process's stdout/stderr captured, and the
caller logs one line (what, where, how long, how many warnings) with each captured item at debug level.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ty_pipeline.domain.vectors import l2_normalize

EXPORT_FORMAT = 3  # bump when the export or quantization recipe changes: old caches are then not used
ONNX_FILE = "model_qint8.onnx"
META_FILE = "export.json"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ty_pipeline" / "onnx"


def _model_key(model_name: str, model_path: str) -> str:
    """Name + fingerprint of the model's files (names, sizes, mtimes), so a new model version re-exports."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}|{model_name}|{model_path}".encode())
    root = Path(model_path)
    if root.is_dir():
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(root)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)[-60:]
    return f"{safe}-{digest.hexdigest()[:16]}"


@dataclass
class ExportNoise:
    """What the export would have printed: warnings and log records (WARNING and up, as Python would have
    shown them), and any other lines written to stdout/stderr (progress bars, native code)."""

    warnings: list[str] = field(default_factory=list)
    output: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportOutcome:
    """One `export_quantized` call, returned from the export's process to the caller, which logs it."""

    exported: bool  # False: another process exported the model while this one waited for the lock
    noise: ExportNoise = field(default_factory=ExportNoise)


def export_quantized(model_name: str, model_path: str, target: Path) -> ExportOutcome:
    """Export the model into `target` unless another process did while this one waited for the lock.

    One exporter per cache entry: processes starting together (two test workers, several steps) would
    otherwise each spend the export's CPU and all but one throw it away; the waiting ones find it done.
    The lock only saves work (correctness rests on the rename in `_export`), and it is taken here, in
    the export's own process, not around the spawn: a script without a `__main__` guard runs again in
    the spawned child, which would then wait forever for its parent's lock instead of failing.

    Runs in `ensure_export`'s child process, whose whole output is the export's: its stdout and stderr
    are captured at the file-descriptor level (see `_captured`) and handed back for the caller's log.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / META_FILE).exists():
            return ExportOutcome(exported=False)
        with _captured() as noise:
            _export(model_name, model_path, target)
        return ExportOutcome(exported=True, noise=noise)


class _RecordList(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _captured() -> Iterator[ExportNoise]:
    """Record warnings and log records, and send stdout and stderr into a temporary file.

    Redirected at the file-descriptor level because not all of the noise passes through `sys.stderr`:
    transformers' logger holds a handler on the stream it found at import, tqdm bars and torch's native
    code write to the descriptor. Only for a process that does nothing else (the export's child): another
    thread's output would be captured too. When the export fails, what was captured is written back to
    stderr, next to the traceback it may explain.
    """
    noise = ExportNoise()
    handler = _RecordList(noise.warnings)
    root = logging.getLogger()
    root.addHandler(handler)  # a root handler also keeps `logging.lastResort` from printing them
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    streams: list[Any] = []
    failed = True
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(record=True) as caught:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            # Python-level writes too, for a `sys.stdout` that is not the descriptor (replaced by a caller).
            # Streams on the descriptors themselves, left open: a library handler created during the export
            # keeps the stream it found, and writes to the real stderr again after the restore below.
            streams = [open(fd, "w", encoding="utf-8", errors="replace", closefd=False) for fd in (1, 2)]  # noqa: SIM115
            with contextlib.redirect_stdout(streams[0]), contextlib.redirect_stderr(streams[1]):
                yield noise
            failed = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for stream in streams:
                stream.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            root.removeHandler(handler)
            noise.warnings[:0] = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            for raw in text.split("\n"):
                # A progress bar redraws its line after carriage returns: keep what it showed last.
                shown = [part.strip() for part in raw.split("\r") if part.strip()]
                if shown:
                    noise.output.append(shown[-1])
            if failed and (text or noise.warnings):
                sys.stderr.write("".join(f"{w}\n" for w in noise.warnings) + text)
                sys.stderr.flush()


def _export(model_name: str, model_path: str, target: Path) -> None:
    """Export the model's transformer to ONNX, quantize it to int8, and save tokenizer + pooling facts.

    Written to a temporary directory and renamed into place, so two processes exporting at once, or an
    export killed half-way, never leave a cache entry that looks complete.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    st: Any = SentenceTransformer(model_path, device="cpu")  # indexing yields modules: typed as Tensor | Module
    kinds = [type(module).__name__ for module in st]
    pooling = getattr(st[1], "pooling_mode", None) if len(st) > 1 else None
    if kinds[:2] != ["Transformer", "Pooling"] or pooling != "mean" or any(k != "Normalize" for k in kinds[2:]):
        raise ValueError(
            f"the onnx embedding backend supports Transformer + mean Pooling (+ Normalize) models; {model_name} "
            f"has {kinds} with pooling {pooling!r}: use TY_EMBED_BACKEND=sentence-transformers for it"
        )
    transformer = st[0].auto_model.eval()
    # The plain attention (MatMul, mask Add, Softmax) instead of the SDPA one: the exported SDPA guards
    # fully masked rows with IsNaN + Where over every batch x heads x tokens x tokens score tensor, 12 % of
    # the int8 model's kernel time on the bench's chunks, for rows that cannot occur ([CLS] is never
    # masked). Measured: about 6 % less CPU per chunk, the same vectors (chunk cosine to torch unchanged).
    transformer.config._attn_implementation = "eager"
    sample = st.tokenizer(["Beispiel", "Ein etwas längerer Beispielsatz für den Export."], padding=True,
                          return_tensors="pt")
    names = [n for n in _INPUTS if n in sample]

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            return self.model(**dict(zip(names, args, strict=True))).last_hidden_state

    work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
        with torch.no_grad():
            # The TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency.
            torch.onnx.export(
                _LastHiddenState(transformer), tuple(sample[n] for n in names), str(work / "model.onnx"),
                input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                dynamo=False,
            )
        # Dynamic int8 (weights per channel, activations quantized on the fly): no calibration data.
        quantize_dynamic(str(work / "model.onnx"), str(work / ONNX_FILE), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul"],
                         nodes_to_exclude=_float_matmuls(work / "model.onnx"))
        (work / "model.onnx").unlink()
        st.tokenizer.save_pretrained(str(work))
        meta = {
            "model": model_name,
            "inputs": names,
            "max_seq_length": int(st.max_seq_length),
            "dim": int((getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension)()),
            "export_format": EXPORT_FORMAT,
        }
        (work / META_FILE).write_text(json.dumps(meta, indent=2))
        # mkdtemp makes the directory private (0700); the export is read by every process of the pipeline,
        # which on a shared cache volume (TY_EMBED_CACHE_DIR) may run as other users.
        work.chmod(0o755)
        try:
            work.rename(target)
        except OSError:
            if not (target / META_FILE).exists():  # not "another process won the race": a real failure
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _float_matmuls(path: Path) -> list[str]:
    """MatMuls kept in float: the projections that write back into the residual stream (the attention
    output and the feed-forward output: MatMul -> bias Add -> residual Add -> LayerNorm).

    Measured on the bundled MiniLM over the real postings in the test fixtures, chunk cosines against
    torch: every weight MatMul int8 0.975 min / 0.990 mean; the feed-forward output kept float 0.990 /
    0.996; both residual projections kept float 0.992 / 0.996, at about the same speed (12 of 36 MatMuls,
    a third of the FLOPs: the wide feed-forward input stays int8). Errors there go straight into every
    later layer; the feed-forward output also reads GELU activations with outliers that one int8 scale per
    tensor resolves badly. Found from the graph, not from layer names, so it holds for any BERT-like model.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=True).graph
    weights = {init.name for init in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def next_ops(node: Any) -> list[Any]:
        return [c for out in node.output for c in consumers.get(out, [])]

    keep = []
    for node in graph.node:
        if node.op_type != "MatMul" or not any(i in weights for i in node.input):
            continue
        for bias in (n for n in next_ops(node) if n.op_type == "Add"):
            for residual in (n for n in next_ops(bias) if n.op_type == "Add"):
                if any(n.op_type in ("LayerNormalization", "ReduceMean") for n in next_ops(residual)):
                    keep.append(node.name)
    return sorted(set(keep))


def ensure_export(model_name: str, model_path: str, cache_dir: Path, logger: logging.Logger | None = None) -> Path:
    """The cached export for this model, exporting it first if there is none (reported on `logger`, by
    default this module's: one INFO line, and each suppressed warning at DEBUG)."""
    target = cache_dir / _model_key(model_name, model_path)
    if not (target / META_FILE).exists():
        started = time.monotonic()
        # In a child process: the export loads torch and the full model (about 1 GiB), which would
        # otherwise stay in this process for the whole run, the very memory the onnx path saves.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            outcome = pool.submit(export_quantized, model_name, model_path, target).result()
        report_export(logger or log, model_name, target, time.monotonic() - started, outcome)
    return target


def report_export(
    logger: logging.Logger, model_name: str, target: Path, seconds: float, outcome: ExportOutcome
) -> None:
    """One INFO line for the run's log instead of the export's own output; that output at DEBUG."""
    if not outcome.exported:
        logger.info(f"onnx export of {model_name}: done by another process while this one waited "
                    f"({seconds:.1f} s), using {target}")
        return
    noise = outcome.noise
    lines = f" and {_count(len(noise.output), 'line')} of library output" if noise.output else ""
    logger.info(f"onnx export of {model_name}: int8 model written to {target} in {seconds:.1f} s (once per model "
                f"and cache directory); {_count(len(noise.warnings), 'warning')}{lines} suppressed, "
                "shown at debug level")
    for item in noise.warnings:
        logger.debug(f"onnx export of {model_name}, suppressed warning: {item}")
    for line in noise.output:
        logger.debug(f"onnx export of {model_name}, suppressed output: {line}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


_sessions: dict[tuple[str, int], tuple[Any, Any, dict[str, Any]]] = {}
_sessions_lock = threading.Lock()


def _load(export_dir: Path, threads: int) -> tuple[Any, Any, dict[str, Any]]:
    """One ONNX Runtime session and tokenizer per export and process: loading takes about a second."""
    key = (str(export_dir), threads)
    with _sessions_lock:
        loaded = _sessions.get(key)
        if loaded is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            meta = json.loads((export_dir / META_FILE).read_text())
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            # Shapes change every batch (padding to the longest text): a memory pattern planned for one
            # shape is useless for the next and only holds memory.
            options.enable_mem_pattern = False
            # No busy-waiting between parallel sections: on a shared machine the spinning threads burn CPU
            # that other work needs (and that the process is billed for) without encoding anything faster.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(str(export_dir / ONNX_FILE), options, providers=["CPUExecutionProvider"])
            tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
            tokenizer.enable_truncation(max_length=int(meta["max_seq_length"]))
            tokenizer.enable_padding()
            loaded = (session, tokenizer, meta)
            _sessions[key] = loaded
        return loaded


class OnnxEncoder:
    """int8 ONNX Runtime encoder of a sentence-transformers model; the same vectors as the torch path up to
    quantization noise (cosine >= 0.99, tested), several times faster on a CPU."""

    def __init__(
        self, model: str, model_path: str, *, cache_dir: Path | None = None, threads: int = 0,
        logger: logging.Logger | None = None,
    ) -> None:
        export_dir = ensure_export(model, model_path, cache_dir or default_cache_dir(), logger)
        self._session, self._tokenizer, meta = _load(export_dir, threads)
        self._inputs = list(meta["inputs"])
        self.dim = int(meta["dim"])
        self.model_id = f"onnx:{model}"
        self.window_tokens = int(meta["max_seq_length"])
        self.export_dir = export_dir

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model reads it (special tokens included, truncated to the window):
        `encode_texts` sorts by this so a batch pads to almost nothing."""
        return [sum(e.attention_mask) for e in self._tokenizer.encode_batch_fast(list(texts))]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(["last_hidden_state"], feed)
        # Mean over real tokens (the Pooling module's "mean" mode), then unit length (Normalize).
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return l2_normalize(pooled)

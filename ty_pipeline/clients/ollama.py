"""The Ollama backend of the LLM client (Dagster-free; the resource is `ty_pipeline.resources.ollama`).

Why a small client of our own instead of the `ollama` package: the replaced system spawned a process per
LLM call (19-hour nights) and lost answers to silent failures (docs/domain_rules.md §10). This client
keeps one pooled `requests.Session` (safe to share between the worker threads of an asset), sends every
request with explicit (connect, read) timeouts and speaks Ollama's native `/api/chat` with `format` = JSON
schema (it can set `num_ctx`, which Ollama's `/v1` cannot). The retry policy, the error taxonomy, the
metrics and the one corrective retry are shared with the OpenAI-compatible backend (`llm_base.py`);
what is Ollama's own:

* 404 "model not found" -> `OllamaModelMissing` (says `ollama pull <model>`), any other 4xx
  -> `OllamaRequestError` with Ollama's own `{"error": ...}` message, without a retry;
* `done_reason == "length"` is the cut-off verdict that gets the corrective retry.

Non-streaming calls are used throughout (`stream: false`): Ollama then sends nothing until the whole
answer is generated, so the read timeout bounds the generation time of one call.
Wire format: docs/wire_formats.md §4.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from ty_pipeline.clients.llm_base import (
    DEFAULT_CHAT_OPTIONS,
    MAX_ERROR_BODY_CHARS,
    MAX_RAW_IN_MESSAGE,
    Answer,
    CallMetrics,
    Exchange,
    LlmConnectionReset,
    LlmError,
    LlmInvalidAnswer,
    LlmModelMissing,
    LlmRequestError,
    LlmTransientError,
    LlmUnavailable,
    PooledHttpClient,
    Request,
    ServerWords,
    chat_with_one_correction,
    corrective_message,
    error_body_text,
    send,
)
from ty_pipeline.clients.retry_policy import TransientFailure
from ty_pipeline.domain.urls import redact_secrets_of

__all__ = [
    "DEFAULT_CHAT_OPTIONS", "DEFAULT_OLLAMA_HOST", "DEFAULT_PORT", "MAX_ERROR_BODY_CHARS", "MAX_RAW_IN_MESSAGE",
    "USER_AGENT", "CallMetrics", "OllamaClient", "OllamaConnectionReset", "OllamaError", "OllamaInvalidAnswer",
    "OllamaModelMissing", "OllamaRequestError", "OllamaTransientError", "OllamaUnavailable",
    "canonical_model_name", "corrective_message", "normalize_host",
]

log = logging.getLogger(__name__)

DEFAULT_OLLAMA_HOST = "http://localhost:11434"
DEFAULT_PORT = 11434
USER_AGENT = "ty_pipeline-ollama-client/1.0"


# -- errors: the backend-neutral ones under their historical names ---------------------------------------
# Callers (assets, runners, the dispatcher) import these names from here; they are the `Llm*` classes of
# `llm_base`, so an error from either backend is caught by either name.

OllamaError = LlmError
OllamaUnavailable = LlmUnavailable
OllamaConnectionReset = LlmConnectionReset
OllamaModelMissing = LlmModelMissing
OllamaRequestError = LlmRequestError
OllamaTransientError = LlmTransientError
OllamaInvalidAnswer = LlmInvalidAnswer


# -- helpers ----------------------------------------------------------------------------------------------


def normalize_host(host: str) -> str:
    """Accept `OLLAMA_HOST` the way the ollama CLI does: `host:port` or a bare host gets `http://`
    and, without a port, Ollama's 11434. A URL with a scheme is kept (a reverse proxy may use 443)."""
    value = host.strip().rstrip("/")
    if not value:
        return DEFAULT_OLLAMA_HOST
    if "://" not in value:
        value = f"http://{value}"
        parts = urlsplit(value)
        if parts.port is None:
            netloc = f"{parts.hostname}:{DEFAULT_PORT}" if parts.hostname else f"localhost:{DEFAULT_PORT}"
            value = f"{parts.scheme}://{netloc}{parts.path}"
    return value


def canonical_model_name(name: str) -> str:
    """`qwen2.5` and `qwen2.5:latest` are the same model to Ollama (the tag defaults to latest)."""
    name = name.strip()
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"



OLLAMA_WORDS = ServerWords(
    label="Ollama",
    start_hint="Start it with `ollama serve` or set OLLAMA_HOST to the server's URL.",
    log_hint="the Ollama server log",
)


# -- the client -------------------------------------------------------------------------------------------


class OllamaClient(PooledHttpClient):
    """Thread-safe: share one instance between the workers of a run (the session pool is sized for it)."""

    words = OLLAMA_WORDS

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 180.0,
        max_retries: int = 4,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        keep_alive: str = "30m",
        pool_size: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connect(
            normalize_host(base_url), user_agent=USER_AGENT, connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s, max_retries=max_retries, backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s, pool_size=pool_size, sleep=sleep,
        )
        self.keep_alive = keep_alive


    # -- HTTP (the one place every call goes through) ---------------------------------------------------

    def _safe(self, text: str) -> str:
        """A library exception's text without the credentials or query string of `OLLAMA_HOST`."""
        return redact_secrets_of(text, self.base_url)

    def _model_missing(self, model: str, server_text: str, metrics: list[CallMetrics]) -> LlmModelMissing:
        return LlmModelMissing(
            f"Ollama model '{model}' is not installed on {self.shown_url} (server said: {server_text}). "
            f"Install it with `ollama pull {model}`.",
            models=[model],
            metrics=metrics,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        model: str | None = None,
        max_retries: int | None = None,
    ) -> Answer:
        """One logical request with the retry policy (`PooledHttpClient.with_retries`); returns the
        decoded JSON object. Raises typed errors only."""

        def attempt(request: Request, number: int) -> dict[str, Any]:
            resp = send(self.session, method, request.url, body=body, timeout=self.timeout, safe=self._safe)
            status = resp.status_code
            if status == 200:
                try:
                    payload = resp.json()
                except ValueError as exc:
                    raise TransientFailure(f"HTTP 200 with a body that is not JSON ({exc})", status=200) from None
                if isinstance(payload, dict) and "error" not in payload:
                    return payload
                raise TransientFailure(f"HTTP 200 with an error body: {resp.text[:MAX_RAW_IN_MESSAGE]}", status=200)
            text = error_body_text(resp)
            if status == 429 or status >= 500:
                raise TransientFailure(f"HTTP {status}: {text}", status=status,
                                       retry_after=resp.headers.get("Retry-After"))
            if status == 404 and model is not None and "not found" in text.lower():
                raise self._model_missing(model, text, request.failed_metrics(number))
            raise LlmRequestError(
                f"Ollama at {self.shown_url} rejected {request.what}: HTTP {status}: {text}",
                status=status, error=text, metrics=request.failed_metrics(number),
            )

        return self.with_retries(method, path, attempt, model=model, max_retries=max_retries)

    # -- server information -----------------------------------------------------------------------------

    def version(self, *, max_retries: int | None = None) -> str:
        answer = self._call("GET", "/api/version", max_retries=max_retries)
        return str(answer.payload.get("version", ""))

    def list_models(self, *, max_retries: int | None = None) -> list[str]:
        answer = self._call("GET", "/api/tags", max_retries=max_retries)
        models = answer.payload.get("models") or []
        return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]

    def preflight(self, models: Iterable[str]) -> str:
        """Fail fast, before a run starts hundreds of calls: is the server there, are the models pulled?

        Uses at most one retry so a missing server is reported in seconds, not after minutes of backoff.
        Returns the server version (worth recording as run metadata).
        """
        retries = min(1, self.max_retries)
        version = self.version(max_retries=retries)
        installed = {canonical_model_name(name) for name in self.list_models(max_retries=retries)}
        wanted = list(dict.fromkeys(m for m in models if m))
        missing = [m for m in wanted if canonical_model_name(m) not in installed]
        if missing:
            pulls = "\n".join(f"  ollama pull {m}" for m in missing)
            have = ", ".join(sorted(installed)) or "none"
            raise LlmModelMissing(
                f"Ollama at {self.shown_url} (version {version}) is missing {len(missing)} model(s) this run "
                f"needs: {', '.join(missing)}. Installed: {have}. Install them with:\n{pulls}",
                models=missing,
                status=None,
            )
        return version

    # -- structured chat --------------------------------------------------------------------------------

    def chat_structured(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        schema: type[BaseModel],
        options: dict[str, Any] | None = None,
        validate: Callable[[BaseModel], str | None] | None = None,
    ) -> tuple[BaseModel, list[CallMetrics]]:
        """Ask for JSON in `schema` (sent as Ollama's `format`) and return the validated object.

        An unusable answer gets one corrective retry (`llm_base.chat_with_one_correction`).
        """
        merged_options = {**DEFAULT_CHAT_OPTIONS, **(options or {})}
        json_schema = schema.model_json_schema()

        def exchange(conversation: list[dict[str, Any]]) -> Exchange:
            body = {
                "model": model,
                "messages": conversation,
                "stream": False,
                "format": json_schema,
                "options": merged_options,
                "keep_alive": self.keep_alive,
            }
            answer = self._call("POST", "/api/chat", body=body, model=model)
            metrics = CallMetrics.from_response(
                answer.payload, model=model, endpoint="/api/chat", wall_s=answer.wall_s, attempts=answer.attempts,
                host=self.shown_url,
            )
            message = answer.payload.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            cut_off = None
            if answer.payload.get("done_reason") == "length":
                cut_off = f"done_reason=length, num_predict={merged_options.get('num_predict')}"
            return Exchange(content if isinstance(content, str) else None, metrics, cut_off)

        return chat_with_one_correction(
            exchange, model=model, messages=messages, schema=schema, validate=validate, label="Ollama"
        )

    # -- embeddings -------------------------------------------------------------------------------------

    def embed(self, *, model: str, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], CallMetrics]:
        """One batched `/api/embed` call; vectors come back in input order (L2-normalised by Ollama).

        An empty batch makes no request: there is nothing to embed and Ollama would answer `[]` anyway.
        """
        if not inputs:
            return [], CallMetrics(model=model, endpoint="/api/embed", wall_s=0.0, attempts=0, host=self.shown_url)
        body = {"model": model, "input": list(inputs), "truncate": truncate, "keep_alive": self.keep_alive}
        answer = self._call("POST", "/api/embed", body=body, model=model)
        metrics = CallMetrics.from_response(
            answer.payload, model=model, endpoint="/api/embed", wall_s=answer.wall_s, attempts=answer.attempts,
            host=self.shown_url,
        )
        vectors = answer.payload.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(inputs):
            got = len(vectors) if isinstance(vectors, list) else "no"
            reason = f"Ollama returned {got} embeddings for {len(inputs)} inputs"
            raise LlmInvalidAnswer(
                f"Ollama model '{model}': {reason}", reason=reason, raw=None, kind="embed_count", metrics=[metrics]
            )
        return [[float(x) for x in vec] for vec in vectors], metrics

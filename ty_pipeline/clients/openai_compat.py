"""The OpenAI-compatible backend of the LLM client (`TY_LLM_BACKEND=openai`; Dagster-free).

Why: vLLM, SGLang, llama.cpp's server, LM Studio and Ollama's own `/v1` all speak
`POST /v1/chat/completions`; batch servers such as vLLM run many more calls at once than Ollama (issue
#11). This client has the same methods and the same behaviour as `OllamaClient`: the error taxonomy,
the retry policy, the metrics and the one corrective retry come from `llm_base.py`; what is its own:

* structured output through `response_format` `{"type": "json_schema", "json_schema": {"name", "schema",
  "strict": true}}`, the schema conformed to OpenAI's strict rules (`domain/strict_schema.py`: every
  object closed and fully `required`; OpenAI answers 400 otherwise); the content is still a JSON string
  to parse and validate;
* options in Ollama's names are mapped: `num_predict` -> `max_tokens`, `temperature`, `seed`, `top_p`
  pass through; `num_ctx` is not sent (the context length is the server's setting, e.g. vLLM
  `--max-model-len`); `finish_reason == "length"` is the cut-off verdict;
* `usage.prompt_tokens` / `completion_tokens` / `prompt_tokens_details.cached_tokens` become
  `CallMetrics.prompt_eval_count` / `eval_count` / `cached_prompt_tokens`; `finish_reason` `done_reason`;
* model names are exact (no `:latest` aliasing): `GET /v1/models` for the preflight;
* errors in the OpenAI shape `{"error": {"message", ...}}` and the legacy vLLM `{"object": "error",
  "message", ...}`; 401/403 name `TY_LLM_API_KEY` (never the key itself), 404 for a model is
  `LlmModelMissing`;
* `stream=True` reads server-sent events: a long generation then keeps its connection busy, and the
  read timeout bounds the silence between two pieces instead of the whole generation.

Wire format: docs/wire_formats.md §4.8-4.9.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from pydantic import BaseModel

from ty_pipeline.clients.llm_base import (
    DEFAULT_CHAT_OPTIONS,
    MAX_RAW_IN_MESSAGE,
    Answer,
    CallMetrics,
    Exchange,
    LlmInvalidAnswer,
    LlmModelMissing,
    LlmRequestError,
    PooledHttpClient,
    Request,
    ServerWords,
    chat_with_one_correction,
    count,
    error_body_text,
    error_message_of,
    send,
)
from ty_pipeline.clients.retry_policy import TransientFailure
from ty_pipeline.domain.strict_schema import openai_strict_schema
from ty_pipeline.domain.urls import redact_secrets_of

log = logging.getLogger(__name__)

USER_AGENT = "ty_pipeline-openai-client/1.0"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
EMBED_PATH = "/v1/embeddings"
LABEL = "OpenAI-compatible server"
PASSED_OPTIONS = ("temperature", "seed", "top_p", "presence_penalty", "frequency_penalty", "stop")
"""Options with the same name and meaning on both APIs; the rest of Ollama's `options` has no
OpenAI-compatible counterpart (or, like `num_ctx`, is fixed when the server starts)."""

OPENAI_WORDS = ServerWords(
    label=LABEL,
    start_hint="Start the server (e.g. `vllm serve <model>`) or point OLLAMA_HOST at its URL.",
    log_hint="the server's log",
)

_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9_-]")


def normalize_base_url(url: str) -> str:
    """The server's root: `http://host:8000` and `http://host:8000/v1` are the same server (clients differ
    in which one they document), so a trailing `/v1` is dropped and never doubled. A bare `host:port`
    gets `http://`."""
    value = url.strip().rstrip("/")
    if not value:
        raise ValueError("the OpenAI-compatible server's URL is empty: set OLLAMA_HOST (e.g. http://gpu-box:8000)")
    if "://" not in value:
        value = f"http://{value}"
    if value.endswith("/v1"):
        value = value[: -len("/v1")]
    return value


def chat_options(options: dict[str, Any]) -> dict[str, Any]:
    """Ollama-named options as chat-completion fields (see `PASSED_OPTIONS`)."""
    mapped = {key: options[key] for key in PASSED_OPTIONS if options.get(key) is not None}
    if options.get("num_predict") is not None:
        mapped["max_tokens"] = options["num_predict"]
    return mapped


def schema_name(schema: dict[str, Any]) -> str:
    """`json_schema.name` must match `^[a-zA-Z0-9_-]{1,64}$` on OpenAI's API; the model's class name is
    a readable choice (servers may show it in their logs)."""
    title = schema.get("title")
    name = _SCHEMA_NAME.sub("_", title)[:64] if isinstance(title, str) and title else ""
    return name or "answer"


def strict_response_format(json_schema: dict[str, Any]) -> dict[str, Any]:
    """The `response_format` for a pydantic schema: conformed to OpenAI's strict rules (every object
    closed and fully `required`, no `default`), and `strict: true` unless the schema cannot be strict
    without changing the answer's shape (the summary grade's root `anyOf`). Such a schema goes out with
    `strict: false`, which OpenAI accepts as guidance while vLLM, SGLang and llama.cpp, which ignore
    `strict`, still constrain decoding to all of it. The Ollama client sends the schema unchanged."""
    conformed, not_strict = openai_strict_schema(json_schema)
    return {
        "type": "json_schema",
        "json_schema": {"name": schema_name(json_schema), "schema": conformed, "strict": not_strict is None},
    }


def metrics_from_completion(
    payload: dict[str, Any], *, model: str, endpoint: str, wall_s: float, attempts: int, host: str
) -> CallMetrics:
    """`usage` and `finish_reason` of a chat completion (or an embeddings answer) as `CallMetrics`."""
    raw_usage = payload.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    choice = _first_choice(payload)
    reason = choice.get("finish_reason")
    return CallMetrics(
        model=model, endpoint=endpoint, wall_s=wall_s, attempts=attempts,
        prompt_eval_count=count(usage.get("prompt_tokens")), eval_count=count(usage.get("completion_tokens")),
        done_reason=reason if isinstance(reason, str) else None, cached_prompt_tokens=cached, host=host,
    )


def _first_choice(payload: dict[str, Any]) -> dict[str, Any]:
    choices = payload.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return {}


class OpenAICompatClient(PooledHttpClient):
    """Thread-safe: share one instance between the workers of a run (the session pool is sized for it).

    `api_key` is sent as `Authorization: Bearer ...` when set; it is never part of a message, a log line
    or `repr`.
    """

    words = OPENAI_WORDS

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 180.0,
        max_retries: int = 4,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        pool_size: int = 8,
        stream: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connect(
            normalize_base_url(base_url), user_agent=USER_AGENT, connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s, max_retries=max_retries, backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s, pool_size=pool_size, sleep=sleep,
        )
        self.stream = stream
        self._api_key = api_key or None
        if self._api_key:
            self.session.headers["Authorization"] = f"Bearer {self._api_key}"


    # -- HTTP -------------------------------------------------------------------------------------------

    def _safe(self, text: str) -> str:
        """Text about a request without the URL's credentials and without the API key (servers and
        libraries may echo either)."""
        out = redact_secrets_of(text, self.base_url)
        if self._api_key:
            out = out.replace(self._api_key, "<redacted>")
        return out

    def _auth_error(self, status: int, what: str, text: str, metrics: list[CallMetrics]) -> LlmRequestError:
        if self._api_key:
            advice = ("the API key in TY_LLM_API_KEY was rejected: set it to a key this server accepts "
                      "(vLLM/llama.cpp `--api-key`)")
        else:
            advice = ("the server requires an API key and TY_LLM_API_KEY is not set: set it to the server's key "
                      "(vLLM/llama.cpp `--api-key`)")
        return LlmRequestError(
            f"{LABEL} at {self.shown_url} refused {what}: HTTP {status}: {text}. {advice}.",
            status=status, error=text, metrics=metrics,
        )

    def _model_missing(self, model: str, text: str, metrics: list[CallMetrics]) -> LlmModelMissing:
        return LlmModelMissing(
            f"{LABEL} at {self.shown_url} does not serve model '{model}' (server said: {text}). Names must match "
            "exactly: serve it under that name (vLLM `--served-model-name`, llama.cpp `--alias`) or change the "
            "model setting.",
            models=[model], metrics=metrics,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        model: str | None = None,
        max_retries: int | None = None,
        stream: bool = False,
    ) -> Answer:
        """One logical request with the retry policy (`PooledHttpClient.with_retries`); returns the
        decoded JSON object (a streamed chat completion assembled into the non-streamed shape). Raises
        typed errors only."""

        def attempt(request: Request, number: int) -> dict[str, Any]:
            resp = send(self.session, method, request.url, body=body, timeout=self.timeout, safe=self._safe,
                        stream=stream)
            try:
                status = resp.status_code
                if status == 200:
                    return self._read_answer(resp)
                text = self._safe(error_body_text(resp))
                if status == 429 or status >= 500:
                    raise TransientFailure(f"HTTP {status}: {text}", status=status,
                                           retry_after=resp.headers.get("Retry-After"))
                if status in (401, 403):
                    raise self._auth_error(status, request.what, text, request.failed_metrics(number))
                if status == 404 and model is not None and ("model" in text.lower() or model in text):
                    raise self._model_missing(model, text, request.failed_metrics(number))
                hint = (" Is the URL the server's root or its /v1 (e.g. http://gpu-box:8000)?"
                        if status in (404, 405) else "")
                raise LlmRequestError(
                    f"{LABEL} at {self.shown_url} rejected {request.what}: HTTP {status}: {text}.{hint}",
                    status=status, error=text, metrics=request.failed_metrics(number),
                )
            finally:
                resp.close()

        return self.with_retries(method, path, attempt, model=model, max_retries=max_retries)

    def _read_answer(self, resp: requests.Response) -> dict[str, Any]:
        """A 200's body: JSON, or server-sent events when the server streams (it may also ignore `stream`)."""
        content_type = resp.headers.get("Content-Type", "")
        try:
            if content_type.startswith("text/event-stream"):
                return _assemble_stream(resp.iter_lines())
            raw = resp.content
        except requests.RequestException as exc:
            raise TransientFailure(f"the answer broke off while it was read: {self._safe(str(exc))}") from None
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise TransientFailure(f"HTTP 200 with a body that is not JSON ({exc})", status=200) from None
        if not isinstance(payload, dict) or error_message_of(payload) is not None:
            text = self._safe(raw.decode("utf-8", "replace")[:MAX_RAW_IN_MESSAGE])
            raise TransientFailure(f"HTTP 200 with an error body: {text}", status=200)
        return payload

    # -- server information -----------------------------------------------------------------------------

    def _model_cards(self, *, max_retries: int | None = None) -> list[dict[str, Any]]:
        answer = self._call("GET", MODELS_PATH, max_retries=max_retries)
        data = answer.payload.get("data") or []
        return [card for card in data if isinstance(card, dict) and card.get("id")]

    def version(self, *, max_retries: int | None = None) -> str:
        """These servers have no version endpoint: `openai-compatible (<owned_by>)` says what answered as
        far as `/v1/models` tells (vLLM: `openai-compatible (vllm)`)."""
        return _describe(self._model_cards(max_retries=max_retries))

    def list_models(self, *, max_retries: int | None = None) -> list[str]:
        return [str(card["id"]) for card in self._model_cards(max_retries=max_retries)]

    def preflight(self, models: Iterable[str]) -> str:
        """Fail fast: is the server there, does it serve every model this run needs (exact names)?

        One `GET /v1/models` with at most one retry; returns what `version()` returns.
        """
        cards = self._model_cards(max_retries=min(1, self.max_retries))
        served = {str(card["id"]) for card in cards}
        wanted = list(dict.fromkeys(m for m in models if m))
        missing = [m for m in wanted if m not in served]
        if missing:
            have = ", ".join(sorted(served)) or "none"
            raise LlmModelMissing(
                f"{LABEL} at {self.shown_url} does not serve {len(missing)} model(s) this run needs: "
                f"{', '.join(missing)}. It serves: {have}. Names must match exactly (no `:latest` aliasing): "
                "serve the models under these names (vLLM `--served-model-name`, llama.cpp `--alias`) or "
                "change the model settings.",
                models=missing, status=None,
            )
        return _describe(cards)

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
        """Ask for JSON in `schema` (sent as a strict `response_format` json_schema) and return the
        validated object; an unusable answer gets one corrective retry, as on Ollama."""
        merged = chat_options({**DEFAULT_CHAT_OPTIONS, **(options or {})})
        response_format = strict_response_format(schema.model_json_schema())

        def exchange(conversation: list[dict[str, Any]]) -> Exchange:
            body: dict[str, Any] = {"model": model, "messages": conversation, "response_format": response_format,
                                    **merged, "stream": self.stream}
            if self.stream:
                body["stream_options"] = {"include_usage": True}
            answer = self._call("POST", CHAT_PATH, body=body, model=model, stream=self.stream)
            metrics = metrics_from_completion(
                answer.payload, model=model, endpoint=CHAT_PATH, wall_s=answer.wall_s, attempts=answer.attempts,
                host=self.shown_url,
            )
            choice = _first_choice(answer.payload)
            message = choice.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            cut_off = None
            if choice.get("finish_reason") == "length":
                cut_off = f"finish_reason=length, max_tokens={merged.get('max_tokens')}"
            return Exchange(content if isinstance(content, str) else None, metrics, cut_off)

        return chat_with_one_correction(
            exchange, model=model, messages=messages, schema=schema, validate=validate, label=LABEL
        )

    # -- embeddings -------------------------------------------------------------------------------------

    def embed(self, *, model: str, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], CallMetrics]:
        """One batched `POST /v1/embeddings`; vectors in input order (the answer's `index` decides, not
        the order of `data`). `truncate` is accepted for interface parity: truncation is a server setting."""
        if not inputs:
            return [], CallMetrics(model=model, endpoint=EMBED_PATH, wall_s=0.0, attempts=0, host=self.shown_url)
        answer = self._call("POST", EMBED_PATH, body={"model": model, "input": list(inputs)}, model=model)
        metrics = metrics_from_completion(
            answer.payload, model=model, endpoint=EMBED_PATH, wall_s=answer.wall_s, attempts=answer.attempts,
            host=self.shown_url,
        )
        data = answer.payload.get("data")
        items = [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []
        indexes = sorted(d["index"] for d in items if isinstance(d.get("index"), int))
        if len(items) != len(inputs) or indexes != list(range(len(inputs))):
            reason = f"{LABEL} returned {len(items)} embeddings (indexes {indexes[:10]}) for {len(inputs)} inputs"
            raise LlmInvalidAnswer(
                f"{LABEL} model '{model}': {reason}", reason=reason, raw=None, kind="embed_count", metrics=[metrics]
            )
        ordered = sorted(items, key=lambda d: d["index"])
        return [[float(x) for x in d.get("embedding") or []] for d in ordered], metrics


def _describe(cards: list[dict[str, Any]]) -> str:
    owners = sorted({str(card["owned_by"]) for card in cards if card.get("owned_by")})
    return f"openai-compatible ({', '.join(owners)})" if owners else "openai-compatible"


def _assemble_stream(lines: Iterable[bytes]) -> dict[str, Any]:
    """Server-sent chat-completion chunks as one non-streamed answer (`choices[0].message.content`,
    `finish_reason`, `usage` from the final usage chunk). A stream without `data: [DONE]` was cut off."""
    pieces: list[str] = []
    finish: str | None = None
    usage: dict[str, Any] = {}
    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if not line.startswith("data:"):
            continue  # blank separators, `: ping` comments, `event:` / `id:` fields
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                                 "finish_reason": finish}], "usage": usage}
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise TransientFailure(f"a streamed chunk is not JSON ({exc})", status=200) from None
        problem = error_message_of(chunk)
        if problem is not None:
            raise TransientFailure(f"the server reported an error while streaming: {problem}", status=200)
        choice = _first_choice(chunk) if isinstance(chunk, dict) else {}
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            pieces.append(delta["content"])
        if isinstance(choice.get("finish_reason"), str):
            finish = choice["finish_reason"]
        if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
    raise TransientFailure("the answer stream ended without `data: [DONE]` (cut off)")

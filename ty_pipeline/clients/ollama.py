"""The Ollama HTTP client every LLM and embedding call goes through (Dagster-free; the resource is
`ty_pipeline.resources.ollama`).

Why a small client of our own instead of the `ollama` package or the OpenAI-compatible endpoint: the
replaced system spawned a process per LLM call (19-hour nights) and lost answers to silent failures
(docs/domain_rules.md §10). This client keeps one pooled `requests.Session` (safe to share between the worker
threads of an asset), sends every request with explicit (connect, read) timeouts, retries only what a
retry can fix, and turns everything else into a typed error whose message says what to do:

* transient (timeouts, dropped connections, HTTP 5xx, 503 "server busy", 429): retried with
  exponential backoff and full jitter, `Retry-After` honoured; still failing -> `OllamaTransientError`,
  or `OllamaUnavailable` when the server could not be reached at all;
* permanent: 404 "model not found" -> `OllamaModelMissing` (says `ollama pull <model>`), any other 4xx
  -> `OllamaRequestError` with Ollama's own `{"error": ...}` message, without a retry;
* a structured answer that is not JSON, breaks the schema, was cut off (`done_reason == "length"`) or
  is rejected by the caller's validator gets exactly one corrective retry in the same conversation;
  still invalid -> `OllamaInvalidAnswer`. Nothing invalid is ever returned as if it were an answer.

Non-streaming calls are used throughout (`stream: false`): Ollama then sends nothing until the whole
answer is generated, so the read timeout bounds the generation time of one call.
Wire format: docs/wire_formats.md §4.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from pydantic import BaseModel, ValidationError
from requests.adapters import HTTPAdapter

from ty_pipeline.clients.http_retry import parse_retry_after
from ty_pipeline.domain.urls import redact_secrets_of, redact_url

log = logging.getLogger(__name__)

DEFAULT_OLLAMA_HOST = "http://localhost:11434"
DEFAULT_PORT = 11434
DEFAULT_CHAT_OPTIONS: dict[str, Any] = {"temperature": 0, "seed": 42, "num_ctx": 8192, "num_predict": 1024}
"""Reproducible answers (temperature 0, fixed seed) and an explicit context window: the server's
default depends on its VRAM (docs/wire_formats.md §4.1), so leaving it out makes results machine-dependent."""

USER_AGENT = "ty_pipeline-ollama-client/1.0"
MAX_ERROR_BODY_CHARS = 300
MAX_RAW_IN_MESSAGE = 200


# -- errors -----------------------------------------------------------------------------------------------


class OllamaError(Exception):
    """Base of every Ollama failure. `str()` is a message a user can act on.

    `metrics` holds one `CallMetrics` per model call made before the failure (corrective retries and
    the failed call included), so the cost of failed postings is still accounted for.
    """

    def __init__(self, message: str, *, status: int | None = None, metrics: list[CallMetrics] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.metrics: list[CallMetrics] = list(metrics or [])

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments break Exception's default pickling; keep every attribute.
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(cls: type[OllamaError], args: tuple[Any, ...], state: dict[str, Any]) -> OllamaError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class OllamaUnavailable(OllamaError):
    """No answer from the server at all (connection refused, dropped, connect timeout), after retries."""


class OllamaConnectionReset(OllamaUnavailable):
    """The server accepted the connection and then reset or closed it without an answer, after retries.

    Not "start `ollama serve`": something is listening. A crash of the model runner, a proxy or load
    balancer cutting the request, or an overloaded host does this; the server's own log says which.
    Like `OllamaUnavailable` it is a server failure: a run stops and charges no posting for it.
    """


class OllamaModelMissing(OllamaError):
    """A model the run needs is not installed on the server. Retrying cannot fix that; pulling can."""

    def __init__(self, message: str, *, models: list[str], status: int | None = 404,
                 metrics: list[CallMetrics] | None = None) -> None:
        super().__init__(message, status=status, metrics=metrics)
        self.models = list(models)


class OllamaRequestError(OllamaError):
    """A permanent 4xx: the request itself is wrong (bad option, unsupported capability, ...)."""

    def __init__(self, message: str, *, status: int | None = None, error: str | None = None,
                 metrics: list[CallMetrics] | None = None) -> None:
        super().__init__(message, status=status, metrics=metrics)
        self.error = error  # Ollama's own `error` text


class OllamaTransientError(OllamaError):
    """Timeouts / 5xx / 503 / 429 that outlasted every retry: the server is up but not coping."""


class OllamaInvalidAnswer(OllamaError):
    """The model answered, but not usably, even after the one corrective retry.

    `reason` is the problem with the last answer in words (also what the corrective message told the
    model), `kind` a stable code for grouping (`not_json`, `schema_violation`, `length`, `rejected`,
    `embed_count`), `raw` the last answer's content exactly as received.
    """

    def __init__(self, message: str, *, reason: str, raw: str | None, kind: str = "invalid",
                 metrics: list[CallMetrics] | None = None) -> None:
        super().__init__(message, metrics=metrics)
        self.reason = reason
        self.raw = raw
        self.kind = kind


# -- metrics ----------------------------------------------------------------------------------------------


def _ns_to_s(value: Any) -> float:
    return float(value) / 1e9 if isinstance(value, int | float) else 0.0


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


@dataclass
class CallMetrics:
    """One model call (one HTTP exchange that reached a verdict, retries of that exchange included).

    Ollama reports durations as integer nanoseconds and omits zero values (docs/wire_formats.md §4.2); missing
    keys become 0 / None here so sums over many calls never fail on a gap.
    """

    model: str
    endpoint: str
    wall_s: float
    attempts: int
    total_duration_s: float = 0.0
    load_duration_s: float = 0.0
    prompt_eval_count: int = 0
    eval_count: int = 0
    eval_duration_s: float = 0.0
    done_reason: str | None = None
    prompt_eval_duration_s: float = 0.0

    @classmethod
    def from_response(
        cls, payload: dict[str, Any], *, model: str, endpoint: str, wall_s: float, attempts: int
    ) -> CallMetrics:
        reason = payload.get("done_reason")
        return cls(
            model=model,
            endpoint=endpoint,
            wall_s=wall_s,
            attempts=attempts,
            total_duration_s=_ns_to_s(payload.get("total_duration")),
            load_duration_s=_ns_to_s(payload.get("load_duration")),
            prompt_eval_count=_count(payload.get("prompt_eval_count")),
            eval_count=_count(payload.get("eval_count")),
            eval_duration_s=_ns_to_s(payload.get("eval_duration")),
            done_reason=reason if isinstance(reason, str) else None,
            prompt_eval_duration_s=_ns_to_s(payload.get("prompt_eval_duration")),
        )

    @property
    def tokens_per_s(self) -> float:
        """Generation speed as Ollama defines it: eval_count / eval_duration."""
        return self.eval_count / self.eval_duration_s if self.eval_duration_s > 0 else 0.0


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


def _was_reset(exc: BaseException) -> bool:
    """True when a connection error happened after the connection was made: reset (RST), aborted, or
    closed by the server before any answer. Refused connections, DNS failures and connect timeouts
    are not resets: then nothing is listening at the address."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        err = todo.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ConnectionRefusedError | socket.gaierror | urllib3.exceptions.NewConnectionError
                      | urllib3.exceptions.ConnectTimeoutError):
            return False
        if isinstance(err, ConnectionResetError | ConnectionAbortedError | http.client.RemoteDisconnected
                      | urllib3.exceptions.ProtocolError):
            return True
        todo.extend([*err.args, err.__cause__, err.__context__, getattr(err, "reason", None)])
    return False


def _ollama_error_text(resp: requests.Response) -> str:
    """Ollama's `{"error": "..."}` message, or the start of whatever else the body was."""
    try:
        payload = resp.json()
    except ValueError:
        return resp.text[:MAX_ERROR_BODY_CHARS].strip() or resp.reason or ""
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])
    return json.dumps(payload, ensure_ascii=False)[:MAX_ERROR_BODY_CHARS]


def _short(text: str | None, limit: int = MAX_RAW_IN_MESSAGE) -> str:
    if text is None:
        return "<none>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _schema_errors(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {err.get('msg')}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


@dataclass
class _Answer:
    payload: dict[str, Any]
    attempts: int
    wall_s: float


@dataclass
class _Verdict:
    obj: BaseModel | None
    kind: str | None = None
    reason: str | None = None


# -- the client -------------------------------------------------------------------------------------------


class OllamaClient:
    """Thread-safe: share one instance between the workers of a run (the session pool is sized for it)."""

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
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {max_retries}")
        self.base_url = normalize_host(base_url)
        # What messages, logs and metadata show: scheme://host:port, never a credential in the URL.
        self.shown_url = redact_url(self.base_url)
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.keep_alive = keep_alive
        self.sleep = sleep
        self._rng = random.Random()
        self._rng_lock = threading.Lock()
        self.session = requests.Session()
        # max_retries=0: urllib3 must not retry behind our back (a POST retried twice = two generations).
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"OllamaClient({self.shown_url!r})"

    # -- HTTP policy (the one place every call goes through) ------------------------------------------

    def backoff_delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based): the server's `Retry-After` if it sent
        one, else full jitter on a capped exponential, so parallel workers do not retry in lockstep."""
        if retry_after:
            parsed = parse_retry_after(retry_after)
            if parsed is not None:
                return min(parsed, self.backoff_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2**retry))
        with self._rng_lock:
            return self._rng.uniform(0, ceiling)

    def _safe(self, exc: BaseException) -> str:
        """A library exception's text without the credentials or query string of `OLLAMA_HOST`."""
        return redact_secrets_of(str(exc), self.base_url)

    def _unreachable_message(self, detail: str) -> str:
        return (
            f"Ollama at {self.shown_url} is not reachable: {detail}. "
            "Start it with `ollama serve` or set OLLAMA_HOST to the server's URL."
        )

    def _model_missing(self, model: str, server_text: str, metrics: list[CallMetrics]) -> OllamaModelMissing:
        return OllamaModelMissing(
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
    ) -> _Answer:
        """One logical request with the retry policy; returns the decoded JSON object.

        Raises typed errors only. When `model` is given, the error carries a `CallMetrics` for this
        call (attempts and wall time) so failed calls are counted too.
        """
        retries = self.max_retries if max_retries is None else max_retries
        url = f"{self.base_url}{path}"
        what = f"{method} {path}" + (f" (model {model})" if model else "")
        started = time.monotonic()
        last_error = "no attempt made"
        last_status: int | None = None
        never_answered = True  # no HTTP response and no read timeout on the latest attempt

        def failed_metrics(attempts: int) -> list[CallMetrics]:
            if model is None:
                return []
            return [CallMetrics(model=model, endpoint=path, wall_s=time.monotonic() - started, attempts=attempts)]

        for attempt in range(retries + 1):
            retry_after: str | None = None
            reset = False  # this attempt connected, then lost the connection without an answer
            try:
                resp = self.session.request(method, url, json=body, timeout=self.timeout)
            except requests.ConnectTimeout as exc:
                last_error, last_status, never_answered = f"connect timeout after {self.timeout[0]} s ({self._safe(exc)})", None, True
            except requests.ReadTimeout:
                last_error, last_status, never_answered = f"no answer within the read timeout of {self.timeout[1]} s", None, False
            except requests.ConnectionError as exc:
                reset = _was_reset(exc)
                kind = "connection reset by the server" if reset else "connection failed"
                last_error, last_status, never_answered = f"{kind}: {self._safe(exc)}", None, True
            except requests.RequestException as exc:  # e.g. ChunkedEncodingError: the answer was cut off
                last_error, last_status, never_answered = f"{type(exc).__name__}: {self._safe(exc)}", None, False
            else:
                status = resp.status_code
                never_answered = False
                if status == 200:
                    try:
                        payload = resp.json()
                    except ValueError as exc:
                        last_error, last_status = f"HTTP 200 with a body that is not JSON ({exc})", 200
                    else:
                        if isinstance(payload, dict) and "error" not in payload:
                            return _Answer(payload, attempt + 1, time.monotonic() - started)
                        last_error, last_status = f"HTTP 200 with an error body: {_short(resp.text)}", 200
                elif status == 429 or status >= 500:
                    last_error, last_status = f"HTTP {status}: {_ollama_error_text(resp)}", status
                    retry_after = resp.headers.get("Retry-After")
                else:
                    text = _ollama_error_text(resp)
                    if status == 404 and model is not None and "not found" in text.lower():
                        raise self._model_missing(model, text, failed_metrics(attempt + 1))
                    raise OllamaRequestError(
                        f"Ollama at {self.shown_url} rejected {what}: HTTP {status}: {text}",
                        status=status, error=text, metrics=failed_metrics(attempt + 1),
                    )
            if attempt < retries:
                delay = self.backoff_delay(attempt, retry_after)
                log.warning("Ollama %s failed: %s; retry %d/%d in %.1f s", what, last_error, attempt + 1, retries, delay)
                self.sleep(delay)

        attempts = retries + 1
        if never_answered and reset:
            raise OllamaConnectionReset(
                f"Ollama at {self.shown_url} reset the connection without an answer: {what} failed {attempts} "
                f"time(s); last error: {last_error}. The server is listening but dropped the request (a crash "
                "of the model runner, a proxy or load balancer in between, or an overloaded host): check the "
                "Ollama server log.",
                metrics=failed_metrics(attempts),
            )
        if never_answered:
            raise OllamaUnavailable(
                self._unreachable_message(f"{what} failed {attempts} time(s); last error: {last_error}"),
                metrics=failed_metrics(attempts),
            )
        raise OllamaTransientError(
            f"Ollama at {self.shown_url}: {what} failed {attempts} time(s) (timeouts / server errors); "
            f"last error: {last_error}",
            status=last_status, metrics=failed_metrics(attempts),
        )

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
            raise OllamaModelMissing(
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

        An unusable answer gets one corrective retry: the bad answer and a user message naming the
        problem are appended to the conversation, which fixes most slips of a small model cheaply.
        """
        merged_options = {**DEFAULT_CHAT_OPTIONS, **(options or {})}
        json_schema = schema.model_json_schema()
        conversation = list(messages)
        metrics: list[CallMetrics] = []
        verdict = _Verdict(None)
        content: str | None = None
        for round_no in range(2):
            body = {
                "model": model,
                "messages": conversation,
                "stream": False,
                "format": json_schema,
                "options": merged_options,
                "keep_alive": self.keep_alive,
            }
            try:
                answer = self._call("POST", "/api/chat", body=body, model=model)
            except OllamaError as exc:
                exc.metrics = [*metrics, *exc.metrics]
                raise
            metrics.append(
                CallMetrics.from_response(
                    answer.payload, model=model, endpoint="/api/chat", wall_s=answer.wall_s, attempts=answer.attempts
                )
            )
            message = answer.payload.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            verdict = self._judge(content, answer.payload, schema, validate, merged_options)
            if verdict.obj is not None:
                return verdict.obj, metrics
            assert verdict.reason is not None
            if round_no == 0:
                log.info("Ollama %s gave an unusable answer (%s); asking once more", model, verdict.kind)
                conversation = [
                    *messages,
                    {"role": "assistant", "content": content or ""},
                    {"role": "user", "content": corrective_message(verdict.reason)},
                ]
        assert verdict.reason is not None and verdict.kind is not None
        raise OllamaInvalidAnswer(
            f"Ollama model '{model}' gave no usable answer, even after one corrective retry: {verdict.reason} "
            f"(last answer: {_short(content)!r})",
            reason=verdict.reason, raw=content, kind=verdict.kind, metrics=metrics,
        )

    @staticmethod
    def _judge(
        content: Any,
        payload: dict[str, Any],
        schema: type[BaseModel],
        validate: Callable[[BaseModel], str | None] | None,
        options: dict[str, Any],
    ) -> _Verdict:
        if payload.get("done_reason") == "length":
            limit = options.get("num_predict")
            return _Verdict(
                None, "length",
                f"the answer was cut off at the output limit (done_reason=length, num_predict={limit}); "
                "it is incomplete JSON",
            )
        if not isinstance(content, str) or not content.strip():
            return _Verdict(None, "not_json", "the answer was empty instead of a JSON object")
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            return _Verdict(None, "not_json", f"the answer is not valid JSON ({exc})")
        try:
            obj = schema.model_validate(data)
        except ValidationError as exc:
            return _Verdict(None, "schema_violation", f"the JSON does not match the schema: {_schema_errors(exc)}")
        if validate is not None:
            problem = validate(obj)
            if problem:
                return _Verdict(None, "rejected", problem)
        return _Verdict(obj)

    # -- embeddings -------------------------------------------------------------------------------------

    def embed(self, *, model: str, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], CallMetrics]:
        """One batched `/api/embed` call; vectors come back in input order (L2-normalised by Ollama).

        An empty batch makes no request: there is nothing to embed and Ollama would answer `[]` anyway.
        """
        if not inputs:
            return [], CallMetrics(model=model, endpoint="/api/embed", wall_s=0.0, attempts=0)
        body = {"model": model, "input": list(inputs), "truncate": truncate, "keep_alive": self.keep_alive}
        answer = self._call("POST", "/api/embed", body=body, model=model)
        metrics = CallMetrics.from_response(
            answer.payload, model=model, endpoint="/api/embed", wall_s=answer.wall_s, attempts=answer.attempts
        )
        vectors = answer.payload.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(inputs):
            got = len(vectors) if isinstance(vectors, list) else "no"
            reason = f"Ollama returned {got} embeddings for {len(inputs)} inputs"
            raise OllamaInvalidAnswer(
                f"Ollama model '{model}': {reason}", reason=reason, raw=None, kind="embed_count", metrics=[metrics]
            )
        return [[float(x) for x in vec] for vec in vectors], metrics


def corrective_message(reason: str) -> str:
    """What the model is told after an unusable answer.

    Validators of this project already phrase their text for the model ("Your previous answer cannot
    be used ..."); that is passed on unchanged. Short reasons are wrapped into an instruction.
    """
    if reason.lower().startswith("your previous answer"):
        return reason
    return (
        f"Your previous answer cannot be used: {reason}.\n"
        "Answer again with only one complete JSON object that follows the required schema."
    )

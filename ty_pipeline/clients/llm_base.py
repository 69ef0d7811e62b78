"""What every LLM backend shares (Dagster-free): the error taxonomy, `CallMetrics`, the one HTTP retry
policy, and the judging of structured answers with one corrective retry.

Why one module: the pipelines must behave the same whichever server answers (`TY_LLM_BACKEND=ollama` or
`openai`, issue #11): the same errors decide "charge the posting" vs "stop the run", the same verdicts
decide what is saved, the same metrics feed the run report. A backend (`clients/ollama.py`,
`clients/openai_compat.py`) only knows its wire format: how to send one exchange and read its answer.

* transient (timeouts, dropped connections, HTTP 5xx, 429): retried by the shared `BackoffRetry` (tenacity) with
  exponential backoff and full jitter, `Retry-After` honoured; still failing -> `LlmTransientError`, or
  `LlmUnavailable` / `LlmConnectionReset` when the server never answered at all;
* permanent 4xx: raised at once by the backend as `LlmModelMissing` or `LlmRequestError`;
* a structured answer that is not JSON, breaks the schema, was cut off at the output limit or is rejected
  by the caller's validator gets exactly one corrective retry in the same conversation; still invalid ->
  `LlmInvalidAnswer`. Nothing invalid is ever returned as if it were an answer.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import requests
import urllib3
from pydantic import BaseModel, ValidationError
from requests.adapters import HTTPAdapter

from ty_pipeline.clients.retry_policy import (
    BackoffRetry,
    RetriesExhausted,
    TransientFailure,
)
from ty_pipeline.domain.text_clean import clean_payload, strip_unstorable
from ty_pipeline.domain.urls import redact_url

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_CHAT_OPTIONS: dict[str, Any] = {"temperature": 0, "seed": 42, "num_ctx": 8192, "num_predict": 1024}
"""Reproducible answers (temperature 0, fixed seed) and explicit limits, in Ollama's option names (the
OpenAI-compatible backend maps them: `num_predict` -> `max_tokens`; `num_ctx` is the server's setting
there). Ollama's default context depends on its VRAM (docs/wire_formats.md §4.1), so it is always sent."""

MAX_ERROR_BODY_CHARS = 300
MAX_RAW_IN_MESSAGE = 200


# -- errors -----------------------------------------------------------------------------------------------


class LlmError(Exception):
    """Base of every LLM server failure. `str()` is a message a user can act on.

    `metrics` holds one `CallMetrics` per model call made before the failure (corrective retries and
    the failed call included), so the cost of failed postings is still accounted for.
    """

    def __init__(self, message: str, *, status: int | None = None, metrics: list[CallMetrics] | None = None) -> None:
        # The message may quote the server's error body or the model's answer, and ends up in `error`
        # columns and the event log: a NUL or a lone surrogate in it must not make the failure itself
        # unstorable (as for the job APIs' `SourceError`).
        super().__init__(strip_unstorable(message))
        self.status = status
        self.metrics: list[CallMetrics] = list(metrics or [])

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments break Exception's default pickling; keep every attribute.
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(cls: type[LlmError], args: tuple[Any, ...], state: dict[str, Any]) -> LlmError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class LlmUnavailable(LlmError):
    """No answer from the server at all (connection refused, dropped, connect timeout), after retries."""


class LlmConnectionReset(LlmUnavailable):
    """The server accepted the connection and then reset or closed it without an answer, after retries.

    Not "start the server": something is listening. A crash of the model runner, a proxy or load
    balancer cutting the request, or an overloaded host does this; the server's own log says which.
    Like `LlmUnavailable` it is a server failure: a run stops and charges no posting for it.
    """


class LlmModelMissing(LlmError):
    """A model the run needs is not served. Retrying cannot fix that; installing or serving it can."""

    def __init__(self, message: str, *, models: list[str], status: int | None = 404,
                 metrics: list[CallMetrics] | None = None) -> None:
        super().__init__(message, status=status, metrics=metrics)
        self.models = list(models)


class LlmRequestError(LlmError):
    """A permanent 4xx: the request itself is wrong (bad option, unsupported capability, missing key, ...)."""

    def __init__(self, message: str, *, status: int | None = None, error: str | None = None,
                 metrics: list[CallMetrics] | None = None) -> None:
        super().__init__(message, status=status, metrics=metrics)
        self.error = None if error is None else strip_unstorable(error)  # the server's own error text


class LlmTransientError(LlmError):
    """Timeouts / 5xx / 503 / 429 that outlasted every retry: the server is up but not coping."""


class LlmInvalidAnswer(LlmError):
    """The model answered, but not usably, even after the one corrective retry.

    `reason` is the problem with the last answer in words (also what the corrective message told the
    model), `kind` a stable code for grouping (`not_json`, `schema_violation`, `length`, `rejected`,
    `embed_count`), `raw` the last answer's content exactly as received.
    """

    def __init__(self, message: str, *, reason: str, raw: str | None, kind: str = "invalid",
                 metrics: list[CallMetrics] | None = None) -> None:
        super().__init__(message, metrics=metrics)
        self.reason = strip_unstorable(reason)  # stored with the error (`describe_error`)
        self.raw = raw
        self.kind = kind


# -- metrics ----------------------------------------------------------------------------------------------


def _ns_to_s(value: Any) -> float:
    return float(value) / 1e9 if isinstance(value, int | float) else 0.0


def count(value: Any) -> int:
    """A token counter from a server answer; anything that is not a number is 0 (counters are optional)."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


@dataclass
class CallMetrics:
    """One model call (one HTTP exchange that reached a verdict, retries of that exchange included).

    Both backends fill the same fields: Ollama's `prompt_eval_count` / `eval_count` / `done_reason`, or
    an OpenAI-compatible server's `usage.prompt_tokens` / `usage.completion_tokens` / `finish_reason`
    (and `usage.prompt_tokens_details.cached_tokens` as `cached_prompt_tokens`). The durations exist
    on Ollama only; missing values are 0 / None so sums over many calls never fail on a gap. `host`
    is the server's redacted URL (which server did the work, once there are several).
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
    cached_prompt_tokens: int = 0
    host: str = ""

    @classmethod
    def from_response(
        cls, payload: dict[str, Any], *, model: str, endpoint: str, wall_s: float, attempts: int, host: str = ""
    ) -> CallMetrics:
        """From an Ollama answer: durations are integer nanoseconds, zero ones omitted (docs/wire_formats.md §4.2)."""
        reason = payload.get("done_reason")
        return cls(
            model=model,
            endpoint=endpoint,
            wall_s=wall_s,
            attempts=attempts,
            total_duration_s=_ns_to_s(payload.get("total_duration")),
            load_duration_s=_ns_to_s(payload.get("load_duration")),
            prompt_eval_count=count(payload.get("prompt_eval_count")),
            eval_count=count(payload.get("eval_count")),
            eval_duration_s=_ns_to_s(payload.get("eval_duration")),
            done_reason=reason if isinstance(reason, str) else None,
            prompt_eval_duration_s=_ns_to_s(payload.get("prompt_eval_duration")),
            host=host,
        )

    @property
    def tokens_per_s(self) -> float:
        """Generation speed as Ollama defines it: eval_count / eval_duration (0 when the server gives no duration)."""
        return self.eval_count / self.eval_duration_s if self.eval_duration_s > 0 else 0.0


# -- small helpers ----------------------------------------------------------------------------------------


def short_text(text: str | None, limit: int = MAX_RAW_IN_MESSAGE) -> str:
    if text is None:
        return "<none>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def was_reset(exc: BaseException) -> bool:
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


def _schema_errors(exc: ValidationError, limit: int = 5) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {err.get('msg')}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# -- the HTTP retry policy (both backends): `clients/retry_policy.py`, shared with the job APIs ----------

LlmRetryPolicy = BackoffRetry  # the LLM clients' name for the shared policy (30 s cap on a wait)


@dataclass(frozen=True, slots=True)
class Answer:
    """A decoded JSON answer with what it took: the attempts made and the wall time over all of them."""

    payload: dict[str, Any]
    attempts: int
    wall_s: float


@dataclass(frozen=True, slots=True)
class Request:
    """One logical request as each of its attempts sees it."""

    url: str
    what: str  # how messages name it: "POST /api/chat (model qwen2.5:7b)"
    failed_metrics: Callable[[int], list[CallMetrics]]  # attempts -> the cost of the failed call


class PooledHttpClient:
    """What both LLM backends' clients share around their wire format: a pooled `requests.Session`
    closed with the client (also as a context manager), one logical request under the retry policy,
    the retry policy's waits, a redacted repr."""

    session: requests.Session
    retry: BackoffRetry
    shown_url: str
    words: ServerWords  # set by each backend: how its failures are worded

    def _connect(self, base_url: str, *, user_agent: str, connect_timeout_s: float, read_timeout_s: float,
                 max_retries: int, backoff_base_s: float, backoff_max_s: float, pool_size: int,
                 sleep: Callable[[float], None]) -> None:
        """Retry policy, timeouts, shown URL and a pooled session; `base_url` already normalised."""
        self.retry = BackoffRetry(
            max_retries=max_retries, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s, sleep=sleep
        )
        self.base_url = base_url
        # What messages, logs and metadata show: scheme://host:port, never a credential in the URL.
        self.shown_url = redact_url(base_url)
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.max_retries = max_retries
        self.session = requests.Session()
        # max_retries=0: urllib3 must not retry behind our back (a POST retried twice = two generations).
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown_url!r})"

    def backoff_delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based): see `BackoffRetry`."""
        return self.retry.backoff_delay(retry, retry_after)

    def failure_metrics(self, model: str | None, path: str) -> Callable[[int], list[CallMetrics]]:
        """For one request started now: `attempts -> [CallMetrics]` of its failure, so the cost of a failed
        call is counted too (none for requests that are not model calls)."""
        started = time.monotonic()

        def metrics(attempts: int) -> list[CallMetrics]:
            if model is None:
                return []
            return [CallMetrics(model=model, endpoint=path, wall_s=time.monotonic() - started, attempts=attempts,
                                host=self.shown_url)]

        return metrics

    def with_retries(
        self,
        method: str,
        path: str,
        attempt: Callable[[Request, int], dict[str, Any]],
        *,
        model: str | None = None,
        max_retries: int | None = None,
    ) -> Answer:
        """One logical request: `attempt(request, n)` makes HTTP attempt n and returns the decoded JSON
        object, raises `TransientFailure` to be retried, or a typed `LlmError` to stop at once.

        Retries that all fail become the backend's typed error (`exhausted_error`). When `model` is
        given, failures carry a `CallMetrics` for the call (attempts and wall time), so failed calls
        are counted too.
        """
        started = time.monotonic()
        request = Request(
            url=f"{self.base_url}{path}",
            what=f"{method} {path}" + (f" (model {model})" if model else ""),
            failed_metrics=self.failure_metrics(model, path),
        )
        try:
            payload, attempts = self.retry.run(
                lambda number: attempt(request, number), what=f"{self.words.label} {request.what}",
                max_retries=max_retries,
            )
        except RetriesExhausted as exhausted:
            raise exhausted_error(
                exhausted, words=self.words, shown_url=self.shown_url, what=request.what,
                metrics=request.failed_metrics(exhausted.attempts),
            ) from None
        return Answer(payload, attempts, time.monotonic() - started)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    timeout: tuple[float, float],
    safe: Callable[[str], str],
    body: dict[str, Any] | None = None,
    stream: bool = False,
) -> requests.Response:
    """One HTTP attempt; transport failures become `TransientFailure` with credentials removed by `safe`."""
    try:
        return session.request(method, url, json=body, timeout=timeout, stream=stream)
    except requests.ConnectTimeout as exc:
        raise TransientFailure(f"connect timeout after {timeout[0]} s ({safe(str(exc))})", never_answered=True) from None
    except requests.ReadTimeout:
        raise TransientFailure(f"no answer within the read timeout of {timeout[1]} s") from None
    except requests.ConnectionError as exc:
        reset = was_reset(exc)
        kind = "connection reset by the server" if reset else "connection failed"
        raise TransientFailure(f"{kind}: {safe(str(exc))}", never_answered=True, reset=reset) from None
    except requests.RequestException as exc:  # e.g. ChunkedEncodingError: the answer was cut off
        raise TransientFailure(f"{type(exc).__name__}: {safe(str(exc))}") from None


@dataclass(frozen=True)
class ServerWords:
    """How a backend's failures are worded: who failed and what the operator should do."""

    label: str  # "Ollama", "OpenAI-compatible server"
    start_hint: str  # what to do when nothing answers at the URL
    log_hint: str  # where to look after a reset


def exhausted_error(
    exhausted: RetriesExhausted, *, words: ServerWords, shown_url: str, what: str, metrics: list[CallMetrics]
) -> LlmError:
    """The typed error for a request whose retries all failed: reset, unreachable, or transient."""
    last, attempts = exhausted.last, exhausted.attempts
    if last.never_answered and last.reset:
        return LlmConnectionReset(
            f"{words.label} at {shown_url} reset the connection without an answer: {what} failed {attempts} "
            f"time(s); last error: {last.detail}. The server is listening but dropped the request (a crash "
            "of the model runner, a proxy or load balancer in between, or an overloaded host): check "
            f"{words.log_hint}.",
            metrics=metrics,
        )
    if last.never_answered:
        return LlmUnavailable(
            f"{words.label} at {shown_url} is not reachable: {what} failed {attempts} time(s); last error: "
            f"{last.detail}. {words.start_hint}",
            metrics=metrics,
        )
    return LlmTransientError(
        f"{words.label} at {shown_url}: {what} failed {attempts} time(s) (timeouts / server errors); "
        f"last error: {last.detail}",
        status=last.status, metrics=metrics,
    )


# -- structured answers: judging and the one corrective retry ---------------------------------------------


@dataclass
class Exchange:
    """One model call as a backend reports it: the answer text, whether the server stopped it at the
    output limit (`cut_off` says so in the server's own terms, e.g. `done_reason=length, num_predict=1024`),
    and the call's metrics."""

    content: str | None
    metrics: CallMetrics
    cut_off: str | None = None


@dataclass
class Verdict:
    obj: BaseModel | None
    kind: str | None = None
    reason: str | None = None


def judge_answer(
    content: Any,
    *,
    cut_off: str | None,
    schema: type[BaseModel],
    validate: Callable[[BaseModel], str | None] | None,
) -> Verdict:
    """Whether an answer is usable: complete, JSON, in the schema, and accepted by the caller's validator."""
    if cut_off is not None:
        return Verdict(None, "length", f"the answer was cut off at the output limit ({cut_off}); it is incomplete JSON")
    if not isinstance(content, str) or not content.strip():
        return Verdict(None, "not_json", "the answer was empty instead of a JSON object")
    try:
        # Cleaned before the schema sees it, like every API answer (domain/text_clean.py): a `\u0000` or a
        # lone `\ud800` escape the model wrote, or a stray control character, can neither fail a store nor
        # be saved; line breaks stay. A required text with nothing left then fails the schema or the
        # validator below, so it is asked again and never saved as an empty value.
        data = clean_payload(json.loads(content))
    except json.JSONDecodeError as exc:
        return Verdict(None, "not_json", f"the answer is not valid JSON ({exc})")
    try:
        obj = schema.model_validate(data)
    except ValidationError as exc:
        return Verdict(None, "schema_violation", f"the JSON does not match the schema: {_schema_errors(exc)}")
    if validate is not None:
        problem = validate(obj)
        if problem:
            return Verdict(None, "rejected", problem)
    return Verdict(obj)


def chat_with_one_correction(
    exchange: Callable[[list[dict[str, Any]]], Exchange],
    *,
    model: str,
    messages: list[dict[str, Any]],
    schema: type[BaseModel],
    validate: Callable[[BaseModel], str | None] | None,
    label: str,
) -> tuple[BaseModel, list[CallMetrics]]:
    """Ask, judge, and on an unusable answer ask once more in the same conversation.

    The bad answer and a user message naming the problem are appended, which fixes most slips of a small
    model cheaply. `exchange(conversation)` is the backend's single call; its `LlmError`s propagate with
    the metrics of the earlier calls in front.
    """
    conversation = list(messages)
    metrics: list[CallMetrics] = []
    verdict = Verdict(None)
    content: str | None = None
    for round_no in range(2):
        try:
            answer = exchange(conversation)
        except LlmError as exc:
            exc.metrics = [*metrics, *exc.metrics]
            raise
        metrics.append(answer.metrics)
        content = answer.content
        verdict = judge_answer(content, cut_off=answer.cut_off, schema=schema, validate=validate)
        if verdict.obj is not None:
            return verdict.obj, metrics
        assert verdict.reason is not None
        if round_no == 0:
            log.info("%s model %s gave an unusable answer (%s); asking once more", label, model, verdict.kind)
            conversation = [
                *messages,
                {"role": "assistant", "content": content or ""},
                {"role": "user", "content": corrective_message(verdict.reason)},
            ]
    assert verdict.reason is not None and verdict.kind is not None
    raise LlmInvalidAnswer(
        f"{label} model '{model}' gave no usable answer, even after one corrective retry: {verdict.reason} "
        f"(last answer: {short_text(content)!r})",
        reason=verdict.reason, raw=content, kind=verdict.kind, metrics=metrics,
    )


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


def error_body_text(resp: requests.Response) -> str:
    """The server's own error message from a non-2xx answer, in any of the shapes LLM servers use:
    Ollama `{"error": "..."}`, OpenAI `{"error": {"message": ...}}`, legacy vLLM `{"object": "error",
    "message": ...}`; else the start of whatever the body was."""
    try:
        payload = resp.json()
    except ValueError:
        return resp.text[:MAX_ERROR_BODY_CHARS].strip() or resp.reason or ""
    found = error_message_of(payload)
    if found is not None:
        return found
    return json.dumps(payload, ensure_ascii=False)[:MAX_ERROR_BODY_CHARS]


def error_message_of(payload: Any) -> str | None:
    """The error text of a decoded body, or None when the body is not an error."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        return str(error.get("message") or json.dumps(error, ensure_ascii=False)[:MAX_ERROR_BODY_CHARS])
    if payload.get("object") == "error":
        return str(payload.get("message") or "error")
    return None

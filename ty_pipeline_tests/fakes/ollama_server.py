"""A loopback fake of the Ollama server that speaks its real HTTP API (docs/wire_formats.md §4).

Why a fake server and not a mocked client: the production `OllamaClient` (pooled session, timeouts,
retries, corrective retry, error mapping) must be exercised over real HTTP exactly as against a real
server, and asset tests need an LLM that answers in milliseconds, deterministically, and misbehaves on
cue. Shapes follow the server code: durations are integer nanoseconds, `created_at` is RFC 3339 with
trimmed fractional digits, structured answers arrive as a JSON *string* in `message.content`,
`stream` defaults to true (NDJSON), errors are `{"error": msg}` with the real status codes and texts.

Routes: `GET|HEAD /`, `GET /api/version`, `GET /api/tags`, `GET /api/ps`, `POST /api/chat`,
`POST /api/generate`, `POST /api/embed`, `POST /api/embeddings` (legacy). Anything else: 404
`404 page not found` (Gin's text answer).

Scripting (see `FakeOllama`): installed `models`, a `responder(model, request_json)` for answers,
`latency_s` or a token-proportional `timing` model (slots, prefill/decode rates, prefix cache; see
`llm_timing.py`), a fault queue `fail_next(...)`, `stop_after(n)` for a server that dies mid-run, and
helpers over the request log (`chat_calls`, `intervals`, `max_overlap`) to assert retries and
concurrency by order and overlap instead of wall-clock time.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ty_pipeline_tests.fakes.http_base import LoopbackServer, Request, Response
from ty_pipeline_tests.fakes.llm_timing import CallTiming, LlmTiming, count_tokens

VERSION = "0.32.15"
DEFAULT_MODELS = ("qwen2.5:7b-instruct", "llama3.1:8b", "bge-m3")
EMBEDDING_ONLY = ("bge-m3", "nomic-embed-text")
DEFAULT_EMBED_DIM = 32

# Exact server texts (docs/wire_formats.md §4.6).
MSG_BUSY = "server busy, please try again.  maximum pending requests exceeded"  # two spaces, as in sched.go
MSG_RUNNER = "an error was encountered while running the model"
MSG_INPUT_TYPE = "invalid input type"
MSG_MODEL_REQUIRED = "model is required"
MSG_NO_BODY = "missing request body"
MSG_CONTEXT = "the input length exceeds the context length"
MSG_RATE = "too many requests"

MODEL_ENDPOINTS = ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings")
ANSWER_ENDPOINTS = ("/api/chat", "/api/generate")
TRANSPORT_KINDS = frozenset({"timeout", "refuse", "drop", "reset", "500", "503", "429", "404", "400"})
CONTENT_KINDS = frozenset({"not_json", "schema_violation", "degenerate", "length"})
FAULT_KINDS = TRANSPORT_KINDS | CONTENT_KINDS

NOT_JSON_CONTENT = 'Sure! Here is the JSON you asked for:\n{"'
DEGENERATE_WORD = "wichtig"
DEGENERATE_REPEATS = 300

Responder = Callable[[str, dict[str, Any]], "str | dict[str, Any] | list[Any] | Response"]


def canonical(name: str) -> str:
    """`name` and `name:latest` are one model to Ollama."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def rfc3339_now() -> str:
    """Go's `time.Time` JSON form: UTC, up to 9 fractional digits, trailing zeros trimmed."""
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def fake_vector(model: str, text: str, dim: int, *, normalise: bool = True) -> list[float]:
    """Deterministic pseudo-embedding from a hash of (model, text); L2-normalised like `/api/embed`."""
    raw = b""
    counter = 0
    while len(raw) < dim * 4:
        raw += hashlib.sha256(f"{model}\0{text}\0{counter}".encode()).digest()
        counter += 1
    values = [int.from_bytes(raw[i * 4 : i * 4 + 4], "big") / 2**31 - 1.0 for i in range(dim)]
    if not normalise:
        return [round(v * 7.5, 8) for v in values]  # legacy /api/embeddings: not normalised
    return l2(values)


def l2(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _tokens(text: str) -> int:
    """Rough token count (4 chars per token) for the eval counters."""
    return max(1, len(text) // 4)


def example_for_schema(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A minimal instance of a (pydantic-generated) JSON schema: the default answer when a test sets
    no responder. Honours $ref/$defs, enum/const, anyOf, min/max bounds and lengths."""
    if not isinstance(schema, dict) or depth > 20:
        return None
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return example_for_schema(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return example_for_schema(options[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or (kind is None and "properties" in schema):
        return {k: example_for_schema(v, root, depth + 1) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [example_for_schema(schema.get("items") or {"type": "string"}, root, depth + 1) for _ in range(count)]
    if kind == "string":
        text = "Beispiel"
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        text = text.ljust(low, "x")
        return text[: int(high)] if high is not None else text
    if kind in ("integer", "number"):
        value: float = 0
        if "minimum" in schema:
            value = schema["minimum"]
        elif "exclusiveMinimum" in schema:
            value = schema["exclusiveMinimum"] + 1
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return None


STRING_CONSTRAINTS = ("pattern", "enum", "const", "maxLength", "format")


def _resolve(schema: Any, root: Any) -> dict[str, Any]:
    """Follow $ref and take the first non-null anyOf/oneOf branch; {} when nothing is known."""
    for _ in range(20):
        if not isinstance(schema, dict):
            return {}
        if "$ref" in schema:
            target: Any = root
            for part in schema["$ref"].lstrip("#/").split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            schema = target
            continue
        branches = [b for b in schema.get("anyOf") or schema.get("oneOf") or [] if isinstance(b, dict)
                    and b.get("type") != "null"]
        if branches:
            schema = branches[0]
            continue
        return schema
    return {}


def _replace_strings(value: Any, replacement: str, schema: Any = None, root: Any = None) -> tuple[Any, bool]:
    """Replace the free-text strings of an answer. Strings the schema constrains (pattern, enum, ...) are
    kept and length-bounded ones are cut to their maxLength, so the result still fits the schema:
    degenerate text is the kind of bad answer only a validator can catch."""
    node = _resolve(schema, root)
    if isinstance(value, str):
        if any(key in node for key in STRING_CONSTRAINTS if key != "maxLength"):
            return value, False
        if "maxLength" in node:  # a constrained decoder still loops, only up to the length allowed
            return replacement[: int(node["maxLength"])].rstrip(), True
        return replacement, True
    if isinstance(value, dict):
        props = node.get("properties") or {}
        out, hit = {}, False
        for k, v in value.items():
            out[k], changed = _replace_strings(v, replacement, props.get(k), root)
            hit = hit or changed
        return out, hit
    if isinstance(value, list):
        pairs = [_replace_strings(v, replacement, node.get("items"), root) for v in value]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    return value, False


def faulty_content(kind: str, content: str, fmt: Any) -> str:
    """The bad answer of a content fault, given the good `content` and the request's JSON schema `fmt`
    (shared with the OpenAI-compatible fake)."""
    if kind == "not_json":
        return NOT_JSON_CONTENT
    if kind == "schema_violation":
        required = fmt.get("required") if isinstance(fmt, dict) else None
        return json.dumps({"kommentar": "Hier ist meine Antwort."}) if required else json.dumps(["kein", "Objekt"])
    if kind == "degenerate":
        repeated = " ".join([DEGENERATE_WORD] * DEGENERATE_REPEATS)
        try:
            base: Any = json.loads(content)
        except ValueError:
            base = None
        replaced, hit = _replace_strings(base, repeated, fmt, fmt)
        if not hit and isinstance(fmt, dict):
            replaced, hit = _replace_strings(example_for_schema(fmt), repeated, fmt, fmt)
        if not hit:
            replaced = {"text": repeated}
        return json.dumps(replaced, ensure_ascii=False)
    # length: the same answer, cut in the middle, so it is never complete JSON
    full = content if len(content) >= 4 else json.dumps({"text": "abgeschnitten"})
    return full[: max(1, len(full) // 2)]


@dataclass
class Fault:
    """One scripted misbehaviour for the next `remaining` matching calls."""

    kind: str
    remaining: int
    model: str | None = None
    endpoint: str | None = None
    delay_s: float = 1.0
    retry_after: str | None = None
    message: str | None = None

    def matches(self, endpoint: str, model: str | None) -> bool:
        if self.endpoint is not None:
            if endpoint != self.endpoint:
                return False
        elif endpoint not in (ANSWER_ENDPOINTS if self.kind in CONTENT_KINDS else MODEL_ENDPOINTS):
            return False
        return self.model is None or (model is not None and canonical(model) == canonical(self.model))


def _endpoint_path(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    return endpoint if endpoint.startswith("/") else f"/api/{endpoint}"


class ScriptedFaults(abc.ABC):
    """The fault queue and the `stop_after` switch of the fake LLM servers (FakeOllama, FakeOpenAI).

    A server sets `_state_lock` and calls `_reset_faults()` from its `reset()`, and says in `fault_kinds`,
    `_fault_endpoint` and `_fault_matches` which kinds it knows, what an `endpoint` argument names on its
    routes and which calls a queued fault hits.
    """

    fault_kinds: frozenset[str]
    _state_lock: threading.Lock

    @abc.abstractmethod
    def _fault_endpoint(self, endpoint: str | None) -> str | None:
        """Each server's own answer."""

    @abc.abstractmethod
    def _fault_matches(self, fault: Fault, endpoint: str, model: str | None) -> bool:
        """Each server's own answer."""

    @abc.abstractmethod
    def _fault_error(self, fault: Fault, model: str) -> Response:
        """The server's error answer for a status fault (`500`, `404`, ...), in its own body shape."""

    def _transport_fault(self, fault: Fault, model: str, normal: Callable[[], Response]) -> Response:
        """What a transport fault answers: the normal answer late, no answer, or an error (with
        `Retry-After` when the fault sets one)."""
        if fault.kind == "timeout":
            resp = normal()
            resp.delay_s = max(resp.delay_s, fault.delay_s)
            return resp
        if fault.kind in ("refuse", "drop"):
            return Response(drop_connection=True)
        if fault.kind == "reset":
            return Response(reset_connection=True)
        resp = self._fault_error(fault, model)
        if fault.retry_after is not None:
            resp.headers["Retry-After"] = fault.retry_after
        return resp

    def _reset_faults(self) -> None:
        with self._state_lock:
            self._faults: list[Fault] = []
            self._ok_chats = 0
            self._stop_after: int | None = None

    def fail_next(
        self,
        n: int = 1,
        kind: str = "500",
        *,
        model: str | None = None,
        endpoint: str | None = None,
        delay_s: float = 1.0,
        retry_after: str | float | None = None,
        message: str | None = None,
    ) -> None:
        """Make the next `n` matching calls misbehave; queued faults are consumed in order.

        Kinds: `timeout` (answer normally but only after `delay_s`, longer than the client's read
        timeout), `refuse`/`drop` (close the connection without an answer; a listening socket cannot
        refuse, use a closed port for that), `reset` (abort with a TCP RST; Ollama only), `500`, `503`
        (queue full), `429`, `404` (`model 'X' not found`), `400`
        (`message`, default `invalid input type`), `401` (OpenAI only), and the answer faults for
        chat/generate: `not_json`, `schema_violation` (valid JSON missing the required keys), `degenerate`
        (every free-text string field, i.e. one without a pattern/enum in the schema, becomes one word
        repeated hundreds of times, cut to its maxLength if it has one: still schema-valid), `length`
        (`done_reason: "length"` with truncated JSON). `retry_after` adds that header to an error answer.

        `endpoint` and `model` narrow the match. Ollama: `endpoint` is "chat", "/api/embed", "/api/tags",
        ...; without one, transport faults hit model calls (chat, generate, embed) and answer faults hit
        chat/generate; /api/version and /api/tags are only hit when named explicitly. OpenAI: without
        `endpoint` a fault hits chat completions; name `models` (or `/v1/models`) to fault the listing.
        """
        if kind not in self.fault_kinds:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(self.fault_kinds)}")
        if n < 1:
            raise ValueError("n must be >= 1")
        with self._state_lock:
            self._faults.append(
                Fault(
                    kind=kind,
                    remaining=n,
                    model=model,
                    endpoint=self._fault_endpoint(endpoint),
                    delay_s=delay_s,
                    retry_after=None if retry_after is None else str(retry_after),
                    message=message,
                )
            )

    def pending_faults(self) -> int:
        with self._state_lock:
            return sum(f.remaining for f in self._faults)

    def stop_after(self, n_calls: int) -> None:
        """After `n_calls` successful chat answers (counted from server start) every further request,
        on any route, gets its connection dropped: a server that dies in the middle of a run."""
        with self._state_lock:
            self._stop_after = n_calls

    def revive(self) -> None:
        """Undo `stop_after`: the server answers again (the restart in kill/resume tests)."""
        with self._state_lock:
            self._stop_after = None

    @property
    def successful_chats(self) -> int:
        with self._state_lock:
            return self._ok_chats

    def _take_fault(self, endpoint: str, model: str | None) -> Fault | None:
        with self._state_lock:
            for fault in self._faults:
                if self._fault_matches(fault, endpoint, model):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _is_stopped(self) -> bool:
        with self._state_lock:
            return self._stop_after is not None and self._ok_chats >= self._stop_after

    def _reserve_chat(self) -> bool:
        """Count a successful chat atomically, so `stop_after(n)` allows exactly n even under concurrency."""
        with self._state_lock:
            if self._stop_after is not None and self._ok_chats >= self._stop_after:
                return False
            self._ok_chats += 1
            return True


class FakeOllama(ScriptedFaults, LoopbackServer):
    """Scriptable Ollama. Use as `with FakeOllama(models=[...], responder=fn) as fake:`.

    * `models`: installed model names (`x` == `x:latest`); other models answer 404 `model 'x' not found`.
    * `embedding_only`: installed models that refuse chat/generate with 400 like embedding models do.
    * `responder(model, request_json)`: the assistant content for chat/generate; a dict/list is
      JSON-encoded (as Ollama does with `format`), a `Response` is sent as is. Without one, a minimal
      instance of the request's `format` schema is answered.
    * `latency_s`: added to every chat/generate/embed answer (requests stay in flight that long).
    * `timing`: an `LlmTiming` (off by default): chat/generate calls wait for one of its slots and hold
      it for prefill + decode time (an `/api/embed` call for its inputs' tokens, prefill only); `prompt_eval_count` / `eval_count` and the durations follow it, and
      tokens served from its prefix cache are reported as `prompt_eval_cached_count` (Ollama >= 0.33
      keeps `prompt_eval_count` the whole prompt and reports cache hits separately, ollama/ollama#17943).
    * `fail_next(n, kind, ...)`, `stop_after(n)`: faults, see their docstrings.
    """

    def __init__(
        self,
        models: Iterable[str] = DEFAULT_MODELS,
        *,
        responder: Responder | None = None,
        embedding_only: Iterable[str] = EMBEDDING_ONLY,
        embed_dim: int = DEFAULT_EMBED_DIM,
        latency_s: float = 0.0,
        version: str = VERSION,
        embed_context_chars: int = 8192 * 4,
        timing: LlmTiming | None = None,
    ) -> None:
        super().__init__()
        self.timing = timing
        self._initial: dict[str, Any] = {
            "models": list(models),
            "embedding_only": {canonical(m) for m in embedding_only},
            "responder": responder,
            "embed_dim": embed_dim,
            "latency_s": latency_s,
            "version": version,
            "embed_context_chars": embed_context_chars,
        }
        self._state_lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the constructor's settings with an empty log: lets a module-scoped server (cheaper
        than one server per test) serve many tests without leaking faults or counters between them."""
        init = self._initial
        self.models: list[str] = list(init["models"])
        self.embedding_only: set[str] = set(init["embedding_only"])
        self.responder: Responder | None = init["responder"]
        self.embed_dim: int = init["embed_dim"]
        self.latency_s: float = init["latency_s"]
        self.version: str = init["version"]
        self.embed_context_chars: int = init["embed_context_chars"]
        if self.timing is not None:
            self.timing.reset()
        with self._state_lock:
            self._loaded: set[str] = set()
        self._reset_faults()
        with self._lock:
            self.requests.clear()

    # -- scripting (ScriptedFaults) ---------------------------------------------------------------------

    fault_kinds = FAULT_KINDS

    def _fault_endpoint(self, endpoint: str | None) -> str | None:
        return _endpoint_path(endpoint)

    def _fault_matches(self, fault: Fault, endpoint: str, model: str | None) -> bool:
        return fault.matches(endpoint, model)

    # -- request log helpers ----------------------------------------------------------------------------

    @staticmethod
    def model_of(request: Request) -> str | None:
        try:
            body = request.json()
        except ValueError:
            return None
        return body.get("model") if isinstance(body, dict) else None

    def calls(self, endpoint: str | None = None, model: str | None = None) -> list[Request]:
        """Recorded requests in arrival order, optionally for one endpoint and/or one model."""
        path = _endpoint_path(endpoint)
        with self._lock:
            recorded = list(self.requests)
        return [
            r
            for r in recorded
            if (path is None or r.path == path)
            and (model is None or canonical(self.model_of(r) or "") == canonical(model))
        ]

    def chat_calls(self, model: str | None = None) -> list[Request]:
        return self.calls("/api/chat", model)

    def embed_calls(self, model: str | None = None) -> list[Request]:
        return self.calls("/api/embed", model)

    def generate_calls(self, model: str | None = None) -> list[Request]:
        return self.calls("/api/generate", model)

    def intervals(self, endpoint: str | None = "/api/chat", model: str | None = None) -> list[tuple[float, float]]:
        """(start, end) in `time.monotonic()` seconds of every finished call, in arrival order."""
        return [(r.started, r.ended) for r in self.calls(endpoint, model) if r.ended is not None]

    def max_overlap(self, endpoint: str | None = "/api/chat", model: str | None = None) -> int:
        """The largest number of calls that were in flight at the same moment (proves concurrency)."""
        events = []
        for start, end in self.intervals(endpoint, model):
            events += [(start, 1), (end, -1)]
        current = best = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
            current += step
            best = max(best, current)
        return best

    # -- routing ----------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if self._is_stopped():
            return Response(drop_connection=True)
        method, path = request.method, request.path
        if path == "/" and method in ("GET", "HEAD"):
            text = "" if method == "HEAD" else "Ollama is running"
            return Response(body=text, content_type="text/plain; charset=utf-8")
        if method == "GET" and path == "/api/version":
            return self._info(path, lambda: Response.json_body({"version": self.version}))
        if method == "GET" and path == "/api/tags":
            return self._info(path, lambda: Response.json_body({"models": [self._tag(m) for m in self.models]}))
        if method == "GET" and path == "/api/ps":
            return Response.json_body({"models": [self._ps(m) for m in sorted(self._loaded)]})
        if method == "POST" and path in MODEL_ENDPOINTS:
            return self._model_call(request)
        return Response(status=404, body="404 page not found", content_type="text/plain")

    def _info(self, endpoint: str, normal: Callable[[], Response]) -> Response:
        """Server information routes: faulted only when a fault names this endpoint explicitly."""
        fault = self._take_fault(endpoint, None)
        if fault is None or fault.kind in CONTENT_KINDS:
            return normal()
        return self._transport_fault(fault, "", normal)

    def _model_call(self, request: Request) -> Response:
        path = request.path
        if not request.body:
            return _error(400, MSG_NO_BODY)
        try:
            body = request.json()
        except ValueError as exc:
            return _error(400, str(exc))
        if not isinstance(body, dict):
            return _error(400, "json: cannot unmarshal into Go value of type api.Request")
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            return _error(400, MSG_MODEL_REQUIRED)

        def normal() -> Response:
            return self._normal_answer(path, model, body)

        fault = self._take_fault(path, model)
        if fault is not None and fault.kind in TRANSPORT_KINDS:
            return self._transport_fault(fault, model, normal)
        if canonical(model) not in {canonical(m) for m in self.models}:
            return _error(404, f"model '{model}' not found")
        if path in ANSWER_ENDPOINTS and canonical(model) in self.embedding_only:
            return _error(400, f'"{model}" does not support {path.rsplit("/", 1)[-1]}')
        if fault is not None:
            return self._answer(path, model, body, fault=fault)
        return normal()

    def _fault_error(self, fault: Fault, model: str) -> Response:
        status = int(fault.kind)
        default = {
            400: MSG_INPUT_TYPE, 404: f"model '{model}' not found", 429: MSG_RATE, 500: MSG_RUNNER, 503: MSG_BUSY,
        }[status]
        return _error(status, fault.message or default)

    def _normal_answer(self, path: str, model: str, body: dict[str, Any]) -> Response:
        if canonical(model) not in {canonical(m) for m in self.models}:
            return _error(404, f"model '{model}' not found")
        if path in ANSWER_ENDPOINTS:
            if canonical(model) in self.embedding_only:
                return _error(400, f'"{model}" does not support {path.rsplit("/", 1)[-1]}')
            return self._answer(path, model, body, fault=None)
        if path == "/api/embed":
            return self._embed(model, body)
        return self._legacy_embedding(model, body)

    # -- chat / generate --------------------------------------------------------------------------------

    def _content(self, model: str, body: dict[str, Any]) -> str | Response:
        if self.responder is None:
            fmt = body.get("format")
            result: Any = example_for_schema(fmt) if isinstance(fmt, dict) else {}
        else:
            result = self.responder(model, body)
        if isinstance(result, Response):
            return result
        if isinstance(result, str):
            return result
        return json.dumps(result, ensure_ascii=False)

    def _faulty_content(self, kind: str, content: str, body: dict[str, Any]) -> str:
        return faulty_content(kind, content, body.get("format"))

    def _answer(self, path: str, model: str, body: dict[str, Any], *, fault: Fault | None) -> Response:
        fmt = body.get("format")
        if fmt is not None and fmt != "" and fmt != "json" and not isinstance(fmt, dict):
            return _error(400, f'invalid format: {json.dumps(fmt)}; expected "json" or a valid JSON Schema object')
        if path == "/api/chat":
            messages = body.get("messages")
            if messages is not None and not isinstance(messages, list):
                return _error(400, "json: cannot unmarshal messages")
            prompt_text = "".join(str(m.get("content", "")) for m in messages or [] if isinstance(m, dict))
            empty = not messages
        else:
            prompt_text = str(body.get("system") or "") + str(body.get("prompt") or "")
            empty = not body.get("prompt")
        if empty:  # a load / unload call, not an answer (not counted by `stop_after`)
            reason = "unload" if body.get("keep_alive") in (0, "0", "0s") else "load"
            return self._final(path, model, body, "", reason, prompt_tokens=0, eval_tokens=0)
        produced = self._content(model, body)
        if isinstance(produced, Response):
            return produced
        content, done_reason = produced, "stop"
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        # One tokenizer per server: the timing model's when it is on, so the counters agree with it.
        tokens = _tokens if self.timing is None else count_tokens
        eval_tokens = tokens(content)
        if fault is not None:
            content = self._faulty_content(fault.kind, content, body)
            eval_tokens = tokens(content)
            if fault.kind == "length":
                done_reason = "length"
                eval_tokens = int(options.get("num_predict") or 1024)
        served: CallTiming | None = None
        if self.timing is not None:
            # The call occupies a modelled slot before it can be answered (or dropped by `stop_after`).
            served = self.timing.serve(canonical(model), prompt_text, eval_tokens)
        if path == "/api/chat" and not self._reserve_chat():
            return Response(drop_connection=True)  # the server died while this call was queued
        return self._final(path, model, body, content, done_reason, prompt_tokens=_tokens(prompt_text),
                           eval_tokens=eval_tokens, served=served)

    def _final(
        self, path: str, model: str, body: dict[str, Any], content: str, done_reason: str, *,
        prompt_tokens: int, eval_tokens: int, served: CallTiming | None = None,
    ) -> Response:
        metrics = self._metrics(model, prompt_tokens, eval_tokens) if served is None else self._timed_metrics(model, served)
        if path == "/api/chat":
            head: dict[str, Any] = {"model": model, "created_at": rfc3339_now(),
                                    "message": {"role": "assistant", "content": content}}
        else:
            head = {"model": model, "created_at": rfc3339_now(), "response": content}
        final = {**head, "done": True, "done_reason": done_reason}
        if path == "/api/generate" and content:
            final["context"] = [151644, 8948, 198]
        if done_reason not in ("load", "unload"):
            final.update(metrics)
        if body.get("stream", True) is not False:
            return self._ndjson(path, model, content, final)
        return Response.json_body(final, delay_s=self.latency_s)

    def _ndjson(self, path: str, model: str, content: str, final: dict[str, Any]) -> Response:
        """`stream` left at its default: one object per chunk, then the final one with the metrics."""
        lines = []
        for i in range(0, len(content), 8):
            piece = content[i : i + 8]
            if path == "/api/chat":
                chunk: dict[str, Any] = {"model": model, "created_at": rfc3339_now(),
                                         "message": {"role": "assistant", "content": piece}, "done": False}
            else:
                chunk = {"model": model, "created_at": rfc3339_now(), "response": piece, "done": False}
            lines.append(json.dumps(chunk, ensure_ascii=False))
        last = dict(final)
        if path == "/api/chat":
            last["message"] = {"role": "assistant", "content": ""}
        else:
            last["response"] = ""
        lines.append(json.dumps(last, ensure_ascii=False))
        return Response(body="\n".join(lines) + "\n", content_type="application/x-ndjson", delay_s=self.latency_s)

    def _metrics(self, model: str, prompt_tokens: int, eval_tokens: int) -> dict[str, int]:
        """Plausible counters in Ollama's key order; `load_duration` only when the model was cold."""
        with self._state_lock:
            cold = canonical(model) not in self._loaded
            self._loaded.add(canonical(model))
        load_ns = 1_250_000_000 if cold else 0
        prompt_ns = prompt_tokens * 500_000
        eval_ns = eval_tokens * 20_000_000
        out: dict[str, int] = {"total_duration": load_ns + prompt_ns + eval_ns + 3_000_000 + int(self.latency_s * 1e9)}
        if load_ns:
            out["load_duration"] = load_ns
        if prompt_tokens:
            out["prompt_eval_count"] = prompt_tokens
            out["prompt_eval_duration"] = prompt_ns
        if eval_tokens:
            out["eval_count"] = eval_tokens
            out["eval_duration"] = eval_ns
        return out

    def _timed_metrics(self, model: str, served: CallTiming) -> dict[str, int]:
        """Counters that agree with the timing model: the durations are the modelled ones, the prompt
        count is the whole prompt and cache hits are reported separately (as Ollama >= 0.33 does)."""
        with self._state_lock:
            self._loaded.add(canonical(model))
        ns = 1_000_000_000
        prompt_ns, eval_ns = int(served.prefill_s * ns), int(served.decode_s * ns)
        # No `load_duration`: the model is always loaded in the timing model (the key is omitted when 0).
        out: dict[str, int] = {"total_duration": int(served.queue_s * ns) + prompt_ns + eval_ns,
                               "prompt_eval_count": served.prompt_tokens}
        if served.cached_tokens:
            out["prompt_eval_cached_count"] = served.cached_tokens
        out["prompt_eval_duration"] = prompt_ns
        if served.output_tokens:
            out["eval_count"] = served.output_tokens
            out["eval_duration"] = eval_ns
        return out

    # -- embeddings -------------------------------------------------------------------------------------

    def _embed(self, model: str, body: dict[str, Any]) -> Response:
        raw = body.get("input")
        if isinstance(raw, str):
            inputs = [raw] if raw else []
        elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
            inputs = list(raw)
        else:
            return _error(400, MSG_INPUT_TYPE)
        if body.get("truncate") is False and any(len(t) > self.embed_context_chars for t in inputs):
            return _error(400, MSG_CONTEXT)
        if self.timing is not None and inputs:
            # An embedding request is prompt-only work: it holds a slot for its inputs' tokens, no decode.
            self.timing.serve(canonical(model), "".join(inputs), 0)
        dims = body.get("dimensions")
        vectors = []
        for text in inputs:
            vec = fake_vector(model, text, self.embed_dim)
            if isinstance(dims, int) and 0 < dims < len(vec):
                vec = l2(vec[:dims])
            vectors.append(vec)
        metrics = self._metrics(model, sum(_tokens(t) for t in inputs), 0)
        payload: dict[str, Any] = {"model": model, "embeddings": vectors, "total_duration": metrics["total_duration"]}
        if "load_duration" in metrics:
            payload["load_duration"] = metrics["load_duration"]
        if inputs:
            payload["prompt_eval_count"] = metrics["prompt_eval_count"]
        return Response.json_body(payload, delay_s=self.latency_s)

    def _legacy_embedding(self, model: str, body: dict[str, Any]) -> Response:
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str):
            return _error(400, MSG_INPUT_TYPE)
        vector = fake_vector(model, prompt, self.embed_dim, normalise=False) if prompt else []
        return Response.json_body({"embedding": vector}, delay_s=self.latency_s)

    # -- model listings ---------------------------------------------------------------------------------

    def _details(self, name: str) -> dict[str, Any]:
        base = name.split(":", 1)[0].rsplit("/", 1)[-1]
        letters = re.match(r"[a-z]+", base)
        family = letters.group(0) if letters else base
        size = re.search(r"(\d+(?:\.\d+)?)b", name.split(":", 1)[-1])
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": f"{size.group(1)}B" if size else "567M",
            "quantization_level": "Q4_K_M",
        }

    @staticmethod
    def _digest(name: str) -> str:
        return hashlib.sha256(canonical(name).encode()).hexdigest()

    def _tag(self, name: str) -> dict[str, Any]:
        full = canonical(name)
        return {
            "name": full,
            "model": full,
            "modified_at": "2026-09-28T10:11:12.123456789Z",
            "size": 1_000_000_000 + int(self._digest(name)[:6], 16),
            "digest": self._digest(name),
            "details": self._details(full),
        }

    def _ps(self, name: str) -> dict[str, Any]:
        tag = self._tag(name)
        return {
            "name": tag["name"],
            "model": tag["model"],
            "size": tag["size"],
            "digest": tag["digest"],
            "details": tag["details"],
            "expires_at": "2026-09-30T09:00:00.000000001Z",
            "size_vram": tag["size"],
            "context_length": 8192,
        }


def _error(status: int, message: str) -> Response:
    return Response.json_body({"error": message}, status=status)

"""A loopback fake of the OpenAI-compatible API as vLLM, SGLang and llama.cpp's server speak it
(docs/wire_formats.md §4.8-4.9).

Why: the `openai` backend of the LLM client must be exercised over real HTTP exactly as against a real
server, with the same scripted answers, faults and token-proportional timing (`llm_timing.py`) as the
fake Ollama, so both backends can be tested and benchmarked side by side.

Routes: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions` (plain, or server-sent
events with `stream: true`), `POST /v1/embeddings`. Anything else: 404 in the error shape.

Shapes: the answer is `{"id", "object": "chat.completion", "created", "model", "choices": [{"index": 0,
"message": {"role": "assistant", "content"}, "finish_reason": "stop"|"length"}], "usage":
{"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details": {"cached_tokens"}}}`;
structured output arrives as a JSON *string* in `content`. `max_tokens` (or `max_completion_tokens`)
cuts an answer that is longer, with `finish_reason: "length"`. Streaming sends `data: {chunk}` lines
(`choices[0].delta`, the role first, then content pieces, `finish_reason` on the last content chunk),
a usage chunk with empty `choices` when `stream_options.include_usage` is set, then `data: [DONE]`.
Embeddings: `input` is a string or an array of strings (anything else, or nothing, is a 400 naming
`input`); the answer is `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
"model", "usage": {"prompt_tokens", "total_tokens"}}`, one L2-normalised vector per input (the fake
Ollama's deterministic `fake_vector`, so both fakes give the same vector for the same model and text),
`encoding_format` `float` (default) or `base64` (little-endian float32), `dimensions` cuts and
re-normalises; an input longer than `MAX_MODEL_LEN` tokens is a 400, as vLLM answers it.
Strict schemas: a `response_format` json_schema with `strict: true` is checked by OpenAI's rules
(`strict_schema_problem`) and refused with OpenAI's 400 body, although vLLM and SGLang would take it, so
every test through this fake also proves the client's schemas would pass OpenAI's API.
Errors: `{"error": {"message", "type", "param", "code"}}` (OpenAI and current vLLM), or with
`error_style="vllm_legacy"` the older vLLM body `{"object": "error", "message", "type", "param", "code"}`.

Scripting (see `FakeOpenAI`): served `models` (names are exact: no `:latest` aliasing on these
servers), the same `responder(model, request_json)` signature as `FakeOllama` (read the schema with
`request_schema(body)`), `latency_s` or `timing`, `api_key` (bearer check), `fail_next(...)` with the
fake Ollama's fault kinds plus `401`, and `stop_after(n)` / `revive()`.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from ty_pipeline_tests.fakes.http_base import LoopbackServer, Request, Response
from ty_pipeline_tests.fakes.llm_timing import CallTiming, LlmTiming, count_tokens
from ty_pipeline_tests.fakes.ollama_server import (
    CONTENT_KINDS,
    DEFAULT_EMBED_DIM,
    Fault,
    Responder,
    ScriptedFaults,
    example_for_schema,
    fake_vector,
    faulty_content,
    l2,
)

DEFAULT_MODELS = ("qwen2.5:7b-instruct", "llama3.1:8b")
CHAT_PATH = "/v1/chat/completions"
EMBED_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"
TRANSPORT_KINDS = frozenset({"timeout", "refuse", "drop", "500", "503", "429", "404", "400", "401"})
FAULT_KINDS = TRANSPORT_KINDS | CONTENT_KINDS
STREAM_PIECE_CHARS = 8
OWNED_BY = "vllm"
MAX_MODEL_LEN = 8192

# (status, type) per fault/error kind, as OpenAI's API names them.
ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}


def request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for: OpenAI `response_format` json_schema, or Ollama `format`.
    Lets one scripted responder serve both fakes."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else None
    ollama_format = body.get("format")
    return ollama_format if isinstance(ollama_format, dict) else None


def strict_schema_problem(schema: dict[str, Any], name: str) -> str | None:
    """OpenAI's 400 message for a strict json_schema it refuses, or None. The rules and wording are
    OpenAI's (platform docs, "Structured Outputs" → "Supported schemas", and its error messages): the root
    is an object, not `anyOf`; every object has `additionalProperties: false` and lists every property
    in `required`; `default` is not permitted. Written apart from the client's rewrite on purpose, so
    that a test through this fake can catch that rewrite's mistakes."""
    prefix = f"Invalid schema for response_format '{name}': "
    if schema.get("type") != "object" or "anyOf" in schema:
        return prefix + f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{schema.get('type')}\"'."

    def walk(node: Any, context: tuple[str, ...]) -> str | None:
        if not isinstance(node, dict):
            return None
        where = f"In context={context!r}, "
        if "default" in node:
            return prefix + where + "'default' is not permitted."
        properties = node.get("properties")
        if node.get("type") == "object" or isinstance(properties, dict):
            if node.get("additionalProperties") is not False:
                return prefix + where + "'additionalProperties' is required to be supplied and to be false."
            required = node.get("required")
            keys = list(properties or {})
            missing = [k for k in keys if not isinstance(required, list) or k not in required]
            if missing:
                return (prefix + where + "'required' is required to be supplied and to be an array including "
                        f"every key in properties. Missing '{missing[0]}'.")
            extra = [k for k in required or [] if k not in keys]
            if extra:
                return prefix + where + f"Extra required key '{extra[0]}' supplied."
        children: list[tuple[Any, tuple[str, ...]]] = []
        for key, sub in (properties or {}).items():
            children.append((sub, (*context, "properties", key)))
        for key in ("items", "additionalProperties", "not"):
            if isinstance(node.get(key), dict):
                children.append((node[key], (*context, key)))
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            for i, sub in enumerate(node.get(key) or []):
                children.append((sub, (*context, key, str(i))))
        for key in ("$defs", "definitions"):
            for def_name, sub in (node.get(key) or {}).items():
                children.append((sub, (*context, key, def_name)))
        for sub, sub_context in children:
            problem = walk(sub, sub_context)
            if problem is not None:
                return problem
        return None

    return walk(schema, ())


def prompt_text(messages: Any) -> str:
    """The text a server prefills: the messages' contents in order (the chat template's markup is
    left out; it is the same few tokens for every call)."""
    if not isinstance(messages, list):
        return ""
    return "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))


def _endpoint_path(endpoint: str | None) -> str:
    if endpoint is None or endpoint in ("chat", "chat/completions"):
        return CHAT_PATH
    return endpoint if endpoint.startswith("/") else f"/v1/{endpoint}"


class FakeOpenAI(ScriptedFaults, LoopbackServer):
    """Scriptable OpenAI-compatible server. Use as `with FakeOpenAI(models=[...], responder=fn) as fake:`.

    * `responder(model, request_json)`: the assistant content; a dict/list is JSON-encoded, a `Response`
      is sent as is. Without one, a minimal instance of the requested JSON schema (or `{}` for
      `json_object`, a short text otherwise).
    * `latency_s`: added to every chat answer; `timing`: an `LlmTiming` (slots, token rates, prefix
      cache) that every chat call passes through; `usage` reports its counts, cached tokens included
      (`report_cached_tokens=False` leaves `prompt_tokens_details` out, as vLLM does by default).
    * `api_key`: when set, every route needs `Authorization: Bearer <api_key>` (401 otherwise).
    * `embed_dim`: length of the `/v1/embeddings` vectors; with `timing`, an embeddings request holds a
      slot for its inputs' tokens (prefill only, no decode), as a server runs an embedding batch.
    """

    def __init__(
        self,
        models: Iterable[str] = DEFAULT_MODELS,
        *,
        responder: Responder | None = None,
        latency_s: float = 0.0,
        timing: LlmTiming | None = None,
        api_key: str | None = None,
        error_style: str = "openai",
        report_cached_tokens: bool = True,
        embed_dim: int = DEFAULT_EMBED_DIM,
    ) -> None:
        super().__init__()
        if error_style not in ("openai", "vllm_legacy"):
            raise ValueError("error_style is 'openai' or 'vllm_legacy'")
        self._initial: dict[str, Any] = {
            "models": list(models), "responder": responder, "latency_s": latency_s, "api_key": api_key,
            "error_style": error_style, "report_cached_tokens": report_cached_tokens, "embed_dim": embed_dim,
        }
        self.timing = timing
        self._state_lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the constructor's settings with an empty log and timing (for a module-scoped server)."""
        init = self._initial
        self.models: list[str] = list(init["models"])
        self.responder: Responder | None = init["responder"]
        self.latency_s: float = init["latency_s"]
        self.api_key: str | None = init["api_key"]
        self.error_style: str = init["error_style"]
        self.report_cached_tokens: bool = init["report_cached_tokens"]
        self.embed_dim: int = init["embed_dim"]
        if self.timing is not None:
            self.timing.reset()
        self._reset_faults()
        with self._lock:
            self.requests.clear()

    # -- scripting (ScriptedFaults) ---------------------------------------------------------------------

    fault_kinds = FAULT_KINDS

    def fail_next(self, n: int = 1, kind: str = "500", **where: Any) -> None:
        """As `ScriptedFaults.fail_next`; `endpoint="embeddings"` faults `/v1/embeddings`, with transport
        kinds only (an embedding has no content to spoil)."""
        if self._fault_endpoint(where.get("endpoint")) == EMBED_PATH and kind in CONTENT_KINDS:
            raise ValueError(f"{kind!r} is an answer fault; /v1/embeddings takes transport faults only")
        super().fail_next(n, kind, **where)

    def _fault_endpoint(self, endpoint: str | None) -> str:
        return _endpoint_path(endpoint)

    def _fault_matches(self, fault: Fault, endpoint: str, model: str | None) -> bool:
        return fault.endpoint == endpoint and (fault.model is None or fault.model == model)

    # -- request log helpers ----------------------------------------------------------------------------

    def chat_calls(self, model: str | None = None) -> list[Request]:
        calls = self.requests_to(CHAT_PATH)
        if model is None:
            return calls
        return [r for r in calls if isinstance(r.json(), dict) and r.json().get("model") == model]

    def embed_calls(self, model: str | None = None) -> list[Request]:
        calls = self.requests_to(EMBED_PATH)
        if model is None:
            return calls
        return [r for r in calls if isinstance(r.json(), dict) and r.json().get("model") == model]

    def max_overlap(self) -> int:
        """The most chat calls in flight at the same moment (proves concurrency, no clock involved)."""
        events = []
        for r in self.chat_calls():
            if r.ended is not None:
                events += [(r.started, 1), (r.ended, -1)]
        current = best = 0
        for _, step in sorted(events):
            current += step
            best = max(best, current)
        return best

    # -- errors -----------------------------------------------------------------------------------------

    def error(self, status: int, message: str, *, param: str | None = None, code: Any = None,
              kind: str | None = None, null_code: bool = False) -> Response:
        kind = kind or ERROR_TYPES.get(status, "InternalServerError")
        detail = {"message": message, "type": kind, "param": param,
                  "code": code if code is not None or null_code else status}
        if self.error_style == "vllm_legacy":
            return Response.json_body({"object": "error", **detail}, status=status)
        return Response.json_body({"error": detail}, status=status)

    def _fault_error(self, fault: Fault, model: str) -> Response:
        status = int(fault.kind)
        default = {
            400: "Invalid request",
            401: "Incorrect API key provided",
            404: f"The model `{model}` does not exist.",
            429: "Too many requests",
            500: "Internal server error",
            503: "The server is overloaded or not ready yet.",
        }[status]
        return self.error(status, fault.message or default)

    # -- routing ----------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if self._is_stopped():
            return Response(drop_connection=True)
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self.error(401, "Incorrect API key provided", code="invalid_api_key")
        method, path = request.method, request.path
        if method == "GET" and path == MODELS_PATH:
            fault = self._take_fault(MODELS_PATH, None)
            normal = lambda: Response.json_body({"object": "list", "data": [self._model_card(m) for m in self.models]})  # noqa: E731
            if fault is not None and fault.kind not in CONTENT_KINDS:
                return self._transport_fault(fault, "", normal)
            return normal()
        if method == "GET" and path.startswith(MODELS_PATH + "/"):
            name = path[len(MODELS_PATH) + 1 :]
            if name in self.models:
                return Response.json_body(self._model_card(name))
            return self.error(404, f"The model `{name}` does not exist.", param="model")
        if method == "POST" and path == CHAT_PATH:
            return self._chat(request)
        if method == "POST" and path == EMBED_PATH:
            return self._embeddings(request)
        return self.error(404, f"Not Found: {method} {path}")

    def _model_card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1764806400, "owned_by": OWNED_BY, "root": name,
                "parent": None, "max_model_len": MAX_MODEL_LEN}

    def _body_with_model(self, request: Request) -> tuple[dict[str, Any], str] | Response:
        """The JSON object body and its `model`, or the 400 vLLM answers when either is missing."""
        try:
            body = request.json()
        except ValueError as exc:
            return self.error(400, f"Invalid JSON body: {exc}")
        if not isinstance(body, dict):
            return self.error(400, "The request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.error(400, "you must provide a model parameter", param="model")
        return body, model

    # -- chat completions -------------------------------------------------------------------------------

    def _chat(self, request: Request) -> Response:
        parsed = self._body_with_model(request)
        if isinstance(parsed, Response):
            return parsed
        body, model = parsed
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.error(400, "'messages' must be a non-empty array", param="messages")
        fmt = body.get("response_format")
        if fmt is not None:
            kind = fmt.get("type") if isinstance(fmt, dict) else None
            if kind not in ("text", "json_object", "json_schema"):
                return self.error(400, f"Invalid response_format: {json.dumps(fmt)}", param="response_format")
            if kind == "json_schema" and request_schema(body) is None:
                return self.error(400, "response_format json_schema needs json_schema.schema", param="response_format")
            spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
            if kind == "json_schema" and isinstance(spec, dict) and spec.get("strict") is True:
                problem = strict_schema_problem(spec["schema"], str(spec.get("name")))
                if problem is not None:  # OpenAI's body for it: type invalid_request_error, code null
                    return self.error(400, problem, param="response_format", kind="invalid_request_error",
                                      code=None, null_code=True)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            return self.error(400, "max_tokens must be a positive integer", param="max_tokens")

        def normal() -> Response:
            return self._complete(model, body, None)

        fault = self._take_fault(CHAT_PATH, model)
        if fault is not None and fault.kind not in CONTENT_KINDS:
            return self._transport_fault(fault, model, normal)
        if model not in self.models:
            return self.error(404, f"The model `{model}` does not exist.", param="model")
        return self._complete(model, body, fault)

    def _content(self, model: str, body: dict[str, Any]) -> str | Response:
        if self.responder is not None:
            result: Any = self.responder(model, body)
        else:
            schema = request_schema(body)
            fmt = body.get("response_format")
            if schema is not None:
                result = example_for_schema(schema)
            elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
                result = {}
            else:
                result = "Beispielantwort."
        if isinstance(result, (Response, str)):
            return result
        return json.dumps(result, ensure_ascii=False)

    def _complete(self, model: str, body: dict[str, Any], fault: Fault | None) -> Response:
        produced = self._content(model, body)
        if isinstance(produced, Response):
            return produced
        content, finish = produced, "stop"
        if fault is not None:
            content = faulty_content(fault.kind, content, request_schema(body))
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        completion_tokens = count_tokens(content)
        if fault is not None and fault.kind == "length":
            finish = "length"
            completion_tokens = int(limit or 1024)
        elif limit is not None and completion_tokens > limit:
            # The server stops decoding at the cap: the text is cut where the tokens ran out.
            content, finish, completion_tokens = content[: limit * 4], "length", int(limit)
        text = prompt_text(body.get("messages"))
        served: CallTiming | None = None
        if self.timing is not None:
            served = self.timing.serve(model, text, completion_tokens)
        if not self._reserve_chat():
            return Response(drop_connection=True)  # the server died while this call was running
        usage = self._usage(count_tokens(text), completion_tokens, served)
        created = int(time.time())
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if body.get("stream") is True:
            include_usage = isinstance(body.get("stream_options"), dict) and body["stream_options"].get("include_usage")
            return self._sse(ident, created, model, content, finish, usage if include_usage else None)
        payload = {
            "id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None,
                         "finish_reason": finish}],
            "usage": usage,
        }
        return Response.json_body(payload, delay_s=self.latency_s)

    def _usage(self, prompt_tokens: int, completion_tokens: int, served: CallTiming | None) -> dict[str, Any]:
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}
        if self.report_cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": served.cached_tokens if served else 0}
        return usage

    def _sse(
        self, ident: str, created: int, model: str, content: str, finish: str, usage: dict[str, Any] | None
    ) -> Response:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": choices, **extra}
            return "data: " + json.dumps(data, ensure_ascii=False) + "\n\n"

        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                          "finish_reason": None}])]
        pieces = [content[i : i + STREAM_PIECE_CHARS] for i in range(0, len(content), STREAM_PIECE_CHARS)] or [""]
        for n, piece in enumerate(pieces):
            last = n == len(pieces) - 1
            events.append(chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                  "finish_reason": finish if last else None}]))
        if usage is not None:
            events.append(chunk([], usage=usage))
        events.append("data: [DONE]\n\n")
        return Response(body="".join(events), content_type="text/event-stream", delay_s=self.latency_s)

    # -- embeddings -------------------------------------------------------------------------------------

    def _embeddings(self, request: Request) -> Response:
        parsed = self._body_with_model(request)
        if isinstance(parsed, Response):
            return parsed
        body, model = parsed
        raw = body.get("input")
        if isinstance(raw, str) and raw:
            inputs = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, str) and x for x in raw):
            inputs = list(raw)
        else:
            return self.error(400, "'input' must be a non-empty string or a non-empty array of non-empty strings",
                              param="input")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return self.error(400, f"Invalid encoding_format: {encoding!r}", param="encoding_format")
        dims = body.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or dims < 1):
            return self.error(400, "dimensions must be a positive integer", param="dimensions")

        def normal() -> Response:
            return self._embed_answer(model, inputs, encoding, dims)

        fault = self._take_fault(EMBED_PATH, model)
        if fault is not None:
            return self._transport_fault(fault, model, normal)
        if model not in self.models:
            return self.error(404, f"The model `{model}` does not exist.", param="model")
        longest = max(count_tokens(text) for text in inputs)
        if longest > MAX_MODEL_LEN:
            return self.error(400, f"This model's maximum context length is {MAX_MODEL_LEN} tokens. However, you "
                              f"requested {longest} tokens in the input for embedding generation. Please reduce the "
                              "length of the input.", param="input")
        return normal()

    def _embed_answer(self, model: str, inputs: list[str], encoding: str, dims: int | None) -> Response:
        if self.timing is not None:
            self.timing.serve(model, "".join(inputs), 0)
        data = []
        for index, text in enumerate(inputs):
            vector = fake_vector(model, text, self.embed_dim)
            if dims is not None and dims < len(vector):
                vector = l2(vector[:dims])
            encoded: Any = vector
            if encoding == "base64":
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(count_tokens(text) for text in inputs)
        payload = {"object": "list", "data": data, "model": model,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return Response.json_body(payload, delay_s=self.latency_s)

"""The OpenAI-compatible LLM client (`TY_LLM_BACKEND=openai`) against the loopback fake, over real HTTP.

Why: vLLM, SGLang and llama.cpp's server are the batch servers that can carry a whole night (issue #11),
and the pipelines must not notice which backend answers. So the promises of the Ollama client are pinned
here again for this wire format (plain and streamed answers, the one corrective retry with the same
verdicts, retries then typed errors, a fail-fast preflight), shared behaviour is run against both
backends through the factory, and what is new is pinned on its own: the strict `response_format`,
`usage` and cached tokens in the metrics, the API key (sent, demanded, never shown), the `/v1` suffix,
embeddings in input order. Timing is asserted through the injected `sleep` and the fakes' request logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
import sqlalchemy as sa
from pydantic import BaseModel

from ty_pipeline.assets.llm_enrichment import llm_enrichment
from ty_pipeline.clients.llm_base import (
    CallMetrics,
    LlmInvalidAnswer,
    LlmModelMissing,
    LlmRequestError,
    LlmTransientError,
    LlmUnavailable,
)
from ty_pipeline.clients.llm_factory import make_llm_client
from ty_pipeline.clients.ollama import OllamaClient, OllamaInvalidAnswer, OllamaTransientError
from ty_pipeline.clients.openai_compat import OpenAICompatClient, normalize_base_url, strict_response_format
from ty_pipeline.domain import ihl as ihl_schemas
from ty_pipeline.domain.skills import SkillList
from ty_pipeline.domain.summary_layout import SummaryFields
from ty_pipeline.enrichment.summaries import Grade
from ty_pipeline.professions.llm import choice_schema
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.settings_check import check_environment
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline_tests.fakes.http_base import Request, Response
from ty_pipeline_tests.fakes.llm_timing import LlmTiming
from ty_pipeline_tests.fakes.ollama_server import NOT_JSON_CONTENT, FakeOllama
from ty_pipeline_tests.fakes.openai_server import FakeOpenAI, request_schema, strict_schema_problem
from ty_pipeline_tests.llm_client_cases import (
    CHAT_MODEL,
    EMBED_MODEL,
    GOOD_ANSWER,
    MESSAGES,
    Mapping,
    SleepRecorder,
    closed_port_url,
    good_responder,
)

KEY = "sk-test-7f3a9c2e5b1d"
# What OpenAI's strict mode needs of `Mapping`, written out rather than computed: it only lacked
# `additionalProperties: false` (all three fields are required already).
STRICT_MAPPING = {**Mapping.model_json_schema(), "additionalProperties": False}


class EmbeddingFakeOpenAI(FakeOpenAI):
    """The fake plus `POST /v1/embeddings`, answering `data` in *reverse* order with each item's `index`
    (the spec lets a server reorder; only `index` ties a vector to its input). `drop_last` loses one."""

    drop_last = False

    def handle(self, request: Request) -> Response:
        if request.method == "POST" and request.path == "/v1/embeddings":
            body = request.json()
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [{"object": "embedding", "index": i, "embedding": [float(len(text)), float(i)]}
                    for i, text in enumerate(inputs)]
            if self.drop_last:
                data = data[:-1]
            return Response.json_body({"object": "list", "data": list(reversed(data)), "model": body["model"],
                                       "usage": {"prompt_tokens": 7, "total_tokens": 7}})
        return super().handle(request)


@pytest.fixture(scope="module")
def shared_openai() -> Iterator[EmbeddingFakeOpenAI]:
    """One server for the module: stopping a loopback server costs ~0.5 s (its poll interval)."""
    with EmbeddingFakeOpenAI(models=[CHAT_MODEL, EMBED_MODEL], responder=good_responder) as server:
        yield server


@pytest.fixture(scope="module")
def shared_ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=[CHAT_MODEL, EMBED_MODEL], responder=good_responder) as server:
        yield server


@pytest.fixture
def fake(shared_openai: EmbeddingFakeOpenAI) -> EmbeddingFakeOpenAI:
    shared_openai.reset()
    shared_openai.drop_last = False
    return shared_openai


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def client(fake: FakeOpenAI, sleeps: SleepRecorder) -> Iterator[OpenAICompatClient]:
    with OpenAICompatClient(fake.base_url, read_timeout_s=5.0, max_retries=3, sleep=sleeps) as c:
        yield c


def chat(client: Any, **kw: Any) -> tuple[BaseModel, list[CallMetrics]]:
    return client.chat_structured(model=kw.pop("model", CHAT_MODEL), messages=MESSAGES, schema=Mapping, **kw)


# -- both backends through the factory: the same behaviour -------------------------------------------------


@pytest.fixture(params=["ollama", "openai"])
def backend(request: pytest.FixtureRequest, shared_ollama: FakeOllama, shared_openai: FakeOpenAI) -> str:
    shared_ollama.reset()
    shared_openai.reset()
    return str(request.param)


def server_for(backend: str, shared_ollama: FakeOllama, shared_openai: FakeOpenAI) -> Any:
    return shared_openai if backend == "openai" else shared_ollama


@pytest.mark.parametrize("kind", ["not_json", "schema_violation", "length"])
def test_an_invalid_answer_gets_one_corrective_retry_on_both_backends(
    backend: str, shared_ollama: FakeOllama, shared_openai: FakeOpenAI, sleeps: SleepRecorder, kind: str
) -> None:
    server = server_for(backend, shared_ollama, shared_openai)
    server.fail_next(1, kind)
    with make_llm_client(backend, server.base_url, max_retries=1, sleep=sleeps) as c:
        answer, metrics = chat(c)
    assert answer == Mapping(**GOOD_ANSWER)
    first, second = (r.json() for r in server.chat_calls())
    assert second["messages"][: len(MESSAGES)] == MESSAGES
    bad = second["messages"][len(MESSAGES)]
    assert bad["role"] == "assistant" and bad["content"] != json.dumps(GOOD_ANSWER, ensure_ascii=False)
    correction = second["messages"][len(MESSAGES) + 1]
    expected = {"not_json": "not valid JSON", "schema_violation": "does not match the schema",
                "length": "finish_reason=length" if backend == "openai" else "done_reason=length"}[kind]
    assert correction["role"] == "user" and expected in correction["content"]
    # Ollama gets the pydantic schema as it is; the OpenAI-compatible server the strict form of it.
    sent = Mapping.model_json_schema() if backend == "ollama" else STRICT_MAPPING
    assert request_schema(second) == request_schema(first) == sent
    assert [m.done_reason for m in metrics] == ["length" if kind == "length" else "stop", "stop"]
    assert sleeps.delays == []  # a corrective retry is a new question, not an HTTP retry


@pytest.mark.parametrize("kind", ["not_json", "schema_violation", "length"])
def test_an_answer_that_stays_invalid_raises_the_same_error_on_both_backends(
    backend: str, shared_ollama: FakeOllama, shared_openai: FakeOpenAI, kind: str
) -> None:
    server = server_for(backend, shared_ollama, shared_openai)
    server.fail_next(2, kind)
    with make_llm_client(backend, server.base_url) as c, pytest.raises(OllamaInvalidAnswer) as info:
        chat(c)
    exc = info.value
    assert isinstance(exc, LlmInvalidAnswer) and exc.kind == kind and exc.reason in str(exc)
    assert len(server.chat_calls()) == 2 and len(exc.metrics) == 2
    if kind == "not_json":
        assert exc.raw == NOT_JSON_CONTENT


def test_a_validator_rejection_is_retried_with_its_words_on_both_backends(
    backend: str, shared_ollama: FakeOllama, shared_openai: FakeOpenAI
) -> None:
    server = server_for(backend, shared_ollama, shared_openai)
    verdicts = iter(["degenerate repetition in beruf", None])
    with make_llm_client(backend, server.base_url) as c:
        answer, metrics = chat(c, validate=lambda obj: next(verdicts))
    assert answer == Mapping(**GOOD_ANSWER) and len(metrics) == 2
    assert "degenerate repetition in beruf" in server.chat_calls()[1].json()["messages"][-1]["content"]


@pytest.mark.parametrize("kind", ["500", "503", "429"])
def test_persistent_server_errors_end_as_a_transient_error_on_both_backends(
    backend: str, shared_ollama: FakeOllama, shared_openai: FakeOpenAI, sleeps: SleepRecorder, kind: str
) -> None:
    server = server_for(backend, shared_ollama, shared_openai)
    server.fail_next(10, kind)
    with make_llm_client(backend, server.base_url, max_retries=2, sleep=sleeps) as c, pytest.raises(
        OllamaTransientError
    ) as info:
        chat(c)
    assert isinstance(info.value, LlmTransientError) and info.value.status == int(kind)
    assert len(server.chat_calls()) == 3 and len(sleeps.delays) == 2
    assert "3 time(s)" in str(info.value) and [m.attempts for m in info.value.metrics] == [3]


def test_a_refused_connection_is_unavailable_on_both_backends(backend: str, sleeps: SleepRecorder) -> None:
    with make_llm_client(backend, closed_port_url(), max_retries=1, sleep=sleeps) as c, pytest.raises(
        LlmUnavailable
    ) as info:
        chat(c)
    assert "is not reachable" in str(info.value) and "OLLAMA_HOST" in str(info.value)
    assert len(sleeps.delays) == 1 and info.value.metrics[0].attempts == 2


def test_the_factory_names_the_variable_and_the_choices_for_an_unknown_backend() -> None:
    with pytest.raises(ValueError, match=r"^TY_LLM_BACKEND='vllm' is not valid: expected one of ollama, openai$"):
        make_llm_client("vllm", "http://localhost:8000")
    with make_llm_client(" OpenAI ", "http://h:8000", keep_alive="5m") as openai_client:
        assert isinstance(openai_client, OpenAICompatClient)
    with make_llm_client("ollama", "http://h:11434", api_key=KEY, stream=True) as ollama_client:
        assert isinstance(ollama_client, OllamaClient) and KEY not in str(ollama_client.session.headers)


# -- the OpenAI-compatible wire format ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_structured_answer_plain_and_streamed(fake: FakeOpenAI, sleeps: SleepRecorder, stream: bool) -> None:
    """The schema goes out as a strict json_schema `response_format`; Ollama-named options are mapped
    (`num_predict` -> `max_tokens`) and `num_ctx`, the server's own setting, is not sent."""
    with OpenAICompatClient(fake.base_url, stream=stream, sleep=sleeps) as c:
        answer, [m] = chat(c, options={"num_ctx": 4096, "num_predict": 300, "top_p": 0.9})
    assert answer == Mapping(**GOOD_ANSWER)
    [call] = fake.chat_calls()
    body = call.json()
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Mapping", "schema": STRICT_MAPPING, "strict": True},
    }
    assert (body["temperature"], body["seed"], body["max_tokens"], body["top_p"]) == (0, 42, 300, 0.9)
    assert not {"num_ctx", "num_predict", "options", "format", "keep_alive"} & set(body)
    assert body["messages"] == MESSAGES and body["stream"] is stream
    assert body.get("stream_options") == ({"include_usage": True} if stream else None)
    content = json.dumps(GOOD_ANSWER, ensure_ascii=False)
    prompt = "".join(msg["content"] for msg in MESSAGES)
    assert (m.endpoint, m.attempts, m.done_reason, m.host) == ("/v1/chat/completions", 1, "stop", c.shown_url)
    # the fake counts 4 characters per token, rounded up: the usage of exactly this exchange
    assert (m.prompt_eval_count, m.eval_count) == (-(-len(prompt) // 4), -(-len(content) // 4))


def test_cached_prompt_tokens_are_reported_when_the_server_says_them(sleeps: SleepRecorder) -> None:
    timing = LlmTiming(slots=2, prefill_tps=2000, decode_tps=40, time_scale=0.0, prefix_cache_entries=4)
    with FakeOpenAI(models=[CHAT_MODEL], responder=good_responder, timing=timing) as server:
        for stream in (False, True):
            with OpenAICompatClient(server.base_url, stream=stream, sleep=sleeps) as c:
                _, [first] = chat(c)
                _, [second] = chat(c)
            # the second call's prompt is the first one's: all but the last token come from the KV cache
            assert first.cached_prompt_tokens == 0 or stream
            assert second.cached_prompt_tokens == second.prompt_eval_count - 1 > 0
        server.report_cached_tokens = False  # vLLM's default: no prompt_tokens_details at all
        with OpenAICompatClient(server.base_url, sleep=sleeps) as c:
            _, [m] = chat(c)
        assert m.cached_prompt_tokens == 0 and m.prompt_eval_count > 0


def test_a_stream_cut_off_before_done_is_retried(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    """Without `data: [DONE]` the content may be a prefix that happens to parse: never judge it."""
    cut = ('data: {"choices": [{"index": 0, "delta": {"content": "{\\"beruf\\": \\"X\\"}"}, '
           '"finish_reason": null}]}\n\n')
    answers: list[Any] = [Response(body=cut, content_type="text/event-stream"), dict(GOOD_ANSWER)]
    fake.responder = lambda model, body: answers.pop(0)
    with OpenAICompatClient(fake.base_url, stream=True, max_retries=2, sleep=sleeps) as c:
        answer, [m] = chat(c)
    assert answer == Mapping(**GOOD_ANSWER) and m.attempts == 2 and len(sleeps.delays) == 1


def test_server_errors_are_retried_honouring_retry_after_then_succeed(
    fake: FakeOpenAI, client: OpenAICompatClient, sleeps: SleepRecorder
) -> None:
    fake.fail_next(1, "503", retry_after=2)
    fake.fail_next(1, "429", retry_after="7")
    fake.fail_next(1, "drop")
    answer, [m] = chat(client)
    assert answer == Mapping(**GOOD_ANSWER) and m.attempts == 4
    assert sleeps.delays[:2] == [2.0, 7.0] and len(sleeps.delays) == 3
    assert len(fake.chat_calls()) == 4


@pytest.mark.parametrize("error_style", ["openai", "vllm_legacy"])
def test_a_bad_request_fails_at_once_with_the_servers_message_in_both_error_shapes(
    sleeps: SleepRecorder, error_style: str
) -> None:
    with FakeOpenAI(models=[CHAT_MODEL], responder=good_responder, error_style=error_style) as server:
        server.fail_next(1, "400", message="max_tokens is too large: 90000")
        with OpenAICompatClient(server.base_url, sleep=sleeps) as c, pytest.raises(LlmRequestError) as info:
            chat(c)
        assert info.value.status == 400 and info.value.error == "max_tokens is too large: 90000"
        assert "max_tokens is too large: 90000" in str(info.value)
        with OpenAICompatClient(server.base_url, sleep=sleeps) as c, pytest.raises(LlmModelMissing) as missing:
            chat(c, model="llama3.2")
        assert missing.value.models == ["llama3.2"] and "`llama3.2` does not exist" in str(missing.value)
        assert len(server.chat_calls()) == 2 and sleeps.delays == []


def test_an_unknown_model_is_missing_at_once(fake: FakeOpenAI, client: OpenAICompatClient, sleeps: SleepRecorder) -> None:
    with pytest.raises(LlmModelMissing) as info:
        chat(client, model="qwen2.5")  # exact names: no `:latest` or tag guessing on these servers
    assert info.value.models == ["qwen2.5"] and "'qwen2.5'" in str(info.value)
    assert len(fake.chat_calls()) == 1 and sleeps.delays == []


# -- the API key -----------------------------------------------------------------------------------------


def test_the_api_key_is_sent_as_a_bearer_token(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    fake.api_key = KEY
    with OpenAICompatClient(fake.base_url, api_key=KEY, sleep=sleeps) as c:
        assert c.preflight([CHAT_MODEL]) == "openai-compatible (vllm)"
        assert chat(c)[0] == Mapping(**GOOD_ANSWER)
        assert KEY not in repr(c)
    assert {r.headers.get("authorization") for r in fake.requests} == {f"Bearer {KEY}"}


@pytest.mark.parametrize("sent", [None, "sk-wrong-0000"])
def test_a_401_says_what_to_do_about_ty_llm_api_key_without_showing_a_key(
    fake: FakeOpenAI, sleeps: SleepRecorder, sent: str | None
) -> None:
    fake.api_key = KEY
    with OpenAICompatClient(fake.base_url, api_key=sent, sleep=sleeps) as c:
        with pytest.raises(LlmRequestError) as chat_error:
            chat(c)
        with pytest.raises(LlmRequestError) as preflight_error:
            c.preflight([CHAT_MODEL])
    for error in (chat_error.value, preflight_error.value):
        text = str(error)
        assert error.status == 401 and "TY_LLM_API_KEY" in text
        assert ("is not set" in text) is (sent is None) and ("was rejected" in text) is (sent is not None)
        assert KEY not in text and (sent is None or sent not in text)
    assert sleeps.delays == [] and len(fake.chat_calls()) == 1  # a wrong key is not retried


def test_a_key_the_server_echoes_never_reaches_the_error_text(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    fake.fail_next(1, "400", message=f"Invalid request from key {KEY}")
    fake.fail_next(5, "500", message=f"internal error for key {KEY}")
    with OpenAICompatClient(fake.base_url, api_key=KEY, max_retries=1, sleep=sleeps) as c:
        with pytest.raises(LlmRequestError) as bad:
            chat(c)
        with pytest.raises(LlmTransientError) as broken:
            chat(c)
    for error in (bad.value, broken.value):
        assert KEY not in str(error) and "<redacted>" in str(error)
    assert KEY not in str(bad.value.error)


# -- preflight, models, URL ------------------------------------------------------------------------------


def test_preflight_names_the_missing_models_and_what_the_server_serves(
    fake: FakeOpenAI, client: OpenAICompatClient
) -> None:
    fake.models = [CHAT_MODEL, "bge-m3:latest"]
    with pytest.raises(LlmModelMissing) as info:
        client.preflight([CHAT_MODEL, "bge-m3", "mistral", CHAT_MODEL])
    text = str(info.value)
    assert info.value.models == ["bge-m3", "mistral"]  # `bge-m3` is not `bge-m3:latest` here
    assert f"It serves: bge-m3:latest, {CHAT_MODEL}" in text and "exactly" in text
    assert client.list_models() == [CHAT_MODEL, "bge-m3:latest"]
    assert client.preflight([CHAT_MODEL]) == client.version() == "openai-compatible (vllm)"


def test_preflight_fails_fast_when_nothing_listens(sleeps: SleepRecorder) -> None:
    with OpenAICompatClient(closed_port_url(), max_retries=4, sleep=sleeps) as c, pytest.raises(LlmUnavailable):
        c.preflight([CHAT_MODEL])
    assert len(sleeps.delays) <= 1


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("http://gpu-box:8000", "http://gpu-box:8000"),
        ("http://gpu-box:8000/v1", "http://gpu-box:8000"),
        ("http://gpu-box:8000/v1/", "http://gpu-box:8000"),
        ("gpu-box:8000", "http://gpu-box:8000"),
        ("https://llm.example.org/proxy/v1", "https://llm.example.org/proxy"),
    ],
)
def test_the_base_url_is_accepted_with_or_without_v1(given: str, root: str) -> None:
    assert normalize_base_url(given) == root


def test_a_v1_base_url_is_not_doubled_on_the_wire(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    with OpenAICompatClient(fake.base_url + "/v1/", sleep=sleeps) as c:
        c.preflight([CHAT_MODEL])
        chat(c)
    assert [r.path for r in fake.requests] == ["/v1/models", "/v1/chat/completions"]


def test_a_wrong_path_is_a_request_error_that_points_at_the_url(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    with OpenAICompatClient(fake.base_url + "/api", sleep=sleeps) as c, pytest.raises(LlmRequestError) as info:
        c.list_models()
    assert info.value.status == 404 and "root or its /v1" in str(info.value)


# -- embeddings -------------------------------------------------------------------------------------------


def test_embeddings_come_back_in_input_order(fake: EmbeddingFakeOpenAI, client: OpenAICompatClient) -> None:
    texts = ["Koch/Köchin", "Softwareentwickler/in", "Erzieher/in"]
    vectors, metrics = client.embed(model=EMBED_MODEL, inputs=texts)
    assert vectors == [[float(len(t)), float(i)] for i, t in enumerate(texts)]
    [call] = fake.requests_to("/v1/embeddings")
    assert call.json() == {"model": EMBED_MODEL, "input": texts}
    assert (metrics.endpoint, metrics.prompt_eval_count, metrics.attempts) == ("/v1/embeddings", 7, 1)
    assert client.embed(model=EMBED_MODEL, inputs=[])[0] == [] and len(fake.requests_to("/v1/embeddings")) == 1


def test_embeddings_missing_a_vector_are_an_invalid_answer(fake: EmbeddingFakeOpenAI, client: OpenAICompatClient) -> None:
    fake.drop_last = True
    with pytest.raises(LlmInvalidAnswer, match="2 embeddings .* for 3 inputs") as info:
        client.embed(model=EMBED_MODEL, inputs=["a", "b", "c"])
    assert info.value.kind == "embed_count"


# -- the resource ----------------------------------------------------------------------------------------


def test_the_resource_reads_backend_and_key_from_the_environment_at_use(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.api_key = KEY
    monkeypatch.setenv("TY_LLM_BACKEND", "openai")
    monkeypatch.setenv("TY_LLM_API_KEY", KEY)
    monkeypatch.setenv("OLLAMA_HOST", fake.base_url + "/v1")
    resource = OllamaResource(read_timeout_s=7.0, max_retries=1)
    assert KEY not in repr(resource)
    with resource.get_client() as pool:
        [c] = pool.clients
        assert isinstance(c, OpenAICompatClient) and c.timeout == (5.0, 7.0) and c.base_url == fake.base_url
        assert pool.preflight([CHAT_MODEL]).endswith("openai-compatible (vllm)")
        assert chat(pool)[0] == Mapping(**GOOD_ANSWER)
    monkeypatch.setenv("TY_LLM_HOSTS", f"{fake.base_url}/v1=2,{fake.base_url.replace('127.0.0.1', 'localhost')}=3")
    with resource.get_client() as pool:
        assert [type(c) for c in pool.clients] == [OpenAICompatClient, OpenAICompatClient]
        assert pool.total_slots == 5 and pool.preflight([CHAT_MODEL])
    monkeypatch.delenv("TY_LLM_HOSTS")
    monkeypatch.setenv("TY_LLM_BACKEND", "llamacpp")
    with pytest.raises(ValueError, match="expected one of ollama, openai"):
        resource.get_client()
    monkeypatch.delenv("TY_LLM_BACKEND")
    with resource.get_client() as default_pool:
        assert [type(c) for c in default_pool.clients] == [OllamaClient]
    assert OllamaResource(api_key=KEY).model_dump()["api_key"] == KEY and KEY not in repr(OllamaResource(api_key=KEY))


def test_a_wrong_backend_is_reported_when_the_definitions_load() -> None:
    """Like every other setting: one line naming the variable, before a run starts (settings_check)."""
    [problem] = check_environment({"TY_LLM_BACKEND": "vllm"})
    assert str(problem).startswith("TY_LLM_BACKEND='vllm'") and "ollama, openai" in str(problem)
    assert check_environment({"TY_LLM_BACKEND": "OpenAI"}) == check_environment({"TY_LLM_BACKEND": "ollama"}) == []


# -- one end-to-end proof: an LLM asset on the openai backend --------------------------------------------


def test_the_skill_keywords_lane_materializes_on_the_openai_backend(
    tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`TY_LLM_BACKEND=openai` and a bearer key from the environment, nothing else changed: the asset
    preflights via /v1/models, asks /v1/chat/completions, saves ok rows, and reports the prompt tokens the
    server's prefix cache served (here: the corrective retry re-sends the first call's whole prompt)."""
    from ty_pipeline_tests.test_llm_assets import DAY, FIXTURES, add_posting, meta, rows

    def skills(model: str, body: dict[str, Any]) -> dict[str, Any]:
        schema = request_schema(body)
        assert schema is not None and schema["title"] == "SkillList"
        assert body["response_format"]["json_schema"]["strict"] is True
        return {"skills": [{"name": "Python", "importance": "essential"},
                           {"name": "Englisch", "importance": "important"}]}

    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    engine = get_engine(url)
    ensure_schema(engine)
    ids = [add_posting(engine, fixtures_dir, name) for name in FIXTURES[:2]]
    timing = LlmTiming(slots=2, prefill_tps=2000, decode_tps=40, time_scale=0.0, prefix_cache_entries=4)
    with FakeOpenAI(responder=skills, api_key=KEY, timing=timing) as server:
        server.fail_next(1, "not_json")
        monkeypatch.setenv("TY_LLM_BACKEND", "openai")
        monkeypatch.setenv("TY_LLM_API_KEY", KEY)
        result = dg.materialize(
            [llm_enrichment], partition_key=DAY.isoformat(), selection=dg.AssetSelection.assets("skill_keywords"),
            run_config={"ops": {"llm_enrichment": {"config": {"workers": 1}}}},
            resources={"warehouse": WarehouseResource(url=url), "llm_scope": LlmScopeResource(),
                       "ollama": OllamaResource(host=server.base_url, max_retries=1)},
        )
        assert result.success
        assert len(server.chat_calls()) == 3 and server.requests_to("/v1/models")
    saved = rows(engine, "skill_keywords")
    assert {saved[pid]["status"] for pid in ids} == {"ok"}
    assert all(json.loads(saved[pid]["skills_json"]) == ["Python", "Englisch"] for pid in ids)
    m = meta(result, "skill_keywords")
    assert m["llm_server_version"] == "openai-compatible (vllm)" and m["llm_calls"] == 3
    assert 0 < m["cached_prompt_tokens"] < m["prompt_tokens"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM skill_keywords")).scalar_one() == 2


def test_the_host_pool_fails_over_between_openai_compatible_hosts(fake: FakeOpenAI, sleeps: SleepRecorder) -> None:
    """`TY_LLM_HOSTS` with `TY_LLM_BACKEND=openai`: the pool builds one client per host through the
    factory, and a host that refuses is taken out while the call is answered by the other one."""
    from ty_pipeline.clients.llm_hosts import HostPool
    from ty_pipeline.domain.llm_hosts import parse_llm_hosts

    fake.api_key = KEY
    specs = parse_llm_hosts(f"{closed_port_url()}=2,{fake.base_url}/v1=3", "localhost")
    with HostPool.from_specs(
        specs, lambda url: make_llm_client("openai", url, api_key=KEY, max_retries=0, sleep=sleeps)
    ) as pool:
        assert pool.total_slots == 5
        for _ in range(3):
            assert chat(pool)[0] == Mapping(**GOOD_ANSWER)
    assert len(fake.chat_calls()) == 3
    assert {r.headers.get("authorization") for r in fake.chat_calls()} == {f"Bearer {KEY}"}


# -- OpenAI's strict structured-output rules ----------------------------------------------------------------


class Place(BaseModel):
    """Nested, without `extra="forbid"`, and with an optional field: pydantic's schema of it breaks two
    of OpenAI's strict rules (no `additionalProperties: false`, `postcode` not in `required`)."""

    city: str
    postcode: str | None = None


class Posting(BaseModel):
    title: str
    places: list[Place]
    main: Place
    note: str = ""


def strict_body(schema: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    return {"model": CHAT_MODEL, "messages": MESSAGES, "response_format": {
        "type": "json_schema", "json_schema": {"name": "Posting", "schema": schema, "strict": strict}}}


def test_the_fake_refuses_strict_schemas_openai_refuses_with_openais_400(fake: FakeOpenAI) -> None:
    url = f"{fake.base_url}/v1/chat/completions"
    raw = Posting.model_json_schema()
    answer = requests.post(url, json=strict_body(raw), timeout=5)
    assert answer.status_code == 400
    assert answer.json() == {"error": {
        "message": "Invalid schema for response_format 'Posting': In context=(), 'additionalProperties' is "
                   "required to be supplied and to be false.",
        "type": "invalid_request_error", "param": "response_format", "code": None}}
    # Closed at the root but not in the nested definition; then closed everywhere but `note` not required.
    closed_root = {**raw, "additionalProperties": False, "required": ["title", "places", "main", "note"]}
    closed_root["properties"] = {**raw["properties"], "note": {"title": "Note", "type": "string"}}
    assert "In context=('$defs', 'Place'), 'additionalProperties'" in str(strict_schema_problem(closed_root, "P"))
    place = {**raw["$defs"]["Place"], "additionalProperties": False}
    place["properties"] = {**place["properties"], "postcode": {"anyOf": [{"type": "string"}, {"type": "null"}]}}
    closed = {**closed_root, "$defs": {"Place": place}}
    assert strict_schema_problem(closed, "P") == (
        "Invalid schema for response_format 'P': In context=('$defs', 'Place'), 'required' is required to be "
        "supplied and to be an array including every key in properties. Missing 'postcode'.")
    assert "'default' is not permitted" in str(strict_schema_problem(raw["$defs"]["Place"] | {
        "additionalProperties": False, "required": ["city", "postcode"]}, "P"))
    # Without `strict`, OpenAI takes any schema as guidance, and so does the fake.
    assert requests.post(url, json=strict_body(raw, strict=False), timeout=5).status_code == 200


def test_nested_objects_and_optional_fields_go_out_in_openais_strict_form(
    fake: FakeOpenAI, sleeps: SleepRecorder
) -> None:
    good = {"title": "Koch/Köchin", "places": [{"city": "Berlin", "postcode": None}],
            "main": {"city": "Berlin", "postcode": "10115"}, "note": ""}
    fake.responder = lambda _model, _body: good
    with OpenAICompatClient(fake.base_url, sleep=sleeps) as c:
        answer, _ = c.chat_structured(model=CHAT_MODEL, messages=MESSAGES, schema=Posting)
    assert answer == Posting(**good)
    [call] = fake.chat_calls()
    spec = call.json()["response_format"]["json_schema"]
    sent = spec["schema"]
    assert spec["strict"] is True
    assert (sent["additionalProperties"], sent["required"]) == (False, ["title", "places", "main", "note"])
    place = sent["$defs"]["Place"]  # reached through `items` and `$ref` alike
    assert (place["additionalProperties"], place["required"]) == (False, ["city", "postcode"])
    assert "default" not in place["properties"]["postcode"] and "default" not in sent["properties"]["note"]
    # Nullable stays nullable: a strict model may still say "no postcode".
    assert {"type": "null"} in place["properties"]["postcode"]["anyOf"]


IHL_SCHEMAS = [v for v in vars(ihl_schemas).values()
               if isinstance(v, type) and issubclass(v, BaseModel) and v.__name__.endswith("Output")]


@pytest.mark.parametrize("schema", [SkillList, SummaryFields, choice_schema(7), *IHL_SCHEMAS],
                         ids=lambda m: m.__name__)
def test_every_schema_the_pipeline_sends_passes_openais_strict_rules(schema: type[BaseModel]) -> None:
    spec = strict_response_format(schema.model_json_schema())["json_schema"]
    assert spec["strict"] is True
    assert strict_schema_problem(spec["schema"], spec["name"]) is None


def test_the_grade_schema_keeps_its_variants_and_goes_out_not_strict() -> None:
    """OpenAI refuses a root `anyOf` in strict mode; the grade's two variants (a FAIL needs a reason) are
    what grammar-constrained servers enforce, so they are kept and the schema goes out with `strict: false`
    rather than being flattened into one object that allows a FAIL without reasons."""
    spec = strict_response_format(Grade.model_json_schema())["json_schema"]
    assert spec["strict"] is False
    assert strict_schema_problem(spec["schema"], spec["name"]) is not None  # it really cannot be strict
    fail = spec["schema"]["anyOf"][1]
    assert fail["properties"]["reasons"]["minItems"] == 1 and fail["additionalProperties"] is False

"""The Ollama client against the loopback fake, over real HTTP.

Why these tests: the replaced system lost nights to LLM calls that hung, failed silently or saved
garbage (docs/domain_rules.md §10). Each test pins one promise a user relies on: transient failures are
retried and then succeed, permanent ones fail at once with a message that says what to do, invalid
answers get exactly one corrective retry and are never returned as answers, and the fake itself
answers in Ollama's real wire format so none of this is tested against a fantasy server.
Timing is asserted through injected `sleep` calls and the fake's request log, not wall-clock waits.
"""

from __future__ import annotations

import json
import pickle
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from pydantic import BaseModel

from ty_pipeline.clients.ollama import (
    DEFAULT_CHAT_OPTIONS,
    CallMetrics,
    OllamaClient,
    OllamaConnectionReset,
    OllamaError,
    OllamaInvalidAnswer,
    OllamaModelMissing,
    OllamaRequestError,
    OllamaTransientError,
    OllamaUnavailable,
    canonical_model_name,
    normalize_host,
)
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline_tests.fakes.http_base import Response
from ty_pipeline_tests.fakes.ollama_server import MSG_BUSY, NOT_JSON_CONTENT, FakeOllama, fake_vector
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


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeOllama]:
    """One server for the module: stopping a loopback server costs ~0.5 s (its poll interval)."""
    with FakeOllama(models=[CHAT_MODEL, EMBED_MODEL], responder=good_responder) as server:
        yield server


@pytest.fixture
def fake(shared_fake: FakeOllama) -> FakeOllama:
    shared_fake.reset()
    return shared_fake


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def client(fake: FakeOllama, sleeps: SleepRecorder) -> Iterator[OllamaClient]:
    with OllamaClient(fake.base_url, read_timeout_s=5.0, max_retries=3, sleep=sleeps) as ollama:
        yield ollama


def chat(client: OllamaClient, **kw: Any) -> tuple[BaseModel, list[CallMetrics]]:
    return client.chat_structured(model=kw.pop("model", CHAT_MODEL), messages=MESSAGES, schema=Mapping, **kw)


# -- the happy path ---------------------------------------------------------------------------------------


def test_chat_structured_sends_a_reproducible_non_streaming_schema_request(
    fake: FakeOllama, client: OllamaClient
) -> None:
    """stream false (else Ollama answers NDJSON), the schema as `format`, fixed temperature/seed and
    keep_alive are what make answers parseable, reproducible and fast; the metrics feed the run report."""
    answer, metrics = chat(client, options={"num_ctx": 4096})

    assert answer == Mapping(**GOOD_ANSWER)
    [call] = fake.chat_calls()
    body = call.json()
    assert body["stream"] is False
    assert body["format"] == Mapping.model_json_schema()
    assert body["options"] == {**DEFAULT_CHAT_OPTIONS, "num_ctx": 4096}
    assert body["options"]["temperature"] == 0 and body["options"]["seed"] == 42
    assert body["keep_alive"] == "30m"
    assert body["messages"] == MESSAGES
    [m] = metrics
    assert (m.model, m.endpoint, m.attempts, m.done_reason) == (CHAT_MODEL, "/api/chat", 1, "stop")
    assert m.eval_count > 0 and m.prompt_eval_count > 0
    assert m.load_duration_s == pytest.approx(1.25)  # first call: the fake reports a cold model load
    assert m.total_duration_s > m.eval_duration_s > 0 and m.wall_s > 0
    assert m.tokens_per_s == pytest.approx(m.eval_count / m.eval_duration_s)


def test_call_metrics_tolerate_missing_counters() -> None:
    """Ollama omits zero durations (a warm model has no load_duration); sums must not break."""
    m = CallMetrics.from_response(
        {"model": "x", "done": True, "eval_count": 5, "eval_duration": 250_000_000, "future_field": 1},
        model="x", endpoint="/api/chat", wall_s=0.3, attempts=2,
    )
    assert (m.load_duration_s, m.total_duration_s, m.prompt_eval_count, m.done_reason) == (0.0, 0.0, 0, None)
    assert m.eval_duration_s == pytest.approx(0.25) and m.tokens_per_s == pytest.approx(20.0)


def test_one_client_serves_parallel_workers(fake: FakeOllama, client: OllamaClient) -> None:
    """Assets fan calls out over a thread pool; the shared client must really run them concurrently: the
    server answers only once all four calls are inside it (a barrier, not a clock), so a client that
    serialised them would time out on the first."""
    arrived = threading.Barrier(4)

    def all_four_at_once(model: str, body: dict) -> object:
        arrived.wait(timeout=10)  # BrokenBarrierError -> the fake answers 599, the call fails
        return good_responder(model, body)

    fake.responder = all_four_at_once
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: chat(client)[0], range(4)))
    assert all(r == Mapping(**GOOD_ANSWER) for r in results)
    assert len(fake.chat_calls()) == 4 and not arrived.broken


# -- transient failures: retried -------------------------------------------------------------------------


def test_read_timeout_is_retried_and_then_succeeds(fake: FakeOllama, sleeps: SleepRecorder) -> None:
    fake.fail_next(1, "timeout", delay_s=1.0)
    with OllamaClient(fake.base_url, read_timeout_s=0.3, max_retries=2, sleep=sleeps) as quick:
        started = time.monotonic()
        answer, [m] = chat(quick)
        elapsed = time.monotonic() - started
    assert answer == Mapping(**GOOD_ANSWER)
    assert m.attempts == 2 and len(sleeps.delays) == 1
    assert len(fake.chat_calls()) == 2
    assert elapsed < 0.9, "the client waited for the slow answer instead of timing out at 0.3 s"


def test_read_timeouts_that_persist_raise_a_transient_error(fake: FakeOllama, sleeps: SleepRecorder) -> None:
    """A hung server is not 'unreachable': the posting fails, the message names the timeout."""
    fake.fail_next(2, "timeout", delay_s=0.6)
    quick = OllamaClient(fake.base_url, read_timeout_s=0.15, max_retries=1, sleep=sleeps)
    with quick, pytest.raises(OllamaTransientError, match="read timeout of 0.15 s") as info:
        chat(quick)
    assert [m.attempts for m in info.value.metrics] == [2]


@pytest.mark.parametrize("kind", ["500", "503", "429", "drop"])
def test_server_errors_are_retried_and_then_succeed(
    fake: FakeOllama, client: OllamaClient, sleeps: SleepRecorder, kind: str
) -> None:
    fake.fail_next(2, kind)
    answer, [m] = chat(client)
    assert answer == Mapping(**GOOD_ANSWER)
    assert m.attempts == 3
    assert len(fake.chat_calls()) == 3
    assert len(sleeps.delays) == 2


@pytest.mark.parametrize(
    ("kind", "message"),
    [("500", "an error was encountered while running the model"), ("503", "maximum pending requests exceeded")],
)
def test_persistent_server_errors_raise_a_transient_error_after_the_retries(
    fake: FakeOllama, client: OllamaClient, sleeps: SleepRecorder, kind: str, message: str
) -> None:
    fake.fail_next(10, kind)
    with pytest.raises(OllamaTransientError) as info:
        chat(client)
    assert len(fake.chat_calls()) == 4  # 1 + max_retries, not one more
    assert len(sleeps.delays) == 3
    assert info.value.status == int(kind)
    assert message in str(info.value) and "4 time(s)" in str(info.value)
    assert [m.attempts for m in info.value.metrics] == [4]


def test_retry_after_from_a_busy_server_is_honoured(fake: FakeOllama, client: OllamaClient, sleeps: SleepRecorder) -> None:
    """A full queue says when to come back; retrying earlier only adds load."""
    fake.fail_next(1, "503", retry_after=2)
    fake.fail_next(1, "429", retry_after="7")
    fake.fail_next(1, "503", retry_after="3600")  # capped at backoff_max_s: never park a worker for an hour
    chat(client)
    assert sleeps.delays == [2.0, 7.0, 30.0]


def test_backoff_is_jittered_exponential_and_capped(fake: FakeOllama, sleeps: SleepRecorder) -> None:
    fake.fail_next(5, "500")
    with OllamaClient(fake.base_url, max_retries=5, backoff_base_s=0.5, backoff_max_s=1.5, sleep=sleeps) as c:
        chat(c)
    ceilings = [0.5, 1.0, 1.5, 1.5, 1.5]
    assert len(sleeps.delays) == 5
    assert all(0 <= d <= cap for d, cap in zip(sleeps.delays, ceilings, strict=True)), sleeps.delays
    # full jitter: 200 draws for the 4th retry spread over the whole [0, cap] range
    draws = [c.backoff_delay(3) for _ in range(200)]
    assert max(draws) <= 1.5 and min(draws) < 0.3 and max(draws) > 1.2


# -- permanent failures: no retry, clear message -----------------------------------------------------------


def test_connection_refused_fails_fast_as_unavailable(sleeps: SleepRecorder) -> None:
    started = time.monotonic()
    with OllamaClient(closed_port_url(), max_retries=2, sleep=sleeps) as c, pytest.raises(OllamaUnavailable) as info:
        chat(c)
    assert time.monotonic() - started < 2.0
    assert len(sleeps.delays) == 2  # retried (a restarting server), then gave up
    text = str(info.value)
    assert "is not reachable" in text and "ollama serve" in text and "OLLAMA_HOST" in text
    assert info.value.metrics and info.value.metrics[0].attempts == 3


def test_a_tcp_reset_is_reported_as_a_reset_not_as_a_server_to_start(
    fake: FakeOllama, sleeps: SleepRecorder
) -> None:
    """Something is listening and cut the request: "start `ollama serve`" would send the operator the
    wrong way. Still a server failure (`OllamaUnavailable`): a run stops and charges no posting."""
    fake.fail_next(10, "reset", endpoint="chat")
    with OllamaClient(fake.base_url, max_retries=1, sleep=sleeps) as c, pytest.raises(OllamaConnectionReset) as info:
        chat(c)
    text = str(info.value)
    assert "reset the connection" in text and "server log" in text
    assert "not reachable" not in text and "ollama serve" not in text
    assert isinstance(info.value, OllamaUnavailable) and info.value.metrics[0].attempts == 2
    assert len(fake.chat_calls()) == 2


def test_a_reset_once_is_retried_like_any_dropped_connection(
    fake: FakeOllama, client: OllamaClient, sleeps: SleepRecorder
) -> None:
    fake.fail_next(1, "reset", endpoint="chat")
    answer, [m] = chat(client)
    assert answer == Mapping(**GOOD_ANSWER) and m.attempts == 2


def test_a_missing_model_fails_at_once_naming_the_model_and_the_fix(
    fake: FakeOllama, client: OllamaClient, sleeps: SleepRecorder
) -> None:
    with pytest.raises(OllamaModelMissing) as info:
        chat(client, model="llama3.2")
    assert "'llama3.2'" in str(info.value) and "ollama pull llama3.2" in str(info.value)
    assert info.value.models == ["llama3.2"]
    assert len(fake.chat_calls()) == 1 and sleeps.delays == []


def test_other_client_errors_fail_at_once_with_ollamas_message(
    fake: FakeOllama, client: OllamaClient, sleeps: SleepRecorder
) -> None:
    """bge-m3 is an embedding model: Ollama's 400 text is the most useful thing to show."""
    with pytest.raises(OllamaRequestError, match='"bge-m3" does not support chat') as info:
        chat(client, model=EMBED_MODEL)
    assert info.value.status == 400
    assert len(fake.chat_calls()) == 1 and sleeps.delays == []


def test_errors_survive_pickling_with_their_details() -> None:
    """Errors may cross process boundaries (Dagster step workers); keyword-only fields must survive."""
    original = OllamaInvalidAnswer("bad", reason="not JSON", raw="Sure!", kind="not_json",
                                   metrics=[CallMetrics(model="m", endpoint="/api/chat", wall_s=1.0, attempts=1)])
    copy = pickle.loads(pickle.dumps(original))
    assert (str(copy), copy.reason, copy.raw, copy.kind, copy.metrics) == (
        "bad", "not JSON", "Sure!", "not_json", original.metrics)
    missing = pickle.loads(pickle.dumps(OllamaModelMissing("gone", models=["x"])))
    assert missing.models == ["x"] and isinstance(missing, OllamaError)


# -- invalid answers: one corrective retry ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error_text"),
    [
        ("not_json", "not valid JSON"),
        ("schema_violation", "does not match the schema"),
        ("length", "done_reason=length"),
    ],
)
def test_an_invalid_answer_gets_one_corrective_retry(
    fake: FakeOllama, client: OllamaClient, kind: str, error_text: str
) -> None:
    fake.fail_next(1, kind)
    answer, metrics = chat(client)
    assert answer == Mapping(**GOOD_ANSWER)
    first, second = (c.json() for c in fake.chat_calls())
    bad_content = fake_answer_content(fake, 0)
    assert second["messages"][: len(MESSAGES)] == MESSAGES
    assert second["messages"][len(MESSAGES)] == {"role": "assistant", "content": bad_content}
    correction = second["messages"][len(MESSAGES) + 1]
    assert correction["role"] == "user" and error_text in correction["content"]
    assert len(second["messages"]) == len(MESSAGES) + 2
    assert second["format"] == first["format"] and second["options"] == first["options"]
    assert [m.done_reason for m in metrics] == ["length" if kind == "length" else "stop", "stop"]


def fake_answer_content(fake: FakeOllama, index: int) -> str:
    """What the fake answered to chat call `index`, read back from the follow-up request."""
    follow_up = fake.chat_calls()[index + 1].json()
    return follow_up["messages"][len(MESSAGES)]["content"]


@pytest.mark.parametrize("kind", ["not_json", "schema_violation", "length"])
def test_an_answer_that_stays_invalid_raises_with_reason_and_raw_text(
    fake: FakeOllama, client: OllamaClient, kind: str
) -> None:
    fake.fail_next(2, kind)
    with pytest.raises(OllamaInvalidAnswer) as info:
        chat(client)
    exc = info.value
    assert len(fake.chat_calls()) == 2  # exactly one corrective retry
    assert exc.kind == kind and exc.reason and exc.reason in str(exc)
    assert len(exc.metrics) == 2 and all(m.model == CHAT_MODEL for m in exc.metrics)
    assert exc.raw is not None
    if kind == "not_json":
        assert exc.raw == NOT_JSON_CONTENT
    elif kind == "schema_violation":
        assert "beruf" not in json.loads(exc.raw)
    else:
        full = json.dumps(GOOD_ANSWER, ensure_ascii=False)
        assert full.startswith(exc.raw) and len(exc.raw) < len(full)


def test_a_validator_rejection_is_retried_with_the_validators_words(fake: FakeOllama, client: OllamaClient) -> None:
    """Degenerate repetition is valid JSON in the schema; only the caller's validator can catch it."""
    fake.fail_next(1, "degenerate")
    seen: list[str] = []

    def no_loops(obj: BaseModel) -> str | None:
        assert isinstance(obj, Mapping)
        seen.append(obj.beruf)
        return "degenerate repetition in beruf" if re.search(r"(\b\w+\b)( \1){20,}", obj.beruf) else None

    answer, metrics = chat(client, validate=no_loops)
    assert answer == Mapping(**GOOD_ANSWER) and len(metrics) == 2
    assert seen[0].count("wichtig") >= 100  # the degenerate answer passed the schema and reached the validator
    correction = fake.chat_calls()[1].json()["messages"][-1]["content"]
    assert "degenerate repetition in beruf" in correction


def test_a_validator_message_written_for_the_model_is_passed_on_unchanged(
    fake: FakeOllama, client: OllamaClient
) -> None:
    own = "Your previous answer cannot be used because of these problems:\n- kldb: guessed\nAnswer again."
    calls = iter([own, None])
    chat(client, validate=lambda obj: next(calls))
    assert fake.chat_calls()[1].json()["messages"][-1] == {"role": "user", "content": own}


def test_a_validator_rejecting_twice_raises_invalid_answer(fake: FakeOllama, client: OllamaClient) -> None:
    with pytest.raises(OllamaInvalidAnswer) as info:
        chat(client, validate=lambda obj: "degenerate repetition")
    assert info.value.kind == "rejected" and info.value.reason == "degenerate repetition"
    assert json.loads(info.value.raw or "") == GOOD_ANSWER
    assert len(fake.chat_calls()) == 2


def test_a_transport_failure_after_an_invalid_answer_keeps_the_first_calls_metrics(
    fake: FakeOllama, client: OllamaClient
) -> None:
    fake.fail_next(1, "not_json")
    fake.fail_next(1, "404")
    with pytest.raises(OllamaModelMissing) as info:
        chat(client)
    assert [m.done_reason for m in info.value.metrics] == ["stop", None]


# -- preflight --------------------------------------------------------------------------------------------


def test_preflight_reports_an_unreachable_server_in_one_message(sleeps: SleepRecorder) -> None:
    with OllamaClient(closed_port_url(), max_retries=4, sleep=sleeps) as c, pytest.raises(OllamaUnavailable) as info:
        c.preflight([CHAT_MODEL])
    assert len(sleeps.delays) <= 1, "preflight must fail fast, not back off four times"
    assert re.search(r"Ollama at http://127\.0\.0\.1:\d+ is not reachable: .*`ollama serve`.*OLLAMA_HOST", str(info.value))


def test_preflight_lists_every_missing_model_with_its_pull_command(client: OllamaClient) -> None:
    with pytest.raises(OllamaModelMissing) as info:
        client.preflight([CHAT_MODEL, "llama3.1:8b", "mistral", EMBED_MODEL])
    text = str(info.value)
    assert info.value.models == ["llama3.1:8b", "mistral"]
    assert "ollama pull llama3.1:8b" in text and "ollama pull mistral" in text
    assert f"ollama pull {CHAT_MODEL}" not in text


def test_preflight_treats_name_and_name_latest_as_the_same_model(fake: FakeOllama, client: OllamaClient) -> None:
    fake.models = ["qwen2.5:7b-instruct", "bge-m3:latest"]
    assert client.preflight(["bge-m3", "qwen2.5:7b-instruct", "bge-m3:latest"]) == "0.32.15"
    assert canonical_model_name("library/bge-m3") == "library/bge-m3:latest"
    assert canonical_model_name("host:5000/ns/model") == "host:5000/ns/model:latest"


def test_preflight_survives_one_transient_error(fake: FakeOllama, client: OllamaClient, sleeps: SleepRecorder) -> None:
    fake.fail_next(1, "503", endpoint="/api/tags")
    assert client.preflight([CHAT_MODEL]) == "0.32.15"
    assert len(sleeps.delays) == 1


# -- embeddings -------------------------------------------------------------------------------------------


def test_embed_sends_one_batch_and_keeps_input_order(fake: FakeOllama, client: OllamaClient) -> None:
    texts = ["Softwareentwickler/in", "Senior Backend-Entwickler Python (m/w/d)", "Erzieher/in", "Koch/Köchin"]
    vectors, metrics = client.embed(model=EMBED_MODEL, inputs=texts)
    assert len(vectors) == len(texts)
    assert vectors == [pytest.approx(fake_vector(EMBED_MODEL, t, fake.embed_dim)) for t in texts]
    assert all(sum(x * x for x in v) == pytest.approx(1.0) for v in vectors)
    [call] = fake.embed_calls()
    assert call.json() == {"model": EMBED_MODEL, "input": texts, "truncate": True, "keep_alive": "30m"}
    assert metrics.endpoint == "/api/embed" and metrics.prompt_eval_count > 0 and metrics.attempts == 1


def test_embed_of_nothing_makes_no_request(fake: FakeOllama, client: OllamaClient) -> None:
    assert client.embed(model=EMBED_MODEL, inputs=[])[0] == []
    assert fake.embed_calls() == []


def test_embed_rejects_an_answer_with_the_wrong_number_of_vectors(client: OllamaClient) -> None:
    class DroppingFake(FakeOllama):
        def _embed(self, model: str, body: dict[str, Any]) -> Response:
            resp = super()._embed(model, body)
            payload = json.loads(resp.body)
            payload["embeddings"] = payload["embeddings"][:-1]
            return Response.json_body(payload)

    with (
        DroppingFake(models=[EMBED_MODEL]) as dropping,
        OllamaClient(dropping.base_url) as c,
        pytest.raises(OllamaInvalidAnswer, match="1 embeddings for 2 inputs") as info,
    ):
        c.embed(model=EMBED_MODEL, inputs=["a", "b"])
    assert info.value.kind == "embed_count"


def test_embed_retries_a_busy_server(fake: FakeOllama, client: OllamaClient, sleeps: SleepRecorder) -> None:
    fake.fail_next(1, "503", endpoint="embed")
    vectors, metrics = client.embed(model=EMBED_MODEL, inputs=["x"])
    assert len(vectors) == 1 and metrics.attempts == 2


# -- a server that dies mid-run ---------------------------------------------------------------------------


def test_a_server_that_dies_mid_run_is_reported_unavailable(fake: FakeOllama, client: OllamaClient) -> None:
    fake.stop_after(2)
    chat(client)
    chat(client)
    with pytest.raises(OllamaUnavailable):
        chat(client)
    assert fake.successful_chats == 2
    fake.revive()
    assert chat(client)[0] == Mapping(**GOOD_ANSWER)


# -- resource and configuration ---------------------------------------------------------------------------


def test_the_resource_builds_a_working_client(fake: FakeOllama) -> None:
    resource = OllamaResource(host=fake.base_url, read_timeout_s=7.0, max_retries=1, keep_alive="5m")
    with resource.get_client() as pool:  # a host pool of one: `OLLAMA_HOST` / `host` with 4 slots
        [c] = pool.clients
        assert isinstance(c, OllamaClient) and (c.timeout, c.max_retries, c.keep_alive) == ((5.0, 7.0), 1, "5m")
        assert pool.preflight([CHAT_MODEL]).endswith("0.32.15")
        chat(pool)
    assert fake.chat_calls()[0].json()["keep_alive"] == "5m"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("http://localhost:11434", "http://localhost:11434"),
        ("http://gpu-box:11434/", "http://gpu-box:11434"),
        ("gpu-box:11434", "http://gpu-box:11434"),
        ("gpu-box", "http://gpu-box:11434"),
        ("https://ollama.example.org", "https://ollama.example.org"),
    ],
)
def test_ollama_host_is_accepted_in_the_forms_the_ollama_cli_accepts(host: str, url: str) -> None:
    assert normalize_host(host) == url


# -- the fake speaks Ollama's wire format -----------------------------------------------------------------


def test_fake_errors_use_ollamas_exact_status_codes_and_texts(fake: FakeOllama) -> None:
    base = fake.base_url
    missing = requests.post(f"{base}/api/chat", json={"model": "llama3.2", "messages": MESSAGES, "stream": False})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'llama3.2' not found"})
    no_model = requests.post(f"{base}/api/chat", json={"messages": MESSAGES})
    assert (no_model.status_code, no_model.json()) == (400, {"error": "model is required"})
    bad_input = requests.post(f"{base}/api/embed", json={"model": EMBED_MODEL, "input": 42})
    assert (bad_input.status_code, bad_input.json()) == (400, {"error": "invalid input type"})
    fake.fail_next(1, "503")
    busy = requests.post(f"{base}/api/chat", json={"model": CHAT_MODEL, "messages": MESSAGES, "stream": False})
    assert busy.status_code == 503
    assert busy.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"} == {
        "error": MSG_BUSY}
    assert requests.get(f"{base}/").text == "Ollama is running"


def test_fake_chat_answer_has_ollamas_shape(fake: FakeOllama) -> None:
    resp = requests.post(
        f"{fake.base_url}/api/chat",
        json={"model": CHAT_MODEL, "messages": MESSAGES, "stream": False, "format": Mapping.model_json_schema()},
    )
    payload = resp.json()
    assert list(payload)[:5] == ["model", "created_at", "message", "done", "done_reason"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z", payload["created_at"])
    assert isinstance(payload["message"]["content"], str)
    assert json.loads(payload["message"]["content"]) == GOOD_ANSWER
    for key in ("total_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"):
        assert isinstance(payload[key], int) and payload[key] > 0, key


def test_fake_streams_ndjson_when_stream_is_not_false(fake: FakeOllama) -> None:
    """Forgetting `stream: false` must break a client test, as it would against a real server."""
    resp = requests.post(f"{fake.base_url}/api/chat", json={"model": CHAT_MODEL, "messages": MESSAGES})
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert len(lines) > 2 and lines[-1]["done"] is True and "eval_count" in lines[-1]
    assert json.loads("".join(line["message"]["content"] for line in lines)) == GOOD_ANSWER


def test_fake_embed_edge_cases(fake: FakeOllama) -> None:
    base = fake.base_url
    empty = requests.post(f"{base}/api/embed", json={"model": EMBED_MODEL, "input": []}).json()
    assert empty["embeddings"] == []
    single = requests.post(f"{base}/api/embed", json={"model": EMBED_MODEL, "input": "Koch"}).json()
    assert single["embeddings"] == [pytest.approx(fake_vector(EMBED_MODEL, "Koch", 32))]
    legacy = requests.post(f"{base}/api/embeddings", json={"model": EMBED_MODEL, "prompt": "Koch"}).json()
    assert len(legacy["embedding"]) == 32 and sum(x * x for x in legacy["embedding"]) > 2  # not normalised
    generate = requests.post(
        f"{base}/api/generate", json={"model": CHAT_MODEL, "prompt": "Hallo", "stream": False}
    ).json()
    assert json.loads(generate["response"]) == GOOD_ANSWER and generate["done_reason"] == "stop"

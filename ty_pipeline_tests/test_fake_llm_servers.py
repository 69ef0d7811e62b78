"""The LLM fakes themselves: the token-proportional timing model, its wiring into the fake Ollama, and
the OpenAI-compatible fake. Benchmarks and client tests trust these, so their behaviour is pinned here:
slot limits (counted, not timed), prefix-cache savings, saturation accounting, and the wire shapes."""

from __future__ import annotations

import base64
import json
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from ty_pipeline_tests.fakes.llm_timing import LlmTiming, common_prefix_chars, count_tokens
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.fakes.openai_server import FakeOpenAI, request_schema

QWEN = "qwen2.5:7b-instruct"
POSTING = "Stellenanzeige: Wir suchen eine Fachkraft für Lagerlogistik (m/w/d) in Vollzeit. " * 40
SCHEMA = {
    "title": "Grade",
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["PASS", "FAIL"]},
                   "reasons": {"type": "array", "items": {"type": "string"}, "maxItems": 8}},
    "required": ["verdict", "reasons"],
    "additionalProperties": False,  # sent as a strict json_schema too, which OpenAI's rules require
}


class VirtualClock:
    """A clock that only moves when the timing model sleeps: accounting checked exactly, no waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# -- the timing model -------------------------------------------------------------------------------------


def test_tokenizer_is_four_characters_per_token_and_prefixes_compare_exactly() -> None:
    assert [count_tokens(t) for t in ("", "abc", "abcd", "abcde", "x" * 4000)] == [1, 1, 1, 2, 1000]
    assert common_prefix_chars("Posting A, grade", "Posting A, skills") == len("Posting A, ")
    assert common_prefix_chars("abc", "abc") == 3 and common_prefix_chars("abc", "xbc") == 0


def test_a_call_costs_prefill_plus_decode_and_the_window_saturation_counts_idle_slots() -> None:
    clock = VirtualClock()
    timing = LlmTiming(slots=2, prefill_tps=1000, decode_tps=50, time_scale=1.0, clock=clock, sleep=clock.sleep)
    start = clock()
    first = timing.serve(QWEN, "x" * 4000, output_tokens=100)  # 1000 prompt tokens: 1 s + 2 s
    clock.sleep(1.0)  # the server idles for a second
    second = timing.serve(QWEN, "y" * 2000, output_tokens=50)  # 0.5 s + 1 s
    end = clock()

    assert (first.prefill_s, first.decode_s, first.busy_s) == (1.0, 2.0, 3.0)
    assert (second.prefill_s, second.decode_s) == (0.5, 1.0)
    totals = timing.totals()
    assert (totals.calls, totals.prompt_tokens, totals.output_tokens, totals.busy_s) == (2, 1500, 150, 4.5)
    # 4.5 busy slot-seconds over 5.5 s with 2 slots; one slot never used, and a second of nothing.
    assert timing.saturation(start, end) == pytest.approx(4.5 / (2 * 5.5))
    # A window that only covers the first call: one of two slots busy the whole time.
    assert timing.saturation(start, start + 3.0) == pytest.approx(0.5)
    assert timing.max_busy == 1


def test_prefix_cache_skips_the_shared_prefix_and_forgets_least_recent_prompts() -> None:
    clock = VirtualClock()
    timing = LlmTiming(slots=1, prefill_tps=1000, decode_tps=50, prefix_cache_entries=2, clock=clock,
                       sleep=clock.sleep)
    grade = timing.serve(QWEN, POSTING + "Grade the summary.", 10)
    skills = timing.serve(QWEN, POSTING + "List the skills.", 10)
    assert grade.cached_tokens == 0
    assert skills.cached_tokens == len(POSTING) // 4  # the posting was read once
    assert skills.prefill_s == pytest.approx((count_tokens(POSTING + "List the skills.") - skills.cached_tokens) / 1000)
    again = timing.serve(QWEN, POSTING + "List the skills.", 10)
    assert again.cached_tokens == count_tokens(POSTING + "List the skills.") - 1  # the last token is always run
    assert timing.serve("llama3.1:8b", POSTING, 10).cached_tokens == 0  # another model has its own KV cache

    timing.serve(QWEN, "z" * 400, 10)
    timing.serve(QWEN, "w" * 400, 10)  # two other prompts push the posting out of a 2-entry LRU
    assert timing.serve(QWEN, POSTING + "Grade the summary.", 10).cached_tokens == 0

    no_cache = LlmTiming(slots=1, clock=clock, sleep=clock.sleep)
    no_cache.serve(QWEN, POSTING, 10)
    assert no_cache.serve(QWEN, POSTING, 10).cached_tokens == 0


def test_a_fixed_call_overhead_holds_the_slot_on_top_of_the_tokens() -> None:
    clock = VirtualClock()
    timing = LlmTiming(slots=1, prefill_tps=1000, decode_tps=50, call_overhead_s=0.25, clock=clock, sleep=clock.sleep)
    start = clock()
    call = timing.serve(QWEN, "x" * 4000, output_tokens=0)  # an embedding request: 1000 tokens, no decode
    assert (call.prefill_s, call.busy_s) == (1.25, 1.25)
    assert clock() - start == pytest.approx(1.25)  # the slot was held for it, not only reported


def test_no_more_calls_run_than_there_are_slots_and_the_rest_wait() -> None:
    timing = LlmTiming(slots=3, prefill_tps=1000, decode_tps=1000, time_scale=0.005)
    release = threading.Barrier(12)

    def call(i: int) -> None:
        release.wait()  # all twelve ask at once
        timing.serve(QWEN, f"prompt {i} " * 200, output_tokens=2000)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(call, range(12)))
    assert timing.max_busy == 3
    assert timing.totals().calls == 12
    # Recorded slot intervals never overlap more than three deep.
    events = sorted([(c.started_real, 1) for c in timing.calls] + [(c.ended_real, -1) for c in timing.calls],
                    key=lambda e: (e[0], e[1]))
    depth = peak = 0
    for _, step in events:
        depth += step
        peak = max(peak, depth)
    assert peak == 3
    calls = timing.calls
    waited = [c for c in calls if any(o.ended_real <= c.started_real for o in calls)]
    assert len(waited) == 9  # every call beyond the first three started only after another had ended


# -- the fake Ollama with the timing model ----------------------------------------------------------------


def ollama_chat(base: str, user: str, *, system: str = "Du bist ein Assistent.") -> dict[str, Any]:
    body = {"model": QWEN, "stream": False, "format": SCHEMA,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
    resp = requests.post(f"{base}/api/chat", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_fake_ollama_counters_follow_the_timing_model_and_report_cache_hits() -> None:
    timing = LlmTiming(slots=4, prefill_tps=2000, decode_tps=40, time_scale=0.0, prefix_cache_entries=8)
    with FakeOllama(timing=timing) as fake:
        first = ollama_chat(fake.base_url, POSTING + "Bewerte.")
        second = ollama_chat(fake.base_url, POSTING + "Nenne die Fähigkeiten.")
    prompt = "Du bist ein Assistent." + POSTING + "Nenne die Fähigkeiten."
    content = second["message"]["content"]
    assert json.loads(content) == {"verdict": "PASS", "reasons": ["Beispiel"]}
    assert second["prompt_eval_count"] == count_tokens(prompt)  # the whole prompt, as Ollama >= 0.33
    assert second["prompt_eval_cached_count"] == len("Du bist ein Assistent." + POSTING) // 4
    assert "prompt_eval_cached_count" not in first
    assert second["eval_count"] == count_tokens(content)
    calls = timing.calls
    assert second["prompt_eval_duration"] == int(calls[1].prefill_s * 1e9)
    assert second["eval_duration"] == int(count_tokens(content) / 40 * 1e9)
    assert first["prompt_eval_duration"] > 5 * second["prompt_eval_duration"]  # the posting was read once


def test_fake_ollama_holds_calls_beyond_its_slots_in_its_queue() -> None:
    timing = LlmTiming(slots=2, prefill_tps=2000, decode_tps=1000, time_scale=0.005)
    arrived = threading.Barrier(6, timeout=10)

    def responder(model: str, body: dict[str, Any]) -> dict[str, Any]:
        arrived.wait()  # all six are inside the server before any of them asks for a slot
        return {"verdict": "PASS", "reasons": ["x" * 4000]}

    with FakeOllama(timing=timing, responder=responder) as fake:
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda i: ollama_chat(fake.base_url, f"Anzeige {i}"), range(6)))
        assert timing.max_busy == 2
        assert fake.max_overlap() > 2  # the client had more in flight; the server queued them


# -- the OpenAI-compatible fake ---------------------------------------------------------------------------


def completion(base: str, **body: Any) -> requests.Response:
    headers = body.pop("_headers", None)
    payload = {"model": QWEN, "messages": [{"role": "user", "content": POSTING}], **body}
    return requests.post(f"{base}/v1/chat/completions", json=payload, timeout=10, headers=headers)


JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "Grade", "schema": SCHEMA, "strict": True}}


def test_openai_fake_lists_models_and_answers_json_schema_requests_in_the_chat_completion_shape() -> None:
    with FakeOpenAI(models=[QWEN]) as fake:
        models = requests.get(f"{fake.base_url}/v1/models", timeout=5).json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == [QWEN]
        assert requests.get(f"{fake.base_url}/v1/models/{QWEN}", timeout=5).json()["id"] == QWEN
        resp = completion(fake.base_url, response_format=JSON_SCHEMA_FORMAT, max_tokens=512, temperature=0)
    assert resp.status_code == 200
    answer = resp.json()
    assert answer["object"] == "chat.completion" and answer["model"] == QWEN and answer["id"].startswith("chatcmpl-")
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    assert json.loads(choice["message"]["content"]) == {"verdict": "PASS", "reasons": ["Beispiel"]}
    usage = answer["usage"]
    assert usage["prompt_tokens"] == count_tokens(POSTING)
    assert usage["completion_tokens"] == count_tokens(choice["message"]["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}


def test_openai_fake_streams_server_sent_events_that_add_up_to_the_plain_answer() -> None:
    def responder(model: str, body: dict[str, Any]) -> dict[str, Any]:
        assert request_schema(body) == SCHEMA
        return {"verdict": "FAIL", "reasons": ["Die Anforderungen fehlen in der Zusammenfassung."]}

    with FakeOpenAI(models=[QWEN], responder=responder) as fake:
        plain = completion(fake.base_url, response_format=JSON_SCHEMA_FORMAT).json()
        resp = completion(fake.base_url, response_format=JSON_SCHEMA_FORMAT, stream=True,
                          stream_options={"include_usage": True})
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in resp.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


def test_openai_fake_cuts_an_answer_at_max_tokens_with_finish_reason_length() -> None:
    long_answer = {"verdict": "FAIL", "reasons": ["Zu lang. " * 100]}
    with FakeOpenAI(models=[QWEN], responder=lambda m, b: long_answer) as fake:
        answer = completion(fake.base_url, response_format=JSON_SCHEMA_FORMAT, max_tokens=20).json()
        fake.fail_next(1, "length")
        forced = completion(fake.base_url, max_tokens=64).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 20
    assert choice["message"]["content"] == json.dumps(long_answer, ensure_ascii=False)[:80]
    with pytest.raises(ValueError):
        json.loads(choice["message"]["content"])
    assert forced["choices"][0]["finish_reason"] == "length" and forced["usage"]["completion_tokens"] == 64


def test_openai_fake_errors_come_in_the_openai_shape_and_the_bearer_key_is_checked() -> None:
    with FakeOpenAI(models=[QWEN], api_key="geheim") as fake:
        no_key = completion(fake.base_url)
        wrong = completion(fake.base_url, _headers={"Authorization": "Bearer falsch"})
        ok = completion(fake.base_url, _headers={"Authorization": "Bearer geheim"})
        unknown = completion(fake.base_url, model="mistral:7b", _headers={"Authorization": "Bearer geheim"})
        no_messages = requests.post(f"{fake.base_url}/v1/chat/completions", json={"model": QWEN},
                                    headers={"Authorization": "Bearer geheim"}, timeout=5)
        fake.fail_next(1, "503", retry_after=2)
        busy = completion(fake.base_url, _headers={"Authorization": "Bearer geheim"})
    assert (no_key.status_code, wrong.status_code, ok.status_code) == (401, 401, 200)
    assert no_key.json()["error"]["type"] == "AuthenticationError"
    assert unknown.status_code == 404
    assert unknown.json() == {"error": {"message": "The model `mistral:7b` does not exist.", "type": "NotFoundError",
                                        "param": "model", "code": 404}}
    assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "2" and "error" in busy.json()

    with FakeOpenAI(models=[QWEN], error_style="vllm_legacy") as legacy:
        body = completion(legacy.base_url, model="nope").json()
    assert body["object"] == "error" and body["code"] == 404 and "nope" in body["message"]


def test_openai_fake_reports_cached_prompt_tokens_from_the_prefix_cache() -> None:
    timing = LlmTiming(slots=2, time_scale=0.0, prefix_cache_entries=8)
    with FakeOpenAI(models=[QWEN], timing=timing) as fake:
        messages = [{"role": "user", "content": POSTING}, {"role": "user", "content": "Bewerte."}]
        completion(fake.base_url, messages=messages)
        again = completion(fake.base_url, messages=[messages[0], {"role": "user", "content": "Fähigkeiten?"}]).json()
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == len(POSTING) // 4
    assert again["usage"]["prompt_tokens"] == count_tokens(POSTING + "Fähigkeiten?")
    assert timing.totals().cached_tokens == len(POSTING) // 4


def test_openai_fake_content_faults_and_dead_server() -> None:
    with FakeOpenAI(models=[QWEN]) as fake:
        fake.fail_next(1, "not_json")
        fake.fail_next(1, "degenerate")
        bad = completion(fake.base_url, response_format=JSON_SCHEMA_FORMAT).json()
        loop = completion(fake.base_url, response_format=JSON_SCHEMA_FORMAT).json()
        fake.stop_after(fake.successful_chats)
        with pytest.raises(requests.ConnectionError):
            completion(fake.base_url)
        fake.revive()
        assert completion(fake.base_url).status_code == 200
    with pytest.raises(ValueError):
        json.loads(bad["choices"][0]["message"]["content"])
    degenerate = json.loads(loop["choices"][0]["message"]["content"])
    assert degenerate["verdict"] == "PASS" and degenerate["reasons"][0].count("wichtig") == 300


def test_openai_fake_faults_the_model_listing_only_when_asked_and_resets_between_tests() -> None:
    timing = LlmTiming(slots=1, time_scale=0.0, prefix_cache_entries=4)
    with FakeOpenAI(models=[QWEN], timing=timing) as fake:
        fake.fail_next(1, "500", endpoint="models")
        assert completion(fake.base_url).status_code == 200  # chat calls are not hit by a listing fault
        listing = requests.get(f"{fake.base_url}/v1/models", timeout=5)
        assert listing.status_code == 500 and listing.json()["error"]["type"] == "InternalServerError"
        assert requests.get(f"{fake.base_url}/v1/models", timeout=5).status_code == 200
        fake.fail_next(2, "429")
        fake.models.append("extra")
        fake.reset()
        assert fake.pending_faults() == 0 and fake.models == [QWEN] and fake.requests == []
        assert timing.calls == [] and completion(fake.base_url).json()["usage"]["prompt_tokens_details"] == {
            "cached_tokens": 0}  # the prefix cache was emptied too


# -- embeddings: /v1/embeddings on the OpenAI-compatible fake, timing on both fakes ------------------------

BGE = "bge-m3"


def test_openai_fake_embeds_a_string_or_an_array_in_the_openai_shape() -> None:
    with FakeOpenAI(models=[BGE], embed_dim=8) as fake, FakeOllama(models=[BGE], embed_dim=8) as ollama:
        url = f"{fake.base_url}/v1/embeddings"
        one = requests.post(url, json={"model": BGE, "input": "Pflegefachkraft (m/w/d)"}, timeout=5).json()
        many = requests.post(url, json={"model": BGE, "input": ["Koch", "Erzieher/in in Teilzeit"]}, timeout=5).json()
        packed = requests.post(url, json={"model": BGE, "input": ["Koch"], "encoding_format": "base64"}, timeout=5).json()
        native = requests.post(f"{ollama.base_url}/api/embed", json={"model": BGE, "input": ["Koch"]}, timeout=5).json()
        assert len(fake.embed_calls(BGE)) == 3
    assert set(one) == {"object", "data", "model", "usage"} and one["object"] == "list" and one["model"] == BGE
    [item] = one["data"]
    assert set(item) == {"object", "index", "embedding"} and (item["object"], item["index"]) == ("embedding", 0)
    assert len(item["embedding"]) == 8 and sum(v * v for v in item["embedding"]) == pytest.approx(1.0)
    assert one["usage"] == {"prompt_tokens": count_tokens("Pflegefachkraft (m/w/d)"),
                            "total_tokens": count_tokens("Pflegefachkraft (m/w/d)")}
    assert [d["index"] for d in many["data"]] == [0, 1]
    assert many["usage"]["prompt_tokens"] == count_tokens("Koch") + count_tokens("Erzieher/in in Teilzeit")
    # The same model and text give the fake Ollama's vector: one scripted model behind both APIs.
    assert many["data"][0]["embedding"] == native["embeddings"][0]
    decoded = struct.unpack("<8f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(native["embeddings"][0], abs=1e-6)


def test_openai_fake_refuses_bad_embedding_requests_like_the_servers_do() -> None:
    with FakeOpenAI(models=[BGE]) as fake:
        url = f"{fake.base_url}/v1/embeddings"
        answers = {
            "empty": requests.post(url, json={"model": BGE, "input": []}, timeout=5),
            "numbers": requests.post(url, json={"model": BGE, "input": [1, 2]}, timeout=5),
            "unknown": requests.post(url, json={"model": "nomic-embed-text", "input": "x"}, timeout=5),
            "too_long": requests.post(url, json={"model": BGE, "input": ["x" * 4 * 9000]}, timeout=5),
            "format": requests.post(url, json={"model": BGE, "input": "x", "encoding_format": "int8"}, timeout=5),
        }
        fake.fail_next(1, "503", endpoint="embeddings", retry_after=1)
        busy = requests.post(url, json={"model": BGE, "input": "x"}, timeout=5)
        chat_after = completion(fake.base_url, model=BGE)  # the embeddings fault did not hit a chat call
        with pytest.raises(ValueError, match="transport faults only"):
            fake.fail_next(1, "not_json", endpoint="embeddings")
    assert {k: r.status_code for k, r in answers.items()} == {
        "empty": 400, "numbers": 400, "unknown": 404, "too_long": 400, "format": 400}
    assert answers["empty"].json()["error"]["param"] == "input"
    assert "maximum context length is 8192 tokens" in answers["too_long"].json()["error"]["message"]
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1" and chat_after.status_code == 200


@pytest.mark.parametrize("kind", ["ollama", "openai"])
def test_an_embedding_request_holds_a_slot_for_its_input_tokens(kind: str) -> None:
    clock = VirtualClock()
    timing = LlmTiming(slots=2, prefill_tps=1000, decode_tps=50, time_scale=1.0, call_overhead_s=0.02,
                       clock=clock, sleep=clock.sleep)
    texts = ["a" * 4000, "b" * 2000]  # 1,000 + 500 tokens: 1.5 s + 20 ms on one slot, no decode
    fake: FakeOllama | FakeOpenAI = FakeOllama(models=[BGE], timing=timing) if kind == "ollama" else \
        FakeOpenAI(models=[BGE], timing=timing)
    with fake:
        path = "/api/embed" if kind == "ollama" else "/v1/embeddings"
        assert requests.post(fake.base_url + path, json={"model": BGE, "input": texts}, timeout=5).status_code == 200
    [call] = timing.calls
    assert (call.prompt_tokens, call.output_tokens, call.decode_s) == (1500, 0, 0.0)
    assert call.prefill_s == pytest.approx(1.52)

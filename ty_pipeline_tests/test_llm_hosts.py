"""Several LLM hosts: `TY_LLM_HOSTS` parsing and the `HostPool` (slots, least-loaded dispatch, failover,
cool-down, models per host) against loopback Ollama fakes over real HTTP.

No wall-clock assertions: concurrency is proven with the fakes' request log (`max_overlap`), cool-downs
with an injected clock; fake latency only keeps calls in flight long enough to overlap.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pydantic import BaseModel

from ty_pipeline.clients.llm_hosts import HostPool, NoLlmHostLeft
from ty_pipeline.clients.ollama import (
    OllamaClient,
    OllamaConnectionReset,
    OllamaInvalidAnswer,
    OllamaModelMissing,
    OllamaTransientError,
    OllamaUnavailable,
    normalize_host,
)
from ty_pipeline.domain.llm_hosts import HostSpec, LlmHostsError, normalize_endpoint, parse_llm_hosts
from ty_pipeline.domain.llm_selection import LlmStatus, WorkItem
from ty_pipeline.enrichment.metrics import CallStats
from ty_pipeline.enrichment.runner import RUN_FATAL_ERRORS, Outcome, interleave, run_pool
from ty_pipeline.enrichment.skills import SkillPipeline, SkillSettings
from ty_pipeline.enrichment.throughput import host_runs
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.llm_client_cases import closed_port_url

MODEL = "qwen2.5:7b-instruct"
OTHER = "llama3.1:8b"
MESSAGES = [{"role": "user", "content": "Stellentitel: Analyst (m/w/d)"}]


class Answer(BaseModel):
    text: str


# -- parsing TY_LLM_HOSTS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   ", " , "[:0]])
def test_unset_or_blank_means_the_default_host_with_four_slots(value: str | None) -> None:
    assert parse_llm_hosts(value, "gpu1:8000") == [HostSpec("http://gpu1:8000", 4)]
    assert parse_llm_hosts(value, "http://localhost:11434") == [HostSpec("http://localhost:11434", 4)]


def test_a_list_of_urls_with_and_without_slots_whitespace_and_schemes_tolerated() -> None:
    specs = parse_llm_hosts(" http://h1:8000=32 ,h2:8000= 6,  https://h3 , gpu4 ,", "unused")
    assert specs == [
        HostSpec("http://h1:8000", 32),
        HostSpec("http://h2:8000", 6),
        HostSpec("https://h3", 4),
        HostSpec("http://gpu4:11434", 4),
    ]


def test_a_query_string_with_equals_signs_stays_part_of_the_url() -> None:
    assert parse_llm_hosts("http://h:8000/?k=v", "x") == [HostSpec("http://h:8000/?k=v", 4)]
    assert parse_llm_hosts("http://h:8000/?k=v=3", "x") == [HostSpec("http://h:8000/?k=v", 3)]


@pytest.mark.parametrize("value", ["localhost", "gpu:8000", "http://gpu:8000/", "https://proxy.example", "10.0.0.5"])
def test_hosts_without_scheme_normalise_like_ollama_host(value: str) -> None:
    assert normalize_endpoint(value) == normalize_host(value)


@pytest.mark.parametrize(
    "value, shown, problem",
    [
        ("http://h1:8000=abc", "http://h1:8000=abc", "positive whole number"),
        ("http://h1:8000=0", "http://h1:8000=0", "positive whole number"),
        ("http://h1:8000=-2", "http://h1:8000=-2", "positive whole number"),
        ("http://h1:8000=", "http://h1:8000=", "positive whole number"),
        ("http://user:s3cret@h1:8000=2.5", "http://h1:8000=2.5", "positive whole number"),
        ("ftp://h1:21=2", "ftp://h1:21=2", "http:// or https://"),
        ("http://user:s3cret@h1:port=2", "=2", "not a URL"),
        ("=4", "=4", "empty"),
    ],
)
def test_bad_items_are_refused_naming_the_variable_and_the_item_without_credentials(
    value: str, shown: str, problem: str
) -> None:
    with pytest.raises(LlmHostsError) as info:
        parse_llm_hosts(f"http://ok:8000=2, {value}", "unused")
    message = str(info.value)
    assert message.startswith("TY_LLM_HOSTS=")
    assert shown in message and problem in message
    assert "s3cret" not in message and "user" not in message
    assert isinstance(info.value, ValueError)


def test_a_host_listed_twice_is_refused_even_when_spelled_differently() -> None:
    with pytest.raises(LlmHostsError, match=r"http://h1:8000 is listed twice"):
        parse_llm_hosts("http://h1:8000=8, H1:8000=4", "unused")
    with pytest.raises(LlmHostsError, match="listed twice") as info:
        parse_llm_hosts("http://a:pw1@h1:80, http://b:pw2@h1", "unused")
    assert "pw1" not in str(info.value) and "pw2" not in str(info.value)


# -- helpers for the pool -----------------------------------------------------------------------------------


def client(url: str) -> OllamaClient:
    # No client-side retries: each test scripts exactly the failures the pool has to handle.
    return OllamaClient(url, max_retries=0, read_timeout_s=10.0, sleep=lambda _s: None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(pool: HostPool, model: str = MODEL) -> tuple[BaseModel, list[Any]]:
    return pool.chat_structured(model=model, messages=MESSAGES, schema=Answer)


@pytest.fixture
def two() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    with FakeOllama() as first, FakeOllama() as second:
        yield first, second


# -- slots and least-loaded dispatch --------------------------------------------------------------------


def test_a_host_never_sees_more_calls_at_once_than_its_slots() -> None:
    with FakeOllama(latency_s=0.05) as fake, HostPool([(client(fake.base_url), 3)]) as pool:
        with ThreadPoolExecutor(max_workers=12) as workers:
            answers = list(workers.map(lambda _i: ask(pool), range(36)))
        assert len(answers) == 36
        assert fake.max_overlap() == 3  # the budget was used, never exceeded (12 threads asked at once)
        assert pool.host_stats()[0].in_flight == 0


def test_calls_spread_over_two_hosts_in_proportion_to_their_slots() -> None:
    with FakeOllama(latency_s=0.03) as small, FakeOllama(latency_s=0.03) as big, \
            HostPool([(client(small.base_url), 2), (client(big.base_url), 6)]) as pool:
        with ThreadPoolExecutor(max_workers=8) as workers:
            list(workers.map(lambda _i: ask(pool), range(96)))
        stats = pool.host_stats()
    n_small, n_big = len(small.chat_calls()), len(big.chat_calls())
    assert n_small + n_big == 96
    assert n_small > 0 and n_big > 0
    assert n_big > 1.5 * n_small  # 6 slots vs 2: about three times the calls
    assert small.max_overlap() <= 2 and big.max_overlap() <= 6
    assert [s.calls for s in stats] == [n_small, n_big]
    assert all(s.busy_s > 0 for s in stats)


def test_idle_hosts_with_equal_slots_take_turns(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    with HostPool([(client(first.base_url), 4), (client(second.base_url), 4)]) as pool:
        for _ in range(6):
            ask(pool)
    assert len(first.chat_calls()) == 3 and len(second.chat_calls()) == 3


def test_an_idle_host_with_more_free_slots_wins_a_tie_of_load(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    with HostPool([(client(first.base_url), 2), (client(second.base_url), 8)]) as pool:
        for _ in range(4):
            ask(pool)
    assert len(first.chat_calls()) == 0 and len(second.chat_calls()) == 4


# -- failover and cool-down -------------------------------------------------------------------------------


def test_a_dead_host_costs_no_call_all_are_answered_by_the_other(two: tuple[FakeOllama, FakeOllama]) -> None:
    dead, alive = two
    dead.stop_after(0)  # drops every connection, as a crashed server behind a proxy does
    with HostPool([(client(dead.base_url), 4), (client(alive.base_url), 4)]) as pool:
        with ThreadPoolExecutor(max_workers=4) as workers:
            results = list(workers.map(lambda _i: ask(pool), range(20)))
        stats = pool.host_stats()
    assert len(results) == 20
    assert alive.successful_chats == 20 and dead.successful_chats == 0
    assert stats[0].state == "cooling" and stats[0].failures >= 2 and stats[0].cooldowns == 1
    assert pool.total_slots == 4
    # A call that failed over carries the failed attempt's metrics first (its cost stays accounted).
    assert any(len(metrics) == 2 for _obj, metrics in results)


def test_failed_attempt_metrics_come_first(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    first.fail_next(1, "500")
    with HostPool([(client(first.base_url), 4), (client(second.base_url), 4)]) as pool:
        _obj, metrics = ask(pool)
    assert len(metrics) == 2
    assert metrics[0].eval_count == 0 and metrics[1].eval_count > 0  # the 500, then the answer


def test_cool_down_is_entered_doubles_and_is_left_after_a_probe(two: tuple[FakeOllama, FakeOllama]) -> None:
    sick, healthy = two
    clock = FakeClock()
    pool = HostPool([(client(sick.base_url), 4), (client(healthy.base_url), 4)], cooldown_s=30, clock=clock)
    sick.fail_next(2, "500")
    for _ in range(6):
        ask(pool)
    state = pool.host_stats()[0]
    assert (state.state, state.failures, state.cooldowns, state.cooldown_left_s) == ("cooling", 2, 1, 30)
    assert len(sick.chat_calls()) == 2  # nothing more went there while it cooled down
    assert pool.total_slots == 4

    clock.now += 30
    assert pool.host_stats()[0].state == "probing"
    sick.fail_next(1, "503")  # the probe fails: straight back, for twice as long
    ask(pool)
    state = pool.host_stats()[0]
    assert (state.state, state.cooldowns, state.cooldown_left_s) == ("cooling", 2, 60)
    clock.now += 59
    for _ in range(3):
        ask(pool)
    assert len(sick.chat_calls()) == 3

    clock.now += 1
    ask(pool)  # the probe succeeds
    assert len(sick.chat_calls()) == 4
    assert pool.host_stats()[0].state == "healthy"
    assert pool.total_slots == 8
    sick.fail_next(2, "500")  # a success reset the doubling: the next cool-down is 30 s again
    for _ in range(4):
        ask(pool)
    assert pool.host_stats()[0].cooldown_left_s == 30


def test_every_host_down_stops_the_run_with_no_llm_host_left(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    first.stop_after(0)
    second.stop_after(0)
    pool = HostPool([(client(first.base_url), 2), (client(second.base_url), 2)])
    with pytest.raises(OllamaConnectionReset) as first_try:  # each failed once: the server error itself
        ask(pool)
    assert not isinstance(first_try.value, NoLlmHostLeft) and len(first_try.value.metrics) == 2
    with pytest.raises(NoLlmHostLeft) as info:  # each failed twice: both cool down
        ask(pool)
    assert isinstance(info.value, OllamaUnavailable) and isinstance(info.value, RUN_FATAL_ERRORS)
    assert "cooling down" in str(info.value) and first.base_url in str(info.value)
    asked = len(first.calls()) + len(second.calls())
    with pytest.raises(NoLlmHostLeft):
        ask(pool)
    assert len(first.calls()) + len(second.calls()) == asked  # no request while every host cools down


def test_a_transient_failure_on_every_host_surfaces_as_that_transient_error(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    first.fail_next(1, "500")
    second.fail_next(1, "503")
    with HostPool([(client(first.base_url), 2), (client(second.base_url), 2)]) as pool:
        with pytest.raises(OllamaTransientError) as info:
            ask(pool)
        assert not isinstance(info.value, OllamaUnavailable)  # the runner defers the posting, no stop
        assert len(info.value.metrics) == 2
        ask(pool)  # neither host reached its threshold: both still take calls
        assert {s.state for s in pool.host_stats()} == {"healthy"}


def test_an_invalid_answer_is_the_postings_problem_and_not_retried_elsewhere(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    first.fail_next(2, "not_json")
    second.fail_next(2, "not_json")
    with HostPool([(client(first.base_url), 2), (client(second.base_url), 2)]) as pool:
        with pytest.raises(OllamaInvalidAnswer) as info:
            ask(pool)
        assert len(first.chat_calls()) + len(second.chat_calls()) == 2  # one host, corrective retry included
        assert len(info.value.metrics) == 2
        assert [s.failures for s in pool.host_stats()] == [0, 0]


# -- models per host ----------------------------------------------------------------------------------------


def test_a_model_only_on_host_two_never_goes_to_host_one() -> None:
    with FakeOllama(models=[OTHER]) as first, FakeOllama(models=[MODEL, OTHER]) as second:
        with HostPool([(client(first.base_url), 4), (client(second.base_url), 4)]) as pool:
            version = pool.preflight([MODEL, OTHER])
            with ThreadPoolExecutor(max_workers=4) as workers:
                list(workers.map(lambda i: ask(pool, MODEL if i % 2 else OTHER), range(16)))
            stats = pool.host_stats()
        names = [fake.base_url.split("://")[1] for fake in (first, second)]
    assert version == f"{names[0]} 0.32.15, {names[1]} 0.32.15"
    assert first.chat_calls(MODEL) == [] and len(second.chat_calls(MODEL)) == 8
    assert len(first.chat_calls(OTHER)) > 0
    assert stats[0].missing_models == (MODEL,)


def test_a_model_that_disappears_during_the_run_is_asked_elsewhere(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    with HostPool([(client(first.base_url), 4), (client(second.base_url), 4)]) as pool:
        pool.preflight([MODEL])
        first.models = [OTHER]  # `ollama rm` on host one
        for _ in range(4):
            ask(pool)
        assert len(first.chat_calls(MODEL)) == 1  # the 404, then never again
        assert len(second.chat_calls(MODEL)) == 4
        assert pool.host_stats()[0].failures == 0  # a missing model is not a sick server


def test_a_model_on_no_host_fails_the_preflight() -> None:
    with FakeOllama(models=[OTHER]) as first, FakeOllama(models=[OTHER]) as second, \
            HostPool([(client(first.base_url), 4), (client(second.base_url), 4)]) as pool, \
            pytest.raises(OllamaModelMissing) as info:
        pool.preflight([MODEL, OTHER])
    assert info.value.models == [MODEL]
    assert f"ollama pull {MODEL}" in str(info.value)


def test_an_unreachable_host_is_left_out_at_preflight_and_only_no_host_at_all_fails() -> None:
    with FakeOllama() as alive:
        dead = closed_port_url()
        clock = FakeClock()
        with HostPool([(client(dead), 4), (client(alive.base_url), 4)], clock=clock) as pool:
            version = pool.preflight([MODEL])
            assert "unreachable" in version and "0.32.15" in version
            assert pool.host_stats()[0].state == "cooling"
            assert pool.total_slots == 4
            for _ in range(3):
                ask(pool)
            assert alive.successful_chats == 3
        with HostPool([(client(dead), 4), (client(closed_port_url()), 4)]) as nothing, \
                pytest.raises(NoLlmHostLeft, match="No LLM host is reachable"):
            nothing.preflight([MODEL])


# -- one host is today's client ----------------------------------------------------------------------------


def test_one_host_passes_errors_through_unchanged_and_never_cools_down() -> None:
    with FakeOllama(models=[MODEL]) as fake:
        alone, pooled = client(fake.base_url), HostPool([(client(fake.base_url), 4)])
        assert pooled.preflight([MODEL]) == alone.preflight([MODEL]) == "0.32.15"
        for _ in range(4):  # more than fail_threshold in a row: still the client's own error
            fake.fail_next(1, "500")
            with pytest.raises(OllamaTransientError) as expected:
                alone.chat_structured(model=MODEL, messages=MESSAGES, schema=Answer)
            fake.fail_next(1, "500")
            with pytest.raises(OllamaTransientError) as got:
                ask(pooled)
            assert type(got.value) is type(expected.value)
            assert str(got.value) == str(expected.value)
            assert len(got.value.metrics) == len(expected.value.metrics) == 1
        assert pooled.host_stats()[0].state == "healthy"
        with pytest.raises(OllamaModelMissing) as missing_alone:
            alone.preflight([OTHER])
        with pytest.raises(OllamaModelMissing) as missing_pooled:
            pooled.preflight([OTHER])
        assert str(missing_pooled.value) == str(missing_alone.value)
        _obj, metrics = ask(pooled)
        assert len(metrics) == 1
        pooled.close()
        alone.close()


def test_one_unreachable_host_raises_the_clients_own_unavailable() -> None:
    url = closed_port_url()
    with HostPool([(client(url), 4)]) as pool:
        with pytest.raises(OllamaUnavailable) as info:
            pool.preflight([MODEL])
        assert not isinstance(info.value, NoLlmHostLeft)
        assert "ollama serve" in str(info.value)


# -- with the real pipelines -------------------------------------------------------------------------------


def _items(n: int) -> list[WorkItem]:
    return [WorkItem(i, "deutsche_bank", f"R{i}", f"Title: Analyst {i}\nDescription:\nPython, SQL und IFRS.",
                     f"hash{i}", 1) for i in range(1, n + 1)]


def test_skill_pipeline_over_two_hosts_loses_nothing_when_one_dies_midway(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    first.latency_s = second.latency_s = 0.01
    first.stop_after(3)  # answers three postings, then drops every connection
    saved: dict[int, Outcome] = {}
    with HostPool([(client(first.base_url), 2), (client(second.base_url), 2)]) as pool:
        pipeline = SkillPipeline(pool, SkillSettings(model=MODEL))
        pool.preflight(pipeline.distinct_models)
        reports = run_pool(interleave({"skills": _items(16)}), lambda task: pipeline.run(task.item),
                           lambda task, outcome: saved.__setitem__(task.item.posting_id, outcome),
                           lanes=["skills"], workers=2 * pool.total_slots, stats={"skills": CallStats()},
                           log=lambda _msg: None, what="skills")
        stats = pool.host_stats()
    report = reports["skills"]
    assert report.aborted is None and report.deferred == [] and report.failures == []
    assert sorted(saved) == list(range(1, 17))
    assert {o.status for o in saved.values()} == {LlmStatus.OK}
    assert first.successful_chats == 3 and second.successful_chats == 13
    assert stats[0].state == "cooling"


def test_from_specs_builds_one_client_per_host_and_never_shows_credentials(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    value = ",".join(f"http://user:s3cret@{fake.base_url.split('://')[1]}={n}" for fake, n in ((first, 2), (second, 3)))
    first.stop_after(0)
    second.stop_after(0)
    with HostPool.from_specs(parse_llm_hosts(value, "unused"), client) as pool:
        assert pool.total_slots == 5
        for _ in range(2):
            with pytest.raises(OllamaUnavailable) as info:
                ask(pool)
        shown = [pool.shown_url, str(info.value), repr(pool), str(pool.stats_metadata())]
        assert isinstance(info.value, NoLlmHostLeft)
    assert all("s3cret" not in text for text in shown)
    assert list(pool.stats_metadata()) == [first.base_url, second.base_url]
    assert [s["slots"] for s in pool.stats_metadata().values()] == [2, 3]


def test_embeddings_fail_over_too_and_list_models_joins_the_hosts() -> None:
    with FakeOllama(models=["bge-m3", OTHER]) as first, FakeOllama(models=["bge-m3", MODEL]) as second, \
            HostPool([(client(first.base_url), 2), (client(second.base_url), 2)]) as pool:
        assert sorted(pool.list_models()) == sorted(["bge-m3:latest", f"{OTHER}", MODEL])
        first.fail_next(1, "reset", endpoint="embed")
        vectors, metrics = pool.embed(model="bge-m3", inputs=["Analyst", "Entwickler"])
        assert len(vectors) == 2 and metrics.endpoint == "/api/embed"
        assert len(first.embed_calls()) == 1 and len(second.embed_calls()) == 1
        assert pool.host_stats()[0].failures == 1
        first.stop_after(0)
        assert sorted(pool.list_models()) == sorted(["bge-m3:latest", MODEL])


def test_a_server_failure_elsewhere_is_not_turned_into_a_missing_model_by_a_host_without_it() -> None:
    with FakeOllama(models=[MODEL]) as first, FakeOllama(models=[OTHER]) as second, \
            HostPool([(client(first.base_url), 2), (client(second.base_url), 2)]) as pool:
        first.fail_next(1, "500")  # the only host with the model fails once, the other lacks it
        with pytest.raises(OllamaTransientError) as info:  # the posting is deferred, the run goes on
            ask(pool)
        assert not isinstance(info.value, OllamaModelMissing) and len(info.value.metrics) == 2
        ask(pool)
        assert len(first.chat_calls()) == 2 and len(second.chat_calls()) == 1


def test_the_throughput_record_reads_the_pools_per_host_counters(two: tuple[FakeOllama, FakeOllama]) -> None:
    first, second = two
    with HostPool([(client(first.base_url), 2), (client(second.base_url), 6)]) as pool:
        for _ in range(3):
            ask(pool)
        runs = host_runs(pool, {})
    assert [(r.host, r.slots) for r in runs] == [(first.base_url, 2), (second.base_url, 6)]
    assert sum(r.calls for r in runs) == 3 and all(r.busy_s > 0 for r in runs if r.calls)

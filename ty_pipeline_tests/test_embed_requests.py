"""Server encoders get several embedding requests in flight; CPU encoders one call at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from ty_pipeline.clients.embedder import (
    MAX_EMBED_REQUESTS_IN_FLIGHT,
    OllamaEncoder,
    balanced_batches,
    encode_texts,
    sorted_batches,
)


class SlowEncoder:
    """Deterministic vectors per text; each call sleeps and records how many calls overlap."""

    model_id = "fake:slow"
    window_tokens = 256

    def __init__(self, parallel: int | None) -> None:
        if parallel is not None:
            self.parallel_requests = parallel
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        rows = []
        for text in texts:
            rng = np.random.default_rng(abs(hash(text)) % (2**32))
            v = rng.standard_normal(8).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)


TEXTS = [f"Stellenanzeige Nummer {i}: wir suchen eine Fachkraft für Lagerlogistik." for i in range(40)]


def test_a_server_encoder_gets_its_parallel_requests_in_flight_and_the_same_vectors() -> None:
    sequential, parallel = SlowEncoder(None), SlowEncoder(4)
    one = encode_texts(sequential, TEXTS, max_chars=500, batch_size=4)
    many = encode_texts(parallel, TEXTS, max_chars=500, batch_size=4)
    assert sequential.most == 1 and sequential.calls == 10
    # 10 batches of 4 would leave two slots idle in the last round: 12 smaller ones fill three rounds.
    assert parallel.most == 4 and parallel.calls == 12 and many.encode_calls == 12
    assert all(a is not None and b is not None and np.array_equal(a, b) for a, b in zip(one.vectors, many.vectors, strict=True))


def test_an_error_of_one_request_reaches_the_caller() -> None:
    class Failing(SlowEncoder):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            if any("Nummer 7:" in t for t in texts):
                raise RuntimeError("server said 500")
            return super().encode(texts)

    encoder = Failing(3)
    try:
        encode_texts(encoder, TEXTS, max_chars=500, batch_size=4)
    except RuntimeError as error:
        assert "500" in str(error)
    else:
        raise AssertionError("the failed request was swallowed")


def test_the_ollama_encoder_takes_its_requests_from_the_host_pools_slots() -> None:
    class Pool:
        def __init__(self, slots: int) -> None:
            self.total_slots = slots

    assert OllamaEncoder(Pool(2), "bge-m3", window_tokens=2048).parallel_requests == 2
    assert OllamaEncoder(Pool(64), "bge-m3", window_tokens=2048).parallel_requests == MAX_EMBED_REQUESTS_IN_FLIGHT
    assert OllamaEncoder(object(), "bge-m3", window_tokens=2048).parallel_requests == 1


def test_a_page_for_a_server_is_cut_into_equal_requests_a_multiple_of_its_slots() -> None:
    """267 distinct chunks of a page at 64 per request and 4 slots: 5 requests in size order made the fifth
    run alone and the fourth hold the longest chunks; balanced, 8 requests of about equal tokens."""
    rng = np.random.default_rng(7)
    sizes = [int(x) for x in rng.integers(200, 1300, size=267)]
    items = [f"chunk {i}" for i in range(267)]
    size_of = dict(zip(items, sizes, strict=True))
    batches = balanced_batches(items, sizes, 64, 4)
    assert len(batches) == 8 and max(len(b) for b in batches) <= 64
    assert sorted(x for b in batches for x in b) == sorted(items)
    totals = [sum(size_of[x] for x in b) for b in batches]
    assert max(totals) - min(totals) <= max(sizes)
    in_order = sorted_batches(items, sizes, 64)
    assert [len(b) for b in in_order] == [64, 64, 64, 64, 11]
    ordered = [sum(size_of[x] for x in b) for b in in_order[:4]]
    assert ordered[-1] > 1.5 * ordered[0]  # what a server got before: the last request far the longest
    assert balanced_batches(items[:3], sizes[:3], 64, 4) == [[x] for x in sorted(items[:3], key=size_of.get, reverse=True)]
    assert balanced_batches([], [], 64, 4) == []

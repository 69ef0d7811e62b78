"""Aggregated LLM cost of one asset run: calls, tokens, seconds and latency percentiles."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class CallStats:
    """Thread-safe sum over `CallMetrics` records (one per model call, corrective retries included)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.http_attempts = 0
        self.prompt_tokens = 0
        # Prompt tokens the server read from its prefix cache, where it says so (OpenAI-compatible
        # `usage.prompt_tokens_details.cached_tokens`); 0 for servers that do not report it.
        self.cached_prompt_tokens = 0
        self.eval_tokens = 0
        self.seconds = 0.0
        self.load_seconds = 0.0
        self.latencies: list[float] = []
        self.calls_by_model: Counter[str] = Counter()
        self.done_reasons: Counter[str] = Counter()

    def add(self, metrics: Iterable[Any]) -> None:
        with self._lock:
            for m in metrics:
                self.calls += 1
                self.http_attempts += int(getattr(m, "attempts", 1) or 1)
                self.prompt_tokens += int(getattr(m, "prompt_eval_count", 0) or 0)
                self.cached_prompt_tokens += int(getattr(m, "cached_prompt_tokens", 0) or 0)
                self.eval_tokens += int(getattr(m, "eval_count", 0) or 0)
                wall = float(getattr(m, "wall_s", 0.0) or 0.0)
                self.seconds += wall
                self.load_seconds += float(getattr(m, "load_duration_s", 0.0) or 0.0)
                self.latencies.append(wall)
                self.calls_by_model[str(getattr(m, "model", "?"))] += 1
                reason = getattr(m, "done_reason", None)
                if reason:
                    self.done_reasons[str(reason)] += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "llm_calls": self.calls,
                "llm_http_attempts": self.http_attempts,
                "prompt_tokens": self.prompt_tokens,
                "cached_prompt_tokens": self.cached_prompt_tokens,
                "eval_tokens": self.eval_tokens,
                "llm_seconds": round(self.seconds, 3),
                "model_load_seconds": round(self.load_seconds, 3),
                "latency_p50_s": round(percentile(self.latencies, 50), 3),
                "latency_p95_s": round(percentile(self.latencies, 95), 3),
                "calls_by_model": dict(sorted(self.calls_by_model.items())),
                "done_reasons": dict(sorted(self.done_reasons.items())),
            }

"""A token-proportional latency model for the loopback LLM fakes: slots, prefill, decode, prefix cache.

Why: a flat per-call latency undervalues long prompts and hides what a real inference server does with
concurrency. This models one server (one Ollama host, one vLLM/SGLang/llama.cpp instance):

* `slots` calls run at once (`OLLAMA_NUM_PARALLEL`, vLLM `--max-num-seqs`, llama.cpp `-np`); a further
  call waits, still in flight from the client's point of view, until a slot is free (FIFO-ish: whoever
  the OS wakes first, as with a real queue there is no fairness promise).
* A call holds its slot for `call_overhead_s + prompt tokens not in the prefix cache / prefill_tps +
  output tokens / decode_tps` modelled seconds (the overhead, 0 by default, is reported as prefill). Rates are per slot, as if slots did not slow each other down: a real GPU
  shares its compute between slots, so treat the rates as "per slot at the planned parallelism".
* Optional prefix cache (`prefix_cache_entries > 0`): an LRU of the most recent prompts per model. The
  longest prefix (in whole tokens) a new prompt shares with any remembered prompt of the same model is
  not prefilled again, like vLLM's automatic prefix caching, SGLang's radix cache or Ollama's slot
  reuse. At least one token is always computed (a real server must run the last position). A prompt is
  remembered once its prefill is done, so two calls that start together do not share work.
* `time_scale` real seconds per modelled second (0.01: a modelled 8 s call takes 80 ms), so benchmarks
  use realistic rates (prefill 2,000 tok/s, decode 40 tok/s) and still finish in seconds. Every figure
  this module reports is in modelled seconds unless its name says `real`.

Tokenizer: deterministic and dependency-free: token i of a text is its characters [4i, 4i+4), so a text
has ceil(len/4) tokens (at least 1) and two texts share as many whole tokens as their common prefix has
whole 4-character blocks. Real BPE tokenizers average 3-4.5 characters per token on German and English
prose; the benchmark needs proportions, not exact counts.

Accounting: every call's slot interval is recorded, so `saturation(start, end)` = busy slot-seconds /
(slots x window) can be computed over any window (a benchmark excludes the ramp-up and the tail), and
`max_busy` is the most slots ever held at once (a test proves the slot limit with it, not with a clock).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

CHARS_PER_TOKEN = 4


def count_tokens(text: str) -> int:
    """Tokens of `text` under the 4-characters-per-token model (at least 1, as a real prompt has a BOS)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def common_prefix_chars(a: str, b: str) -> int:
    """Length of the common prefix; binary search over slice comparisons runs at C speed."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass(frozen=True)
class CallTiming:
    """What one call cost, in modelled seconds (`*_real` in wall seconds of this process)."""

    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    queue_s: float
    prefill_s: float
    decode_s: float
    started_real: float  # time.monotonic() when the call got its slot
    ended_real: float

    @property
    def busy_s(self) -> float:
        return self.prefill_s + self.decode_s

    @property
    def prefilled_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


@dataclass
class TimingTotals:
    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    busy_s: float = 0.0  # modelled slot-seconds
    queue_s: float = 0.0


@dataclass
class LlmTiming:
    """One modelled server; thread-safe, shared by every request thread of a fake."""

    slots: int = 4
    prefill_tps: float = 2000.0
    decode_tps: float = 40.0
    time_scale: float = 1.0
    prefix_cache_entries: int = 0  # 0 = no prefix cache
    call_overhead_s: float = 0.0  # modelled seconds every call holds its slot besides its tokens (counted as prefill)
    clock: Callable[[], float] = time.monotonic  # injectable, so accounting is testable without a clock
    sleep: Callable[[float], None] = time.sleep
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _busy: int = field(default=0, init=False)
    _max_busy: int = field(default=0, init=False)
    _cache: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict, init=False, repr=False)
    _calls: list[CallTiming] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError("slots must be >= 1")
        if self.prefill_tps <= 0 or self.decode_tps <= 0 or self.time_scale < 0 or self.call_overhead_s < 0:
            raise ValueError("token rates must be > 0, time_scale and call_overhead_s >= 0")

    # -- the call --------------------------------------------------------------------------------------

    def serve(self, model: str, prompt: str, output_tokens: int) -> CallTiming:
        """Block the calling request thread as the modelled server would: wait for a slot, prefill what
        the prefix cache does not hold, decode `output_tokens`, free the slot."""
        asked = self.clock()
        with self._cond:
            while self._busy >= self.slots:
                self._cond.wait()
            self._busy += 1
            self._max_busy = max(self._max_busy, self._busy)
            cached = self._cached_tokens(model, prompt)
        started = self.clock()
        prompt_tokens = count_tokens(prompt)
        prefill_s = self.call_overhead_s + (prompt_tokens - cached) / self.prefill_tps
        decode_s = max(0, output_tokens) / self.decode_tps
        try:
            self._sleep(prefill_s)
            with self._cond:
                self._remember(model, prompt)
            self._sleep(decode_s)
        finally:
            ended = self.clock()
            with self._cond:
                self._busy -= 1
                self._cond.notify()
        call = CallTiming(
            prompt_tokens=prompt_tokens, cached_tokens=cached, output_tokens=max(0, output_tokens),
            queue_s=self._modelled(started - asked), prefill_s=prefill_s, decode_s=decode_s,
            started_real=started, ended_real=ended,
        )
        with self._cond:
            self._calls.append(call)
        return call

    def _sleep(self, modelled_s: float) -> None:
        if modelled_s > 0 and self.time_scale > 0:
            self.sleep(modelled_s * self.time_scale)

    def _modelled(self, real_s: float) -> float:
        return real_s / self.time_scale if self.time_scale > 0 else 0.0

    def _cached_tokens(self, model: str, prompt: str) -> int:
        """Whole tokens of the longest remembered prefix, leaving at least one token to compute."""
        if self.prefix_cache_entries <= 0:
            return 0
        best = 0
        for cached_model, cached_prompt in self._cache:
            if cached_model == model:
                best = max(best, common_prefix_chars(prompt, cached_prompt))
        return min(best // CHARS_PER_TOKEN, count_tokens(prompt) - 1)

    def _remember(self, model: str, prompt: str) -> None:
        if self.prefix_cache_entries <= 0:
            return
        key = (model, prompt)
        self._cache[key] = None
        self._cache.move_to_end(key)
        while len(self._cache) > self.prefix_cache_entries:
            self._cache.popitem(last=False)

    # -- accounting ------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget calls and the prefix cache (the slot state is untouched: calls may still be running)."""
        with self._cond:
            self._calls.clear()
            self._cache.clear()
            self._max_busy = self._busy

    @property
    def calls(self) -> list[CallTiming]:
        with self._cond:
            return list(self._calls)

    @property
    def max_busy(self) -> int:
        """The most slots held at the same moment since start or `reset()`."""
        with self._cond:
            return self._max_busy

    def totals(self) -> TimingTotals:
        out = TimingTotals()
        for call in self.calls:
            out.calls += 1
            out.prompt_tokens += call.prompt_tokens
            out.cached_tokens += call.cached_tokens
            out.output_tokens += call.output_tokens
            out.busy_s += call.busy_s
            out.queue_s += call.queue_s
        return out

    def busy_real_s(self, start: float | None = None, end: float | None = None) -> float:
        """Wall slot-seconds held inside [start, end] (time.monotonic() values; None = unbounded)."""
        total = 0.0
        for call in self.calls:
            lo = call.started_real if start is None else max(start, call.started_real)
            hi = call.ended_real if end is None else min(end, call.ended_real)
            total += max(0.0, hi - lo)
        return total

    def saturation(self, start: float, end: float) -> float:
        """Busy slot-seconds / (slots x window) over [start, end] in wall time: 1.0 = no slot ever idle.
        Measured on the wall clock (a slot held is a slot held, whatever the scale), so it includes the
        sleep overshoot of the OS; with `time_scale` >= 0.005 that is a few percent at most."""
        window = end - start
        if window <= 0:
            raise ValueError("empty window")
        return self.busy_real_s(start, end) / (self.slots * window)

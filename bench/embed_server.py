"""The embedding server path against a loopback fake with a GPU latency model, shared by the benchmarks
(not a test): `bench_embeddings.py --fake-server` and `bench_scale.py --embed-server`.

What is shared:

* the modelled server (`EmbedServerModel`): `slots` requests at once, each holding its slot for
  `overhead_ms` + its inputs' tokens / `tps_per_slot` (4 characters per token, `llm_timing`'s tokenizer),
  no decode; `time_scale` real seconds per modelled second. The fakes apply it themselves: Ollama's
  `/api/embed` (`FakeOllama`) or the OpenAI-compatible `/v1/embeddings` (`FakeOpenAI`), by `api`;
* the client's environment (`client_env`): `TY_EMBED_BACKEND=ollama` with the fake as the only LLM host,
  so `encode_texts` keeps the host's slots in flight (`OllamaEncoder.parallel_requests`);
* turning a scaled run back into modelled time (`server_figures`): the wall time with at least one slot
  held is server time (divided by the scale), the rest is the client's own (reading pages, writing
  vectors, decoding answers), which is not scaled.

The default rate, and why (`DEFAULT_TPS_PER_SLOT`): `bench_llm_throughput.py` models the 8B chat model's
prefill at 2,000 tokens/s per slot with 32 slots per host, i.e. ~64,000 prompt tokens/s for a host whose
slots all prefill. A transformer forward pass costs ~2 FLOP per parameter per token, so bge-m3 (568M
parameters) costs 1/14 of an 8B model per token: at the same efficiency the same GPU would embed ~900,000
tokens/s. A small encoder runs far below a GPU's peak (small matrices, and Ollama runs a model's requests one
at a time by default, `OLLAMA_NUM_PARALLEL` 1), so the model takes much less:
4 slots x 5,000 tokens/s = 20,000 tokens/s per host, a third of the chat model's modelled prefill rate
for a model 14x cheaper per token. One public data point: 1,000 inputs embedded by bge-m3 on an RTX 4090
through Ollama in 6.8 s in one batched request (ollama/ollama#12239, input lengths not stated). The
benchmarks print the per-slot rate at which the run would take exactly 10 minutes, so the conclusion
does not hang on this guess.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ty_pipeline_tests.fakes.llm_timing import CHARS_PER_TOKEN, LlmTiming  # noqa: E402
from ty_pipeline_tests.fakes.ollama_server import FakeOllama  # noqa: E402
from ty_pipeline_tests.fakes.openai_server import FakeOpenAI  # noqa: E402

FAKE_MODEL = "bge-m3"  # what the server backend is meant for; 1024 dims, so the JSON is as large as the real one
FAKE_DIM = 1024
APIS = ("ollama", "openai")

CHAT_PREFILL_TPS_PER_SLOT = 2000.0  # bench_llm_throughput.py's --prefill-tps default (the 8B chat model)
CHAT_PARAMS, EMBED_PARAMS = 8.0e9, 0.568e9  # llama3.1:8b / qwen2.5:7b class; bge-m3
DEFAULT_SLOTS = 4
DEFAULT_TPS_PER_SLOT = 5000.0
DEFAULT_OVERHEAD_MS = 20.0  # parsing 64 inputs, tokenizing, launching the batch: a guess
GOAL_S = 600.0  # issue #13: the day's embeddings in <= 10 min


@dataclass(frozen=True)
class EmbedServerModel:
    slots: int = DEFAULT_SLOTS
    tps_per_slot: float = DEFAULT_TPS_PER_SLOT
    overhead_ms: float = DEFAULT_OVERHEAD_MS
    time_scale: float = 0.1

    def timing(self) -> LlmTiming:
        return LlmTiming(slots=self.slots, prefill_tps=self.tps_per_slot, time_scale=self.time_scale,
                         call_overhead_s=self.overhead_ms / 1000)

    def label(self, api: str) -> str:
        return (f"fake {api} ({'/api/embed' if api == 'ollama' else '/v1/embeddings'}), {self.slots} slot(s) x "
                f"{self.tps_per_slot:,.0f} tok/s, {self.overhead_ms:g} ms/request, time x{self.time_scale:g}")


def add_model_arguments(parser: argparse.ArgumentParser, *, slots: int = DEFAULT_SLOTS,
                        tps: float = DEFAULT_TPS_PER_SLOT, time_scale: float = 0.1) -> None:
    parser.add_argument("--embed-tps", type=float, default=tps,
                        help="modelled embedding rate per slot in tokens/s (4 chars/token)")
    parser.add_argument("--embed-overhead-ms", type=float, default=DEFAULT_OVERHEAD_MS,
                        help="modelled fixed cost per request")
    parser.add_argument("--embed-slots", type=int, default=slots, help="modelled requests the server runs at once")
    parser.add_argument("--time-scale", type=float, default=time_scale, help="real seconds per modelled second")


def model_from(args: argparse.Namespace) -> EmbedServerModel:
    return EmbedServerModel(slots=args.embed_slots, tps_per_slot=args.embed_tps,
                            overhead_ms=args.embed_overhead_ms, time_scale=args.time_scale)


def fake_embed_server(api: str, timing: LlmTiming | None) -> FakeOllama | FakeOpenAI:
    """A loopback server of `api` serving `FAKE_MODEL`; with `timing`, every embedding request holds a slot."""
    if api == "ollama":
        return FakeOllama(models=[FAKE_MODEL], embed_dim=FAKE_DIM, timing=timing)
    if api == "openai":
        return FakeOpenAI(models=[FAKE_MODEL], embed_dim=FAKE_DIM, timing=timing)
    raise ValueError(f"api is one of {APIS}")


def client_env(base: dict[str, str], fake: FakeOllama | FakeOpenAI, api: str, slots: int) -> dict[str, str]:
    """`base` with the server embedding backend pointed at `fake` as the only LLM host with `slots` slots."""
    env = {k: v for k, v in base.items() if k not in ("TY_LLM_HOSTS", "TY_LLM_BACKEND", "TY_LLM_API_KEY")}
    env.update(OLLAMA_HOST=fake.base_url, TY_LLM_BACKEND=api, TY_LLM_HOSTS=f"{fake.base_url}={slots}",
               TY_EMBED_BACKEND="ollama", TY_EMBED_MODEL=FAKE_MODEL)
    return env


@dataclass(frozen=True)
class ServerFigures:
    """One run against the modelled server. `*_real` in wall seconds here, the rest in modelled seconds."""

    requests: int
    tokens: int
    slots: int
    max_busy: int
    busy_s: float  # modelled slot-seconds
    window_real_s: float  # first slot taken .. last slot freed
    union_real_s: float  # wall time with at least one slot held
    union_s: float  # the same in modelled time

    @property
    def modelled_window_s(self) -> float:
        return self.client_s + self.union_s

    @property
    def client_s(self) -> float:
        """Wall time inside the window with no request on the server: the client's own, not scaled."""
        return self.window_real_s - self.union_real_s

    @property
    def saturation(self) -> float:
        """Busy slot-seconds / (slots x window), in modelled time."""
        return self.busy_s / (self.slots * self.modelled_window_s) if self.modelled_window_s > 0 else 0.0

    def modelled(self, real_s: float) -> float:
        """A wall time that contains the window, with the window put back in modelled time."""
        return real_s - self.window_real_s + self.modelled_window_s

    def scaled(self, factor: float) -> ServerFigures:
        """The same run `factor` times as long (a day of `factor` times the texts, served alike)."""
        return ServerFigures(
            requests=round(self.requests * factor), tokens=round(self.tokens * factor), slots=self.slots,
            max_busy=self.max_busy, busy_s=self.busy_s * factor, window_real_s=self.window_real_s * factor,
            union_real_s=self.union_real_s * factor, union_s=self.union_s * factor,
        )

    def tps_per_slot_for(self, target_s: float, modelled_total_s: float, overhead_s: float) -> float:
        """The per-slot rate at which a run of `modelled_total_s` would take `target_s`: its time with no
        request on the server stays as it is, the time with requests on it scales with the server's busy
        slot-seconds (tokens / rate + requests x overhead) at the slot occupancy of this run. inf when the
        rest alone is over the target."""
        if self.union_s <= 0:
            return float("inf")
        occupancy = self.busy_s / (self.slots * self.union_s)
        usable = (target_s - (modelled_total_s - self.union_s)) * self.slots * occupancy - self.requests * overhead_s
        return self.tokens / usable if usable > 0 else float("inf")


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(intervals):
        if hi <= end:
            continue
        total += hi - max(lo, end)
        end = hi
    return total


def server_figures(timing: LlmTiming) -> ServerFigures:
    """What the modelled server saw, and the run's window in modelled time (see the module docstring)."""
    calls = timing.calls
    totals = timing.totals()
    if not calls:
        return ServerFigures(0, 0, timing.slots, 0, 0.0, 0.0, 0.0, 0.0)
    start, end = min(c.started_real for c in calls), max(c.ended_real for c in calls)
    union = _union([(c.started_real, c.ended_real) for c in calls])
    scale = timing.time_scale if timing.time_scale > 0 else 1.0
    return ServerFigures(
        requests=totals.calls, tokens=totals.prompt_tokens, slots=timing.slots, max_busy=timing.max_busy,
        busy_s=totals.busy_s, window_real_s=end - start, union_real_s=union, union_s=union / scale,
    )


def chars_of(tokens: int) -> int:
    return tokens * CHARS_PER_TOKEN


# -- a same-run CPU baseline: the onnx backend on the day's kind of text --------------------------------------


def onnx_sample(n: int) -> dict[str, Any]:
    """In this process: encode `n` of bench_llm_throughput.py's posting texts (the 21 Deutsche Bank fixtures,
    each once when n <= 21: no repeated chunk flatters the rate) with `TY_EMBED_BACKEND=onnx` as the asset
    does (its chunk size and batch size); the encode loop's wall and CPU time."""
    from bench.bench_llm_throughput import bench_postings
    from ty_pipeline.clients.embedder import encode_texts
    from ty_pipeline.resources.embedder import EmbedderResource

    texts = [p.description for p in bench_postings(n)]
    embedder = EmbedderResource(backend="onnx")
    with embedder.open_encoder() as encoder:
        encoder.encode(["Aufwärmen."])  # the first call pays for the session's allocations
        t0, c0 = time.monotonic(), time.process_time()
        encoded = encode_texts(encoder, texts, max_chars=embedder.chunk_chars(encoder),
                               batch_size=embedder.encode_batch_size())
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
    chars = sum(len(t) for t in texts)
    return {"texts": n, "chunks": encoded.chunks, "repeats": encoded.duplicate_chunks, "chars": chars,
            "wall_s": wall, "cpu_s": cpu}


if __name__ == "__main__":  # child mode of `onnx_sample`, so its CPU and memory are its own
    if len(sys.argv) == 3 and sys.argv[1] == "--onnx-sample":
        print(json.dumps(onnx_sample(int(sys.argv[2]))))
    else:
        sys.exit("usage: embed_server.py --onnx-sample N")

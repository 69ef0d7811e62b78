"""A tiny code location for the pool test: one step in the `ollama` pool that records when it ran."""

import json
import os
import time

import dagster as dg


@dg.asset(pool="ollama")
def pooled_llm_step() -> None:
    started = time.time()
    time.sleep(2.0)
    with open(os.environ["POOL_SPANS"], "a", encoding="utf-8") as f:
        f.write(json.dumps([started, time.time()]) + "\n")


defs = dg.Definitions(assets=[pooled_llm_step])

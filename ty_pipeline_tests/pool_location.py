"""A tiny code location for the pool test: one step in the `ollama` pool that records when it ran."""

import json
import os
import time

import dagster as dg


@dg.asset(pool="ollama")
def pooled_llm_step() -> None:
    started = time.time()
    # Tells the test a run holds the slot, so it can launch the competing run (see the test).
    with open(os.environ["POOL_SPANS"] + ".started", "a", encoding="utf-8") as f:
        f.write(f"{started}\n")
    # Hold the slot until the test has seen the competing run queue up for it (at most 90 s).
    release = os.environ["POOL_SPANS"] + ".release"
    deadline = time.time() + 90
    while not os.path.exists(release) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    with open(os.environ["POOL_SPANS"], "a", encoding="utf-8") as f:
        f.write(json.dumps([started, time.time()]) + "\n")


defs = dg.Definitions(assets=[pooled_llm_step])

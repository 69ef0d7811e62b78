"""The executor of every job and asset materialization in the code location.

Each step still runs in its own process (a step that crashes or grows large never takes another step or
the run worker with it), but the processes are forked from a fork server that imported the pipeline once
per run, instead of each being a fresh interpreter that imports Dagster and the pipeline again. Dagster's
default start method is `spawn`: a night has about twenty steps (every asset check is a step), and each
spawned step spent 4 to 15 s importing before it did under a second of work (measured in the browser
test's nightly run on two busy cores).

The fork server imports `ty_pipeline.definitions`, which checks the settings and builds the definitions;
it does not import torch, ONNX Runtime or open connections (the embedding model and the database engines
are created inside a step), so nothing unsafe to fork is carried over.
"""

from __future__ import annotations

import multiprocessing

import dagster as dg

PRELOADED_MODULES = ["ty_pipeline.definitions"]

# Linux and macOS have a fork server; elsewhere (Windows) steps are spawned as Dagster does by default.
_START_METHOD: dict[str, object] = (
    {"forkserver": {"preload_modules": PRELOADED_MODULES}}
    if "forkserver" in multiprocessing.get_all_start_methods()
    else {"spawn": {}}
)

step_executor = dg.multiprocess_executor.configured({"start_method": _START_METHOD}, name="multiprocess_steps")

"""Every setting the code location reads from the environment, each bound to the one function that
parses it (`domain.setting_values.Setting`).

The resources check a value given by run config with the same parser (their pydantic field validators,
`resources/setting_fields.py`) and resolve an empty field from the environment through it when used;
`settings_check` runs every parser over the environment when the definitions load. So a wrong value
fails with the same one line wherever it was set. Dagster-free: `ty-pipeline status` checks settings too.
"""

from __future__ import annotations

from typing import Any

from ty_pipeline.domain import llm_scope
from ty_pipeline.domain.backend_names import EMBED_BACKENDS, normalize_llm_backend
from ty_pipeline.domain.llm_hosts import LLM_HOSTS, OLLAMA_HOST
from ty_pipeline.domain.setting_values import (
    STEP_MAX_RETRIES,
    STEP_RETRY_DELAY,
    WAREHOUSE_URL,
    Setting,
    http_url,
    parse_choice,
    parse_directory,
    text,
)
from ty_pipeline.domain.source_names import SOURCES

AA_BASE_URL = http_url("TY_AA_BASE_URL")
DB_BASE_URL = http_url("TY_DB_BASE_URL")
BERUFENET_API_URL = http_url("TY_BERUFENET_API_URL")
KLDB_CSV = Setting("TY_KLDB_CSV", text)  # a path, a URL or `seed`: checked when the catalog is read
EMBED_BACKEND = Setting("TY_EMBED_BACKEND", lambda value: parse_choice("TY_EMBED_BACKEND", value, EMBED_BACKENDS))
EMBED_MODEL = Setting("TY_EMBED_MODEL", text)
# Where the onnx backend keeps its one-time int8 export of the model (ty_pipeline.clients.onnx_embedder).
EMBED_CACHE_DIR = Setting("TY_EMBED_CACHE_DIR", lambda value: parse_directory("TY_EMBED_CACHE_DIR", value))
LLM_BACKEND = Setting("TY_LLM_BACKEND", normalize_llm_backend)
LLM_API_KEY = Setting("TY_LLM_API_KEY", text)  # a secret: no parser that could quote it
LLM_SOURCES = llm_scope.SOURCES
LLM_MAX_POSTINGS = llm_scope.MAX_POSTINGS
LLM_MIN_COMPLETE = llm_scope.MIN_COMPLETE

ENVIRONMENT: tuple[Setting[Any], ...] = (
    WAREHOUSE_URL,
    SOURCES,
    AA_BASE_URL,
    DB_BASE_URL,
    BERUFENET_API_URL,
    KLDB_CSV,
    EMBED_BACKEND,
    EMBED_MODEL,
    EMBED_CACHE_DIR,
    OLLAMA_HOST,
    LLM_BACKEND,
    LLM_HOSTS,
    LLM_API_KEY,
    LLM_SOURCES,
    LLM_MAX_POSTINGS,
    LLM_MIN_COMPLETE,
    STEP_RETRY_DELAY,
    STEP_MAX_RETRIES,
)

"""Which LLM client a run gets: `TY_LLM_BACKEND` `ollama` (native `/api/chat`) or `openai` (any
OpenAI-compatible `/v1/chat/completions` server). Both clients have the same methods and raise the same
errors (`llm_base.py`), so nothing above this choice knows which server answers."""

from __future__ import annotations

from typing import Any

from ty_pipeline.clients.ollama import OllamaClient
from ty_pipeline.clients.openai_compat import OpenAICompatClient
from ty_pipeline.domain.backend_names import DEFAULT_LLM_BACKEND, LLM_BACKENDS, normalize_llm_backend

BACKENDS = LLM_BACKENDS
DEFAULT_BACKEND = DEFAULT_LLM_BACKEND
normalize_backend = normalize_llm_backend

LlmClient = OllamaClient | OpenAICompatClient


def make_llm_client(backend: str, base_url: str, *, api_key: str | None = None, **settings: Any) -> LlmClient:
    """A client for `base_url`. `settings` are the clients' shared keyword arguments (timeouts,
    `max_retries`, backoff, `pool_size`, `sleep`); `keep_alive` only means something to Ollama and
    `stream` only to the OpenAI-compatible client, so each is dropped for the other backend. The API key
    is sent by the OpenAI-compatible client only: Ollama's native API has no authentication."""
    kind = normalize_backend(backend)
    if kind == "openai":
        settings.pop("keep_alive", None)
        return OpenAICompatClient(base_url, api_key=api_key, **settings)
    settings.pop("stream", None)
    return OllamaClient(base_url, **settings)

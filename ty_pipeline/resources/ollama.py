"""The Dagster resource for the LLM server: settings only; it builds the client (`ty_pipeline.clients`,
Dagster-free) for the configured backend: Ollama's native API or an OpenAI-compatible server."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.llm_factory import DEFAULT_BACKEND, LlmClient, make_llm_client, normalize_backend
from ty_pipeline.clients.ollama import DEFAULT_OLLAMA_HOST, normalize_host
from ty_pipeline.clients.openai_compat import normalize_base_url
from ty_pipeline.settings import from_env


class OllamaResource(dg.ConfigurableResource):
    """Connection settings for the LLM server (`OLLAMA_HOST`, `TY_LLM_BACKEND`, `TY_LLM_API_KEY`). Assets
    call `get_client()` once per step and share that client between their worker threads. (The name and
    the resource key `ollama` are kept: run config and the contract refer to them.)"""

    host: str = Field(
        default="",
        description="LLM server base URL (host:port is accepted; for the openai backend with or without /v1); "
        "empty: `OLLAMA_HOST`, else http://localhost:11434. Resolved at use, so run config that sets only a "
        "timeout keeps the environment's server",
    )
    backend: str = Field(
        default="",
        description="`ollama` (native /api/chat) or `openai` (OpenAI-compatible /v1/chat/completions: vLLM, "
        "SGLang, llama.cpp server, Ollama's /v1); empty: `TY_LLM_BACKEND`, else ollama",
    )
    api_key: str = Field(
        default="",
        repr=False,
        description="bearer token for OpenAI-compatible servers that need one; empty: `TY_LLM_API_KEY`. "
        "Prefer the environment variable: run config is shown in the UI",
    )
    connect_timeout_s: float = Field(default=5.0, description="TCP connect timeout per request")
    read_timeout_s: float = Field(
        default=180.0,
        description="longest wait for one non-streamed answer (covers the whole generation); with `stream` the "
        "longest silence between two pieces",
    )
    max_retries: int = Field(default=4, description="retries for timeouts, 5xx, 503 busy and 429 per request")
    keep_alive: str = Field(default="30m", description="how long Ollama keeps a model loaded after a call")
    pool_size: int = Field(default=8, description="pooled HTTP connections; at least the worker count")
    stream: bool = Field(
        default=False, description="openai backend: stream answers (server-sent events), which keeps a long "
        "generation's connection busy through proxies"
    )

    def backend_name(self) -> str:
        """`ollama` or `openai`: the configured backend, else `TY_LLM_BACKEND`, else ollama."""
        return normalize_backend(from_env(self.backend, "TY_LLM_BACKEND", DEFAULT_BACKEND))

    def endpoint(self) -> str:
        """The server this resource talks to: the configured host, else `OLLAMA_HOST`, else the default."""
        host = from_env(self.host, "OLLAMA_HOST", DEFAULT_OLLAMA_HOST) or DEFAULT_OLLAMA_HOST
        return normalize_base_url(host) if self.backend_name() == "openai" else normalize_host(host)

    def get_client(self) -> LlmClient:
        return make_llm_client(
            self.backend_name(),
            self.endpoint(),
            api_key=from_env(self.api_key, "TY_LLM_API_KEY", None),
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            max_retries=self.max_retries,
            keep_alive=self.keep_alive,
            pool_size=self.pool_size,
            stream=self.stream,
        )

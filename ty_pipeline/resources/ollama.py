"""The Dagster resource for the Ollama server: settings only; it builds the `OllamaClient`
(`ty_pipeline.clients.ollama`), which is Dagster-free."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.ollama import DEFAULT_OLLAMA_HOST, OllamaClient, normalize_host
from ty_pipeline.settings import from_env


class OllamaResource(dg.ConfigurableResource):
    """Connection settings for the Ollama server (`OLLAMA_HOST`). Assets call `get_client()` once per
    step and share that client between their worker threads."""

    host: str = Field(
        default="",
        description="Ollama base URL (host:port is accepted); empty: `OLLAMA_HOST`, else http://localhost:11434. "
        "Resolved at use, so run config that sets only a timeout keeps the environment's server",
    )
    connect_timeout_s: float = Field(default=5.0, description="TCP connect timeout per request")
    read_timeout_s: float = Field(
        default=180.0, description="longest wait for one non-streamed answer (covers the whole generation)"
    )
    max_retries: int = Field(default=4, description="retries for timeouts, 5xx, 503 busy and 429 per request")
    keep_alive: str = Field(default="30m", description="how long Ollama keeps a model loaded after a call")
    pool_size: int = Field(default=8, description="pooled HTTP connections; at least the worker count")

    def endpoint(self) -> str:
        """The server this resource talks to: the configured host, else `OLLAMA_HOST`, else the default."""
        return normalize_host(from_env(self.host, "OLLAMA_HOST", DEFAULT_OLLAMA_HOST) or DEFAULT_OLLAMA_HOST)

    def get_client(self) -> OllamaClient:
        return OllamaClient(
            self.endpoint(),
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            max_retries=self.max_retries,
            keep_alive=self.keep_alive,
            pool_size=self.pool_size,
        )

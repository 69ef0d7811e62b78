"""The Dagster resource for the LLM servers: settings only; it builds the Dagster-free clients.

`get_client()` returns a `HostPool` (`ty_pipeline.clients.llm_hosts`) over one client per host of
`TY_LLM_HOSTS` (unset: `OLLAMA_HOST` with 4 slots), so every LLM step spreads its calls over the
hosts' slots and fails over between them. Each host's client is built for the configured backend
(`TY_LLM_BACKEND`): Ollama's native API or an OpenAI-compatible server (`clients/llm_factory.py`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.llm_factory import DEFAULT_BACKEND, LlmClient, make_llm_client
from ty_pipeline.clients.llm_hosts import HostPool
from ty_pipeline.clients.ollama import DEFAULT_OLLAMA_HOST, normalize_host
from ty_pipeline.clients.openai_compat import normalize_base_url
from ty_pipeline.domain.llm_hosts import LLM_HOSTS, OLLAMA_HOST, HostSpec, parse_llm_hosts
from ty_pipeline.resources.setting_fields import checked_fields
from ty_pipeline.settings import LLM_API_KEY, LLM_BACKEND

MULTI_HOST_RETRIES = 1


class OllamaResource(dg.ConfigurableResource):
    """Connection settings for the LLM servers (`OLLAMA_HOST` / `TY_LLM_HOSTS`, `TY_LLM_BACKEND`,
    `TY_LLM_API_KEY`). Assets call `get_client()` once per step and share that client between their
    worker threads. (The name and the resource key `ollama` are kept: run config and the contract refer
    to them.)"""

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
    pool_size: int = Field(default=8, description="pooled HTTP connections per host; raised to the host's slots")
    hosts: str = Field(
        default="",
        description="comma list of LLM endpoints `URL` or `URL=SLOTS` (calls that server runs at once, default 4); "
        "empty: `TY_LLM_HOSTS`, else the single `host` above with 4 slots. Resolved at use",
    )
    stream: bool = Field(
        default=False, description="openai backend: stream answers (server-sent events), which keeps a long "
        "generation's connection busy through proxies"
    )

    _check_settings = checked_fields(host=OLLAMA_HOST, backend=LLM_BACKEND, hosts=LLM_HOSTS)

    def backend_name(self) -> str:
        """`ollama` or `openai`: the configured backend, else `TY_LLM_BACKEND`, else ollama."""
        return LLM_BACKEND.resolve(self.backend) or DEFAULT_BACKEND

    def endpoint(self) -> str:
        """The server this resource talks to: the configured host, else `OLLAMA_HOST`, else the default."""
        host = OLLAMA_HOST.resolve(self.host) or DEFAULT_OLLAMA_HOST
        return normalize_base_url(host) if self.backend_name() == "openai" else normalize_host(host)

    def host_specs(self) -> list[HostSpec]:
        """The hosts and their slots: `hosts`, else `TY_LLM_HOSTS`, else `endpoint()` with 4 slots."""
        return LLM_HOSTS.resolve(self.hosts) or parse_llm_hosts("", self.endpoint())

    def client_for(self, url: str, slots: int, *, max_retries: int | None = None) -> LlmClient:
        """One host's client for the configured backend: its HTTP connection pool holds a connection per slot."""
        return make_llm_client(
            self.backend_name(),
            url,
            api_key=LLM_API_KEY.resolve(self.api_key),
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            max_retries=self.max_retries if max_retries is None else max_retries,
            keep_alive=self.keep_alive,
            pool_size=max(self.pool_size, slots),
            stream=self.stream,
        )

    def get_client(self) -> HostPool:
        """A new pool per step: its per-host counters are that step's throughput record.

        With several hosts each client retries once at most: a call that fails on a sick host is better
        moved to a healthy one at once (the pool does that) than backed off on the sick one for a minute."""
        specs = self.host_specs()
        retries = None if len(specs) == 1 else min(self.max_retries, MULTI_HOST_RETRIES)
        return HostPool([(self.client_for(spec.url, spec.slots, max_retries=retries), spec.slots) for spec in specs])

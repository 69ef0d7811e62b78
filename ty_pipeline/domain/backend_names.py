"""The names `TY_LLM_BACKEND` and `TY_EMBED_BACKEND` accept.

Apart from the clients that implement them so that checking a setting (settings.py, and with it every
`ty-pipeline` command) does not import the HTTP clients, requests, pydantic and numpy: ~0.15 s of the
status command's one-second cold start (issue 13).
"""

from __future__ import annotations

from ty_pipeline.domain.setting_values import is_unset, parse_choice

LLM_BACKENDS = ("ollama", "openai")
DEFAULT_LLM_BACKEND = "ollama"
EMBED_BACKENDS = ("sentence-transformers", "onnx", "ollama")


def normalize_llm_backend(backend: str | None) -> str:
    """`ollama` or `openai` (case and spaces ignored; empty means the default); anything else is a
    `SettingError` that names the variable and the choices."""
    if is_unset(backend):
        return DEFAULT_LLM_BACKEND
    return parse_choice("TY_LLM_BACKEND", str(backend), LLM_BACKENDS)

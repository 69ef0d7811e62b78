"""What the LLM client tests of both backends (test_ollama_client.py, test_openai_client.py) share: the
request, the good answer and its schema, a recording `sleep`, and a port nobody listens on."""

from __future__ import annotations

import socket
from typing import Any

from pydantic import BaseModel, Field

CHAT_MODEL = "qwen2.5:7b-instruct"
EMBED_MODEL = "bge-m3"
MESSAGES = [
    {"role": "system", "content": "Du ordnest Stellentitel einem BERUFENET-Beruf zu. Antworte nur mit JSON."},
    {"role": "user", "content": 'Stellentitel: "Senior Backend-Entwickler Python (m/w/d)"'},
]
GOOD_ANSWER = {"beruf": "Softwareentwickler/in", "kldb": "43413", "anforderungsniveau": 3}


class Mapping(BaseModel):
    """A small structured answer with constraints the model can violate."""

    beruf: str
    kldb: str = Field(pattern=r"^\d{5}$")
    anforderungsniveau: int = Field(ge=1, le=4)


class SleepRecorder:
    """Injected as the client's `sleep`: records the backoff instead of waiting it out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def good_responder(model: str, request: dict[str, Any]) -> dict[str, Any]:
    return dict(GOOD_ANSWER)


def closed_port_url() -> str:
    """A port nobody listens on: connecting is refused at once (a stopped `ollama serve` or batch server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"

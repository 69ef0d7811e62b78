"""`TY_LLM_HOSTS`: the list of LLM servers a run spreads its calls over, and how many each runs at once.

Format: a comma list of `URL` or `URL=SLOTS`, e.g.
`http://gpu1:8000=32, http://gpu2:8000=32, gpu3:11434`. SLOTS is how many calls that server runs at
the same time (`OLLAMA_NUM_PARALLEL`, vLLM `--max-num-seqs`, llama.cpp `-np`); without it a host gets
`DEFAULT_SLOTS`. Unset or blank means the one default host (`OLLAMA_HOST`) with `DEFAULT_SLOTS`.

A host may be written without a scheme (`gpu1:8000`, or a bare `gpu1` which gets Ollama's port 11434),
as the ollama CLI accepts `OLLAMA_HOST`. Pure: no Dagster, no I/O. Every message shows URLs through
`redact_url`, because a host URL may carry a credential (`http://user:token@gpu1:8000`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ty_pipeline.domain.setting_values import Setting, SettingError
from ty_pipeline.domain.urls import redact_url

ENV_NAME = "TY_LLM_HOSTS"
DEFAULT_SLOTS = 4
DEFAULT_PORT = 11434
FORMAT_HINT = "a comma list of URL or URL=SLOTS, e.g. http://gpu1:8000=32,http://gpu2:8000=32"
_INTEGER = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class HostSpec:
    url: str  # normalised: scheme://[user:pw@]host:port[/path]; show it only through redact_url
    slots: int = DEFAULT_SLOTS

    @property
    def shown_url(self) -> str:
        return redact_url(self.url)


class LlmHostsError(SettingError):
    """A `TY_LLM_HOSTS` value the pipeline cannot use; the message names the bad item, redacted."""

    def __init__(self, item: str, problem: str) -> None:
        self.name = ENV_NAME
        self.shown = _shown_item(item)
        # The shape every SettingError has (`NAME='value' is not valid: ...`), with the bad item as value.
        ValueError.__init__(self, f"{ENV_NAME}={self.shown!r} is not valid: {problem} Expected {FORMAT_HINT}.")
        self.expected = FORMAT_HINT


def _shown_item(item: str) -> str:
    """An item of the list as it may be shown: its URL part redacted, the slot part kept."""
    url, sep, slots = item.strip().rpartition("=")
    if not sep:
        url, slots = item.strip(), ""
    shown = redact_url(url if "://" in url or "@" in url else url.strip())
    return f"{shown}={slots.strip()}" if sep else shown


def normalize_endpoint(value: str, default_port: int = DEFAULT_PORT) -> str:
    """`host:port` or a bare host gets `http://` (and, without a port, `default_port`); a URL with a
    scheme is kept as given (a reverse proxy may serve on 443). Raises ValueError for what no HTTP
    client could reach: another scheme, no host, a port that is not a number."""
    text = value.strip().rstrip("/")
    if not text:
        raise ValueError("the URL is empty")
    explicit = "://" in text
    if not explicit:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{redact_url(text)} is not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{redact_url(text)} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{redact_url(text)} names no host")
    if not explicit and port is None:
        # Keep user info and IPv6 brackets: append the port to the authority as written.
        text = f"{parts.scheme}://{parts.netloc}:{default_port}{parts.path}"
    return text


def _key(url: str) -> str:
    """What makes two entries the same server: scheme, host and port, case-insensitive, credentials and
    path ignored (two paths on one server still share its GPU slots)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


def parse_llm_hosts(value: str | None, default_host: str) -> list[HostSpec]:
    """The hosts of `TY_LLM_HOSTS`, in the order given; blank -> `[HostSpec(default_host, 4)]`.

    The slot count is whatever follows the item's last `=`, so write a URL whose query string holds
    `=` with an explicit slot count (`http://h:8000/?k=v=4`). Empty items (a trailing comma) are
    ignored; a host listed twice is refused, since its slots would be counted twice.
    """
    if value is None or not value.strip():
        try:
            return [HostSpec(normalize_endpoint(default_host or "localhost"), DEFAULT_SLOTS)]
        except ValueError as exc:
            raise LlmHostsError(default_host, f"the default host (OLLAMA_HOST) is unusable: {exc}.") from None
    specs: list[HostSpec] = []
    seen: dict[str, str] = {}
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        url_text, sep, slots_text = item.rpartition("=")
        has_slots = bool(sep)
        if has_slots and "?" in url_text and not _INTEGER.match(slots_text.strip()):
            has_slots = False  # the `=` belongs to the URL's query string
        if not has_slots:
            url_text = item
        slots = DEFAULT_SLOTS
        if has_slots:
            text = slots_text.strip()
            if not _INTEGER.match(text) or int(text) < 1:
                raise LlmHostsError(
                    item, f"the slot count of {_shown_item(item)!r} must be a positive whole number, not {text!r}."
                )
            slots = int(text)
        try:
            url = normalize_endpoint(url_text)
        except ValueError as exc:
            raise LlmHostsError(item, f"{_shown_item(item)!r} is not a usable host: {exc}.") from None
        key = _key(url)
        if key in seen:
            raise LlmHostsError(
                item, f"{redact_url(url)} is listed twice ({seen[key]!r} and {_shown_item(item)!r}); list each host "
                "once, with all its slots.",
            )
        seen[key] = _shown_item(item)
        specs.append(HostSpec(url, slots))
    if not specs:
        raise LlmHostsError(value, "the list names no host.")
    return specs


def check_endpoint(name: str, value: str) -> str:
    """A server setting (`OLLAMA_HOST`) an HTTP client can reach, as given: each backend normalises it
    its own way (Ollama's port, the OpenAI-compatible `/v1`)."""
    try:
        normalize_endpoint(value)
    except ValueError:
        raise SettingError(name, value, "an http:// or https:// URL, or host:port") from None
    return value.strip()


OLLAMA_HOST = Setting("OLLAMA_HOST", lambda value: check_endpoint("OLLAMA_HOST", value))
# A blank value never reaches `parse` (it means "the default host"), so the fallback here is never used.
LLM_HOSTS = Setting(ENV_NAME, lambda value: parse_llm_hosts(value, f"localhost:{DEFAULT_PORT}"))

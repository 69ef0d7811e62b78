"""Several LLM hosts behind one client: a slot budget per host, least-loaded dispatch, cool-down, failover.

`HostPool` has the methods the LLM pipelines and the resource use on a single client (`chat_structured`,
`embed`, `preflight`, `list_models`, `close`, `shown_url`), so a pipeline cannot tell one host from
many. Dagster-free; the list of hosts comes from `TY_LLM_HOSTS` (`ty_pipeline.domain.llm_hosts`).

* Slots: at most `slots` calls are in flight on a host at once, counted on the client side, so a server
  is never handed more than it runs in parallel (a queue on the server hides which host is free). A
  call holds its slot for the whole `chat_structured`, the corrective retry included. A call waits on
  a condition variable until an eligible host has a free slot, then takes the least loaded one
  (in-flight / slots; ties: more free slots, then round robin).
* Failover: a host whose call ends in a server failure (refused, reset, timeout, 5xx: the client's
  `OllamaUnavailable`, `OllamaConnectionReset`, `OllamaTransientError`, raised after its own retries)
  is charged a failure; after `fail_threshold` failures in a row it cools down (`cooldown_s`, doubling
  per repeated cool-down up to `max_cooldown_s`; a success resets both). The failed call moves to a
  host it has not tried yet, so the posting's pipeline never sees the failure. Only when every host
  failed it does the last error surface (a transient one defers the posting), or `NoLlmHostLeft`
  (a kind of `OllamaUnavailable`: the run stops taking postings) when every host that could take it
  is cooling down. After its cool-down a host gets one probe call; a success brings it back.
* Models: `preflight` asks every host in parallel; a call for a model goes only to hosts that have it.
  A 404 "model not found" during the run removes the model from that host and moves the call on.
* One host behaves exactly like its client alone: errors pass through unchanged and nothing cools
  down (there is nowhere to fail over to; the runner's own rules for server failures apply).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from ty_pipeline.clients.ollama import (
    OllamaConnectionReset,
    OllamaError,
    OllamaModelMissing,
    OllamaTransientError,
    OllamaUnavailable,
    canonical_model_name,
)
from ty_pipeline.domain.concurrency import run_all
from ty_pipeline.domain.llm_hosts import HostSpec
from ty_pipeline.domain.urls import redact_url

log = logging.getLogger(__name__)

DEFAULT_FAIL_THRESHOLD = 2
DEFAULT_COOLDOWN_S = 30.0
DEFAULT_MAX_COOLDOWN_S = 300.0
# A waiting call re-checks at least this often (real seconds) while some host is cooling down, because
# the end of a cool-down is a moment in time, not an event anyone signals.
COOLDOWN_RECHECK_S = 0.5

HOST_FAILURES: tuple[type[OllamaError], ...] = (OllamaUnavailable, OllamaConnectionReset, OllamaTransientError)
"""Server failures: the host is charged and the call moves on. `NoLlmHostLeft` is not among them: a pool
of pools is not a thing this module builds."""

HEALTHY, COOLING, PROBING = "healthy", "cooling", "probing"

T = TypeVar("T")


class LlmClient(Protocol):
    """What the pool needs of one host's client (`OllamaClient` and the OpenAI-compatible client)."""

    shown_url: str

    def chat_structured(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        schema: type[BaseModel],
        options: dict[str, Any] | None = None,
        validate: Callable[[BaseModel], str | None] | None = None,
    ) -> tuple[BaseModel, list[Any]]: ...

    def embed(self, *, model: str, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], Any]: ...

    def preflight(self, models: Iterable[str]) -> str: ...

    def list_models(self) -> list[str]: ...

    def close(self) -> None: ...


class NoLlmHostLeft(OllamaUnavailable):
    """Every host that could take a call is cooling down after repeated server failures (or was
    unreachable at preflight). A kind of `OllamaUnavailable`, so a run stops taking postings and
    charges none of them."""


@dataclass(frozen=True)
class HostStats:
    """One host's figures for run metadata. `busy_s` is slot-seconds held by calls (two calls in
    parallel for 1 s count 2 s); `calls` counts dispatched calls, `failures` server failures."""

    host: str  # the redacted URL
    slots: int
    state: str  # healthy | cooling | probing
    in_flight: int
    calls: int
    failures: int
    cooldowns: int
    busy_s: float
    missing_models: tuple[str, ...]
    version: str | None
    cooldown_left_s: float  # 0 unless cooling


class _Host:
    """Mutable state of one host; every field is guarded by the pool's condition variable."""

    def __init__(self, index: int, client: LlmClient, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a host needs at least one slot, not {slots}")
        self.index = index
        self.client = client
        self.slots = slots
        self.shown_url = redact_url(getattr(client, "shown_url", None) or getattr(client, "base_url", "") or f"host{index}")
        self.in_flight = 0
        self.missing: set[str] = set()  # canonical names of models this host is known not to have
        self.version: str | None = None
        self.state = HEALTHY
        self.cooling_until = 0.0
        self.consecutive_failures = 0
        self.cooldown_streak = 0  # cool-downs since the last success: the next one lasts 2**streak longer
        self.calls = 0
        self.failures = 0
        self.cooldowns = 0
        self.busy_s = 0.0

    def lacks(self, model: str | None) -> bool:
        return model is not None and canonical_model_name(model) in self.missing

    def capacity(self) -> int:
        return 1 if self.state == PROBING else self.slots

    def refresh(self, now: float) -> None:
        if self.state == COOLING and now >= self.cooling_until:
            self.state = PROBING
            log.info("LLM host %s: cool-down over, probing it with one call", self.shown_url)

    def stats(self, now: float) -> HostStats:
        left = max(0.0, self.cooling_until - now) if self.state == COOLING else 0.0
        return HostStats(self.shown_url, self.slots, self.state, self.in_flight, self.calls, self.failures,
                         self.cooldowns, self.busy_s, tuple(sorted(self.missing)), self.version, left)


class HostPool:
    """Thread-safe: every worker of a run (and every LLM asset of a process) shares one pool."""

    def __init__(
        self,
        hosts: Sequence[tuple[LlmClient, int]],
        *,
        fail_threshold: int = DEFAULT_FAIL_THRESHOLD,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        max_cooldown_s: float = DEFAULT_MAX_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not hosts:
            raise ValueError("HostPool needs at least one host")
        if fail_threshold < 1:
            raise ValueError(f"fail_threshold must be >= 1, not {fail_threshold}")
        if cooldown_s < 0 or max_cooldown_s < cooldown_s:
            raise ValueError("cooldown_s must be >= 0 and max_cooldown_s >= cooldown_s")
        self._hosts = [_Host(i, client, slots) for i, (client, slots) in enumerate(hosts)]
        self.fail_threshold = fail_threshold
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.clock = clock
        self._cond = threading.Condition()
        self._turn = 0  # round-robin position for ties
        self.shown_url = ", ".join(h.shown_url for h in self._hosts)

    @classmethod
    def from_specs(cls, specs: Sequence[HostSpec], make_client: Callable[[str], LlmClient], **kwargs: Any) -> HostPool:
        """One client per `HostSpec` (from `parse_llm_hosts`), built by `make_client(url)`."""
        return cls([(make_client(spec.url), spec.slots) for spec in specs], **kwargs)

    # -- plumbing -----------------------------------------------------------------------------------------

    def __enter__(self) -> HostPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HostPool({self.shown_url!r}, slots={self.total_slots})"

    def close(self) -> None:
        for host in self._hosts:
            host.client.close()

    @property
    def clients(self) -> list[LlmClient]:
        return [h.client for h in self._hosts]

    @property
    def single(self) -> bool:
        return len(self._hosts) == 1

    @property
    def total_slots(self) -> int:
        """Slots of the hosts that take calls now (a probing host counts fully: it is expected back)."""
        with self._cond:
            now = self.clock()
            for host in self._hosts:
                host.refresh(now)
            return sum(h.slots for h in self._hosts if h.state != COOLING)

    def host_stats(self) -> list[HostStats]:
        with self._cond:
            now = self.clock()
            for host in self._hosts:
                host.refresh(now)
            return [h.stats(now) for h in self._hosts]

    def stats_metadata(self) -> dict[str, dict[str, Any]]:
        """`host_stats()` keyed by redacted URL, JSON-ready for materialization metadata."""
        return {
            s.host: {"slots": s.slots, "state": s.state, "calls": s.calls, "failures": s.failures,
                    "cooldowns": s.cooldowns, "busy_s": round(s.busy_s, 3),
                    "missing_models": list(s.missing_models), "version": s.version}
            for s in self.host_stats()
        }

    # -- dispatch -----------------------------------------------------------------------------------------

    def _acquire(self, model: str | None, tried: set[int], failure: OllamaError | None,
                 missing: OllamaModelMissing | None, carried: list[Any]) -> _Host:
        """The least-loaded host this call may use, its slot taken; waits while all such hosts are full.
        Raises when no host is left for the call (see the module docstring)."""
        with self._cond:
            while True:
                now = self.clock()
                for host in self._hosts:
                    host.refresh(now)
                serving = [h for h in self._hosts if not h.lacks(model)]
                untried = [h for h in serving if h.index not in tried]
                open_hosts = [h for h in untried if h.state != COOLING]
                free = [h for h in open_hosts if h.in_flight < h.capacity()]
                if free:
                    n = len(self._hosts)
                    # A probing host goes first: its one probe call decides whether it is back, and
                    # in a lightly loaded pool "least loaded" alone would never pick it.
                    host = min(free, key=lambda h: (h.state != PROBING, h.in_flight / h.capacity(),
                                                    -(h.capacity() - h.in_flight), (h.index - self._turn) % n))
                    self._turn = (host.index + 1) % n
                    host.in_flight += 1
                    host.calls += 1
                    return host
                if open_hosts:
                    # Some host could take the call once a slot frees: wait for a release (or, while a
                    # host cools down, for the end of its cool-down).
                    cooling = any(h.state == COOLING for h in self._hosts)
                    self._cond.wait(timeout=COOLDOWN_RECHECK_S if cooling else None)
                    continue
                raise self._no_host_error(model, serving, failure, missing, carried)

    def _no_host_error(self, model: str | None, serving: list[_Host], failure: OllamaError | None,
                       missing: OllamaModelMissing | None, carried: list[Any]) -> OllamaError:
        """`failure`: the call's last server failure, `missing`: its last 404 "model not found"."""
        if not serving:
            if missing is not None:
                missing.metrics = list(carried)
                return missing
            return OllamaModelMissing(
                f"No LLM host has model '{model}' ({self._describe()}). Install it on at least one host "
                f"(`ollama pull {model}`, or serve it on the OpenAI-compatible server).",
                models=[model or ""], status=None, metrics=carried,
            )
        last_error = failure or missing
        if last_error is not None and any(h.state != COOLING for h in serving):
            # Every host that could take the call failed it once: the server failure surfaces (a
            # transient one defers the posting) with the cost of every attempt. Not a 404 of a host
            # that lacks the model while others have it: that would stop the run for no reason.
            last_error.metrics = list(carried)
            return last_error
        last = f"; last error: {last_error}" if last_error is not None else ""
        return NoLlmHostLeft(
            f"No LLM host is left to take a call for '{model}': {self._describe()}. Every host that has the "
            f"model is cooling down after {self.fail_threshold} server failures in a row (refused, reset, timed "
            f"out or 5xx) or because it was unreachable at the start; check that the servers run and read "
            f"their logs{last}.",
            metrics=carried,
        )

    def _describe(self) -> str:
        now = self.clock()
        parts = []
        for h in self._hosts:
            state = f"cooling down for {max(0.0, h.cooling_until - now):.0f} s more" if h.state == COOLING else h.state
            missing = f", lacks {', '.join(sorted(h.missing))}" if h.missing else ""
            parts.append(f"{h.shown_url} {state}{missing}")
        return "; ".join(parts)

    def _release(self, host: _Host, held_s: float, *, failed: bool = False, answered: bool = False) -> None:
        """Free the slot; `failed`: a server failure (charged to the host), `answered`: the host answered
        (a success, or an answer the posting is to blame for). Neither: a missing model."""
        with self._cond:
            host.in_flight -= 1
            host.busy_s += held_s
            if failed:
                self._charge(host)
            elif answered and host.state != COOLING:
                if host.state == PROBING:
                    log.info("LLM host %s answered its probe: back in service", host.shown_url)
                host.state = HEALTHY
                host.consecutive_failures = 0
                host.cooldown_streak = 0
            self._cond.notify_all()

    def _charge(self, host: _Host) -> None:
        host.failures += 1
        if host.state == COOLING:
            return  # a call that started before the cool-down: the host is already out
        host.consecutive_failures += 1
        if self.single:
            return  # nowhere to fail over to: the runner's own rules for server failures apply
        if host.state == PROBING or host.consecutive_failures >= self.fail_threshold:
            self._cool_down(host)

    def _cool_down(self, host: _Host) -> None:
        seconds = min(self.max_cooldown_s, self.cooldown_s * (2 ** host.cooldown_streak))
        host.state = COOLING
        host.cooling_until = self.clock() + seconds
        host.cooldown_streak += 1
        host.cooldowns += 1
        log.warning("LLM host %s failed %d call(s) in a row: no calls for %.0f s", host.shown_url,
                    host.consecutive_failures, seconds)

    def _dispatch(self, model: str | None, call: Callable[[LlmClient], T], metrics_of: Callable[[T], list[Any]]) -> T:
        tried: set[int] = set()
        carried: list[Any] = []  # metrics of failed attempts on other hosts, oldest first
        failure: OllamaError | None = None
        missing: OllamaModelMissing | None = None
        while True:
            host = self._acquire(model, tried, failure, missing, carried)
            started = time.monotonic()
            try:
                result = call(host.client)
            except HOST_FAILURES as exc:
                self._release(host, time.monotonic() - started, failed=True)
                carried.extend(_tagged(exc.metrics, host))
                tried.add(host.index)
                failure = exc
                if not self.single:
                    log.warning("LLM host %s failed a call for '%s' (%s); trying another host", host.shown_url,
                                model, type(exc).__name__)
                continue
            except OllamaModelMissing as exc:
                self._release(host, time.monotonic() - started)
                if not self.single:  # one host: every call asks the server, as its client alone would
                    with self._cond:
                        host.missing.add(canonical_model_name(model or ""))
                carried.extend(_tagged(exc.metrics, host))
                tried.add(host.index)
                missing = exc
                continue
            except OllamaError as exc:
                # The host answered; the answer is the posting's problem (invalid, rejected request).
                self._release(host, time.monotonic() - started, answered=True)
                exc.metrics = [*carried, *_tagged(exc.metrics, host)]
                raise
            except BaseException:
                self._release(host, time.monotonic() - started)
                raise
            self._release(host, time.monotonic() - started, answered=True)
            metrics = metrics_of(result)
            _tagged(metrics, host)
            if carried:
                metrics[:0] = carried  # failed attempts first: their cost is part of this call's
            return result

    # -- the client interface -----------------------------------------------------------------------------

    def chat_structured(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        schema: type[BaseModel],
        options: dict[str, Any] | None = None,
        validate: Callable[[BaseModel], str | None] | None = None,
    ) -> tuple[BaseModel, list[Any]]:
        def call(client: LlmClient) -> tuple[BaseModel, list[Any]]:
            obj, metrics = client.chat_structured(model=model, messages=messages, schema=schema, options=options,
                                                  validate=validate)
            return obj, list(metrics)

        return self._dispatch(model, call, lambda result: result[1])

    def embed(self, *, model: str, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], Any]:
        """One batched embedding call on one host. Its single metrics record cannot carry failed attempts
        on other hosts; those are logged and counted in the host stats only."""
        return self._dispatch(model, lambda client: client.embed(model=model, inputs=inputs, truncate=truncate),
                              lambda result: [result[1]])

    def list_models(self) -> list[str]:
        """Models on any host that answers (one host: exactly its client's answer and errors)."""
        if self.single:
            return self._hosts[0].client.list_models()
        names: dict[str, None] = {}
        errors: list[OllamaError] = []
        for host in self._hosts:
            try:
                names.update(dict.fromkeys(host.client.list_models()))
            except HOST_FAILURES as exc:
                errors.append(exc)
        if errors and len(errors) == len(self._hosts):
            raise NoLlmHostLeft(f"No LLM host answered: {'; '.join(str(e) for e in errors)}")
        return list(names)

    def preflight(self, models: Iterable[str]) -> str:
        """Ask every host at once whether it is up and which of `models` it has. Unreachable hosts are
        logged and cool down; the run fails only if no host answers (`NoLlmHostLeft`) or some model is on
        no reachable host (`OllamaModelMissing`). Returns "host version" per host, comma-separated (one
        host: its client's answer unchanged)."""
        wanted = list(dict.fromkeys(m for m in models if m))
        if self.single:
            host = self._hosts[0]
            host.version = host.client.preflight(wanted)
            return host.version
        answers = [end.result() for end in run_all(lambda h: _probe_host(h.client, wanted), self._hosts,
                                                   name="llm-preflight")]
        unreachable: list[str] = []
        with self._cond:
            for host, (version, missing, error) in zip(self._hosts, answers, strict=True):
                if error is not None:
                    unreachable.append(f"{host.shown_url}: {error}")
                    log.warning("LLM host %s is not reachable; left out for now: %s", host.shown_url, error)
                    if host.state != COOLING:
                        host.consecutive_failures = max(host.consecutive_failures, self.fail_threshold)
                        self._cool_down(host)
                    continue
                host.version = version
                host.missing = {canonical_model_name(m) for m in missing}
                if host.state == COOLING:
                    host.state = PROBING  # it answered: let a call prove it
            reachable = [h for h, answer in zip(self._hosts, answers, strict=True) if answer[2] is None]
            if not reachable:
                raise NoLlmHostLeft("No LLM host is reachable: " + "; ".join(unreachable))
            nowhere = [m for m in wanted if all(h.lacks(m) for h in reachable)]
            if nowhere:
                where = "; ".join(f"{h.shown_url} lacks {', '.join(sorted(h.missing)) or 'nothing'}" for h in reachable)
                pulls = "\n".join(f"  ollama pull {m}" for m in nowhere)
                raise OllamaModelMissing(
                    f"{len(nowhere)} model(s) this run needs are on no reachable LLM host: {', '.join(nowhere)} "
                    f"({where}). Install each on at least one host, e.g.:\n{pulls}",
                    models=nowhere, status=None,
                )
            summary = [f"{_host_port(h.shown_url)} {h.version}" for h in reachable]
            summary += [f"{_host_port(u.split(': ', 1)[0])} unreachable" for u in unreachable]
            return ", ".join(summary)


def _probe_host(client: LlmClient, wanted: list[str]) -> tuple[str | None, list[str], OllamaError | None]:
    """(version, models it lacks, server failure) of one host: its own preflight, which retries little."""
    try:
        return client.preflight(wanted), [], None
    except OllamaModelMissing as exc:
        missing = [m for m in exc.models if m] or list(wanted)
    except HOST_FAILURES as exc:
        return None, [], exc
    try:
        return client.preflight([]), missing, None  # the version of a host that lacks a model
    except HOST_FAILURES as exc:
        return None, [], exc


def _tagged(metrics: list[Any], host: _Host) -> list[Any]:
    """Mark each call's metrics with the host that made it, where the metrics type has the field."""
    for item in metrics:
        if hasattr(item, "host"):
            item.host = host.shown_url
    return metrics


def _host_port(url: str) -> str:
    return url.split("://", 1)[-1]

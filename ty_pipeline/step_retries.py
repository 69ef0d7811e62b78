"""Which step failures Dagster retries, and how long it waits: one policy for every asset.

A step can fail for a moment (the warehouse restarts, a connection drops, an API answers 503 after the
client's own retries) or for good (a wrong setting, a damaged file, rows that could not be saved). The
first kind is worth a retry after a pause that doubles each time; the second only wastes the night and
hides the real error behind retries. So every asset carries `STEP_RETRY_POLICY`, and its body is wrapped
by `retry_only_transient`: every exception becomes a `dg.Failure` with a one-line, URL-redacted
description; a transient one allows retries, any other is `allow_retries=False`, which Dagster does not
retry.

Settings (read when the code location loads): `TY_STEP_RETRY_DELAY_S` (first pause, default 15 s; later
pauses grow exponentially with jitter) and `TY_STEP_MAX_RETRIES` (default 3; 0 turns retries off).
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import dagster as dg
import requests
from sqlalchemy import exc as sa_exc

from ty_pipeline.domain.setting_values import (
    DEFAULT_STEP_MAX_RETRIES,
    DEFAULT_STEP_RETRY_DELAY_S,
    STEP_MAX_RETRIES,
    STEP_RETRY_DELAY,
)
from ty_pipeline.domain.urls import redact_urls_in

# Failures that may pass by themselves. SQLAlchemy's OperationalError covers a dropped or refused
# connection, a server shutting down and "database is locked"; the HTTP clients raise their own errors
# only after their in-request retries are used up (clients/http_retry.py).
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # the connection pool had no connection free in time
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


# Our own error types are matched by class name: importing the resources here would make every asset
# module import every client. A source error is what is left after the client's own retries (HTTP 5xx,
# 429, timeouts); the search-window error is the API's fixed 10,000-result limit and does not pass.
# Ollama's transient errors are not in the list: the Ollama client retries them itself, with the
# operator's `max_retries` (resources/ollama.py, used by clients/ollama.py); a step retry on top would multiply that setting.
_TRANSIENT_NAMES = frozenset({"SourceError", "BerufenetError"})
_PERMANENT_NAMES = frozenset({"SearchWindowExceeded"})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """True when `exc` or an exception it was raised from may pass by itself (see `_TRANSIENT_TYPES`)."""
    for item in _chain(exc):
        names = {cls.__name__ for cls in type(item).__mro__}
        if names & _PERMANENT_NAMES:
            return False
        status = getattr(item, "status", None)
        if names & _TRANSIENT_NAMES and isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
            return False  # the API refused the request itself (403, 404, 400): asking again changes nothing
        if isinstance(item, _TRANSIENT_TYPES) or names & _TRANSIENT_NAMES:
            return True
    return False


def step_retry_policy(environ: dict[str, str] | None = None) -> dg.RetryPolicy | None:
    """The policy from the environment; None when `TY_STEP_MAX_RETRIES=0`."""
    delay = STEP_RETRY_DELAY.environ_value(environ)
    retries = STEP_MAX_RETRIES.environ_value(environ)
    delay = DEFAULT_STEP_RETRY_DELAY_S if delay is None else delay
    retries = DEFAULT_STEP_MAX_RETRIES if retries is None else retries
    if retries == 0:
        return None
    return dg.RetryPolicy(max_retries=retries, delay=delay, backoff=dg.Backoff.EXPONENTIAL,
                          jitter=dg.Jitter.PLUS_MINUS)


STEP_RETRY_POLICY = step_retry_policy()

F = TypeVar("F", bound=Callable[..., Any])


def redacted_failure(exc: BaseException, description: str, allow_retries: bool) -> dg.Failure:
    """A `dg.Failure` whose description and traceback metadata have every URL redacted.

    Raise it `from None`: Dagster stores an exception's cause chain verbatim in the event log, and
    driver and HTTP errors quote URLs (issue 9: a credential in OLLAMA_HOST once reached the event log).
    """
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return dg.Failure(
        description=redact_urls_in(description),
        allow_retries=allow_retries,
        metadata={"error": dg.MetadataValue.text(redact_urls_in(trace))},
    )


def step_failure(exc: Exception) -> dg.Failure:
    """The one-line failure of a step: retryable when `exc` is transient, final otherwise."""
    transient = is_transient(exc)
    first_line = (str(exc).strip().splitlines() or [""])[0]
    suffix = "" if transient else " (not retried: a permanent error)"
    return redacted_failure(exc, f"{type(exc).__name__}: {first_line}{suffix}", transient)


def retry_only_transient(fn: F) -> F:
    """Wrap an asset body: transient errors fail retryably, all others fail for good; both in one line.

    Put it under `@dg.asset(..., retry_policy=STEP_RETRY_POLICY)`; `functools.wraps` keeps the signature
    Dagster reads for context, config and resources.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (dg.Failure, dg.RetryRequested):
            raise
        except Exception as exc:
            raise step_failure(exc) from None

    return cast(F, wrapper)  # functools.wraps keeps fn's signature, which F stands for


def retried_asset(**asset_kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset(**asset_kwargs)` with the step retry policy, retrying transient failures only.

    Every asset of the code location is declared with this, so the policy is set in this one module.
    """

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        asset: dg.AssetsDefinition = dg.asset(retry_policy=STEP_RETRY_POLICY, **asset_kwargs)(retry_only_transient(fn))
        return asset

    return decorate


def retry_only_transient_generator(fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """`retry_only_transient` for a body that yields its results (a multi-asset): the error surfaces
    while Dagster iterates, so the wrapper has to iterate too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from fn(*args, **kwargs)
        except (dg.Failure, dg.RetryRequested):
            raise
        except Exception as exc:
            raise step_failure(exc) from None

    return wrapper


def retried_multi_asset(**multi_asset_kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.multi_asset(**kwargs)` with the step retry policy, for a body that yields its results."""

    def decorate(fn: Callable[..., Any]) -> dg.AssetsDefinition:
        return dg.multi_asset(retry_policy=STEP_RETRY_POLICY, **multi_asset_kwargs)(retry_only_transient_generator(fn))

    return decorate

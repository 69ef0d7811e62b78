"""Environment-variable wiring for resources.

Every setting is optional (docs/contract.md). A variable that is set is passed as `dg.EnvVar`, so Dagster
resolves it at launch and never shows its value in the UI; an unset one falls back to the default.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg


def env_or(name: str, default: Any) -> Any:
    return dg.EnvVar(name) if os.environ.get(name) else default


def from_env(value: str | None, name: str, default: str | None) -> str | None:
    """An endpoint or model setting of a resource, resolved when it is used, not when it is built.

    Dagster replaces a resource's whole configuration with the run config's `resources.<name>.config`:
    values given to the constructor (including `EnvVar`s) are dropped when a run sets any other field,
    such as a timeout. So endpoint fields default to empty and an empty field
    falls back to the environment variable here, then to the default.
    """
    if value:
        return value
    return os.environ.get(name) or default

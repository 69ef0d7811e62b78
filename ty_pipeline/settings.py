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

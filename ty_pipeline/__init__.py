"""ty_pipeline: Dagster code location that fetches German job postings and enriches them with local LLMs.

`defs` is built on first access (PEP 562), not when the package is imported: building it checks the
environment settings and refuses wrong ones (ty_pipeline.settings_check), and the `ty-pipeline` CLI,
which imports this package too, must still start and report such a setting in its own one line.
Dagster's module loader lists `dir(ty_pipeline)` and so finds `defs` as before.
"""

from __future__ import annotations

from typing import Any

__all__ = ["defs"]


def __getattr__(name: str) -> Any:
    if name == "defs":
        from ty_pipeline.definitions import defs

        return defs
    raise AttributeError(f"module 'ty_pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])

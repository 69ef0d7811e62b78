"""Environment settings checked up front, each error one line naming the variable.

A garbage `TY_WAREHOUSE_URL` used to surface as a 300-line SQLAlchemy traceback in the middle of a run,
and an unknown `TY_SOURCES` as a ValueError that did not say which variable to fix. Here every setting
the code location reads from the environment (`ty_pipeline.settings`) is parsed when the definitions load
(and by the CLI), by the same function that parses it in the resources, and each problem is reported
as `NAME='value' is not valid: expected ...`, with URLs redacted to scheme://host:port.
"""

from __future__ import annotations

from collections.abc import Mapping

from ty_pipeline.domain.setting_values import SettingError
from ty_pipeline.settings import ENVIRONMENT


def check_environment(environ: Mapping[str, str] | None = None) -> list[SettingError]:
    """Every problem with the set variables (unset ones take their defaults and are fine)."""
    problems: list[SettingError] = []
    for setting in ENVIRONMENT:
        try:
            setting.environ_value(environ)
        except SettingError as exc:
            problems.append(exc)
    return problems


class SettingsInvalid(ValueError):
    """All bad settings in one line each; raised when the definitions load."""

    def __init__(self, problems: list[SettingError]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

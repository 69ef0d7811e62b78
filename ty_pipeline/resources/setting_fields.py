"""Pydantic field validators that check a resource field with its environment setting's parser.

A value typed into the launchpad (run config) is checked when Dagster builds the resource for the run,
by the same `Setting.parse` that checks the environment variable when the definitions load, so both fail
with the same line: `TY_LLM_BACKEND='vllm' is not valid: expected one of ollama, openai`.

How Dagster 1.13 runs these validators (tested in `ty_pipeline_tests/test_settings_fields.py`):
- at load, a field wired as `dg.EnvVar("NAME")` reaches a `mode="before"` validator as the `EnvVar`
  object itself (a `str` subclass holding the variable's name, whose `str()` raises): it is passed
  through, and the variable is checked by `settings_check` instead;
- at launch, Dagster builds the resource again from the resolved config (`_with_updated_values`), so the
  validator sees the run config's value, or the variable's value an `EnvVar` resolved to;
- defaults are not validated; an empty field means "resolve from the environment when used".
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from ty_pipeline.domain.setting_values import Setting, SettingError, is_unset


class InvalidSetting(Exception):  # noqa: N818 - the name reads as what the run shows: InvalidSetting: NAME=...
    """A `SettingError` raised from a field validator, with the same one-line message.

    Deliberately not a ValueError: pydantic turns a ValueError raised in a validator into a multi-line
    ValidationError that quotes the raw input (a password in a URL, a token); any other exception passes
    through unchanged, and Dagster shows it as the cause of the failed resource initialisation.
    """

    def __init__(self, error: SettingError) -> None:
        self.setting_error = error
        super().__init__(str(error))


def checked_by(setting: Setting[Any], *fields: str) -> Any:
    """A `mode="before"` field validator for `fields` that runs `setting.check` on plain values."""

    def check(cls: type, value: object) -> object:
        # Exactly str/int/float: EnvVar (str) and IntEnvVar (int) subclasses are names, not values.
        if type(value) not in (str, int, float) or is_unset(value):
            return value
        try:
            setting.check(value)
        except SettingError as exc:
            raise InvalidSetting(exc) from None
        return value

    return field_validator(*fields, mode="before")(classmethod(check))

"""Pydantic validators that check a resource's fields with their environment settings' parsers.

A value typed into the launchpad (run config) is checked when Dagster builds the resource for the run,
by the same `Setting.parse` that checks the environment variable when the definitions load, so both fail
with the same line: `TY_LLM_BACKEND='vllm' is not valid: expected one of ollama, openai`.

How Dagster 1.13 runs these validators (tested in `ty_pipeline_tests/test_settings_fields.py`):
- at load, a field wired as `dg.EnvVar("NAME")` reaches the `mode="before"` validator as the `EnvVar`
  object itself (a `str` subclass holding the variable's name, whose `str()` raises): it is passed
  through, and the variable is checked by `settings_check` instead;
- at launch, Dagster builds the resource again from the resolved config (`_with_updated_values`), so the
  validator sees the run config's value, or the variable's value an `EnvVar` resolved to;
- defaults are not validated; an empty field means "resolve from the environment when used".
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from ty_pipeline.domain.setting_values import Setting, SettingError, is_unset


class InvalidSetting(Exception):  # noqa: N818 - the name reads as what the run shows: InvalidSetting: NAME=...
    """The `SettingError`s of one resource's fields, raised from its validator: one line each, joined by
    "; " (as `settings_check.SettingsInvalid` joins the environment's).

    Deliberately not a ValueError: pydantic turns a ValueError raised in a validator into a multi-line
    ValidationError that quotes the raw input (a password in a URL, a token); any other exception passes
    through unchanged, and Dagster shows it as the cause of the failed resource initialisation.
    """

    def __init__(self, *errors: SettingError) -> None:
        if not errors:
            raise TypeError("InvalidSetting needs at least one SettingError")
        self.setting_errors = errors
        self.setting_error = errors[0]
        super().__init__("; ".join(str(e) for e in errors))


def checked_fields(**settings: Setting[Any]) -> Any:
    """A `mode="before"` model validator that runs each field's `setting.check` on its plain value.

    One validator for all checked fields of a resource, so run config with several bad values for it is
    refused with every one of them, not only the first (a field validator that raises stops pydantic at
    once). Across resources that is not possible: Dagster builds a step's resources one after another and
    stops at the first that fails (README "Settings")."""

    def check(cls: type, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        problems: list[SettingError] = []
        for field, setting in settings.items():
            value = data.get(field)
            # Exactly str/int/float: EnvVar (str) and IntEnvVar (int) subclasses are names, not values.
            if type(value) not in (str, int, float) or is_unset(value):
                continue
            try:
                setting.check(value)
            except SettingError as exc:
                problems.append(exc)
        if problems:
            raise InvalidSetting(*problems) from None
        return data

    return model_validator(mode="before")(check)

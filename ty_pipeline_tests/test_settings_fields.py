"""Settings are parsed once (issue 10): a resource field given by run config is checked by the same parser
as its environment variable, so a bad value fails with the same one line wherever it was set.

Each resource is built as the code location builds it (`definitions.build_resources`) and run through a
probe asset that needs all of them; a bad field in run config fails the run when Dagster builds the
resource, before any step body runs, and is not retried. The same value in the environment is what the
settings check refuses when the definitions load (`SettingsInvalid`), and what a resource resolving an
empty field from the environment refuses at use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ty_pipeline.definitions import build_resources
from ty_pipeline.domain.setting_values import SettingError
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.job_sources import JobSourcesResource
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.setting_fields import InvalidSetting
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.settings import ENVIRONMENT
from ty_pipeline.settings_check import SettingsInvalid, check_environment
from ty_pipeline_tests.helpers import setting_failure

SEEN: dict[str, Any] = {}


@dg.asset
def probe(
    warehouse: WarehouseResource,
    jobsuche: JobsucheResource,
    deutsche_bank: DeutscheBankResource,
    job_sources: JobSourcesResource,
    embedder: EmbedderResource,
    ollama: OllamaResource,
    llm_scope: LlmScopeResource,
    profession_catalog: ProfessionCatalogResource,
) -> None:
    """Records what each resource resolves to in a run, without calling anything."""
    SEEN.update(
        warehouse=warehouse.url, aa=jobsuche.endpoint(), db=deutsche_bank.endpoint(), sources=job_sources.sources(),
        embed_backend=embedder.backend_name(), llm_backend=ollama.backend_name(), hosts=ollama.host_specs(),
        llm_sources=llm_scope.source_list(), cap=llm_scope.configured_cap(),
        min_share=llm_scope.completeness_threshold(), berufenet=profession_catalog.berufenet_url(),
    )


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    for setting in ENVIRONMENT:
        monkeypatch.delenv(setting.env, raising=False)
    # The probe never connects: a warehouse file path is enough (and no PostgreSQL variant is needed).
    monkeypatch.setenv("TY_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    SEEN.clear()
    yield monkeypatch


def run(resources_config: dict[str, dict[str, Any]]) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [probe], resources=build_resources(), raise_on_error=False,
        run_config={"resources": {name: {"config": cfg} for name, cfg in resources_config.items()}},
    )


def everything_shown(result: dg.ExecuteInProcessResult) -> str:
    return str([(e.message, e.event_specific_data) for e in result.all_events])


def load_failure(env: pytest.MonkeyPatch, name: str, value: str) -> str:
    """What loading the code location says about `name=value` in the environment."""
    env.setenv(name, value)
    with pytest.raises(SettingsInvalid) as info:
        build_resources()
    env.delenv(name)
    return str(info.value)


# (resource, field, run config value, variable, the same value in the environment, what must not be shown)
CASES = [
    ("warehouse", "url", "mysql://root:pw123@db:3306/x", "TY_WAREHOUSE_URL", None, "pw123"),
    ("jobsuche", "base_url", "rest.arbeitsagentur.de", "TY_AA_BASE_URL", None, None),
    ("deutsche_bank", "base_url", "ftp://user:pw123@db.example", "TY_DB_BASE_URL", None, "pw123"),
    ("job_sources", "enabled", "arbeitsagentur,stepstone", "TY_SOURCES", None, None),
    ("embedder", "backend", "openai", "TY_EMBED_BACKEND", None, None),
    ("embedder", "onnx_cache_dir", "cache/onnx", "TY_EMBED_CACHE_DIR", None, None),
    ("ollama", "backend", "vllm", "TY_LLM_BACKEND", None, None),
    ("ollama", "host", "ftp://ops:pw123@gpu1", "OLLAMA_HOST", None, "pw123"),
    ("ollama", "hosts", "http://ops:pw123@gpu1:8000=zero", "TY_LLM_HOSTS", None, "pw123"),
    ("llm_scope", "sources", "everything", "TY_LLM_SOURCES", None, None),
    ("llm_scope", "max_postings", -5, "TY_LLM_MAX_POSTINGS", "-5", None),
    ("llm_scope", "min_complete_share", 2, "TY_LLM_MIN_COMPLETE", "2", None),
    ("profession_catalog", "berufenet_api_url", "https://", "TY_BERUFENET_API_URL", None, None),
]


@pytest.mark.parametrize(("resource", "field", "value", "variable", "env_value", "secret"), CASES,
                         ids=[f"{c[0]}.{c[1]}" for c in CASES])
def test_a_bad_value_fails_with_the_same_line_by_run_config_and_by_environment(
    env: pytest.MonkeyPatch, resource: str, field: str, value: object, variable: str, env_value: str | None,
    secret: str | None,
) -> None:
    result = run({resource: {field: value}})
    by_run_config = setting_failure(result)
    assert by_run_config.startswith(f"{variable}=") and " is not valid: " in by_run_config
    assert SEEN == {}  # the run stopped when the resource was built, before any step body ran
    by_environment = load_failure(env, variable, env_value or str(value))
    assert by_environment == by_run_config
    if secret:
        assert secret not in by_run_config and secret not in everything_shown(result)


def test_a_resource_built_in_python_refuses_a_bad_value_in_one_line() -> None:
    with pytest.raises(InvalidSetting) as info:
        OllamaResource(backend="vllm")
    assert str(info.value) == "TY_LLM_BACKEND='vllm' is not valid: expected one of ollama, openai"
    assert isinstance(info.value.setting_error, SettingError) and info.value.setting_error.name == "TY_LLM_BACKEND"
    # Not a ValueError: pydantic would wrap it into a multi-line ValidationError quoting the input.
    assert not isinstance(info.value, ValueError)
    with pytest.raises(InvalidSetting, match=r"^TY_WAREHOUSE_URL='postgres://db:5432' is not valid"):
        WarehouseResource(url="postgres://u:topsecret@db:5432/x")


def test_an_env_var_wired_at_load_is_checked_with_its_value_at_launch(env: pytest.MonkeyPatch) -> None:
    """Dagster 1.13 hands a `dg.EnvVar` to the validator at load (passed through: its `str()` raises) and
    builds the resource again at launch from the resolved value, which the validator then checks."""
    env.setenv("TY_DB_BASE_URL", "http://127.0.0.1:9")
    resources = build_resources()
    assert isinstance(resources["deutsche_bank"].base_url, dg.EnvVar)
    good = dg.materialize([probe], resources=resources, raise_on_error=False)
    assert good.success and SEEN["db"] == "http://127.0.0.1:9"
    # The variable changes between load and launch (a run worker with another environment).
    env.setenv("TY_DB_BASE_URL", "db.example:443")
    bad = dg.materialize([probe], resources=resources, raise_on_error=False)
    assert setting_failure(bad) == "TY_DB_BASE_URL='db.example:443' is not valid: expected an http:// or https:// URL"


def test_a_bad_variable_read_at_use_fails_with_the_same_line(env: pytest.MonkeyPatch) -> None:
    """Fields left empty are resolved from the environment when used, through the same parser."""
    expected = {p.name: str(p) for p in check_environment({"TY_LLM_BACKEND": "vllm", "TY_SOURCES": "jobboerse",
                                                           "TY_LLM_MAX_POSTINGS": "many"})}
    env.setenv("TY_LLM_BACKEND", "vllm")
    env.setenv("TY_SOURCES", "jobboerse")
    env.setenv("TY_LLM_MAX_POSTINGS", "many")
    for use, name in [(OllamaResource().backend_name, "TY_LLM_BACKEND"), (JobSourcesResource().sources, "TY_SOURCES"),
                      (LlmScopeResource().configured_cap, "TY_LLM_MAX_POSTINGS")]:
        with pytest.raises(SettingError) as info:
            use()
        assert str(info.value) == expected[name]


def test_run_config_that_sets_one_field_keeps_the_others_from_the_environment(env: pytest.MonkeyPatch) -> None:
    """Dagster replaces a resource's whole configuration with the run's: `TY_SOURCES` and the LLM scope's
    variables used to be constructor values and were dropped by run config that set another field."""
    env.setenv("TY_SOURCES", "sample")
    env.setenv("TY_LLM_SOURCES", "arbeitsagentur")
    env.setenv("TY_LLM_MAX_POSTINGS", "40")
    env.setenv("TY_LLM_MIN_COMPLETE", "80%")
    result = run({"job_sources": {"sample_dir": "/nonexistent"}, "llm_scope": {"max_postings": 7},
                  "ollama": {"read_timeout_s": 30.0}})
    assert result.success
    assert (SEEN["sources"], SEEN["llm_sources"], SEEN["cap"], SEEN["min_share"]) == (["sample"], ["arbeitsagentur"],
                                                                                      7, 0.8)
    assert run({"llm_scope": {"sources": "deutsche_bank"}}).success
    assert (SEEN["llm_sources"], SEEN["cap"], SEEN["min_share"]) == (["deutsche_bank"], 40, 0.8)


def test_every_setting_of_the_environment_is_checked_at_load(env: pytest.MonkeyPatch) -> None:
    """The settings check parses exactly the settings the resources resolve (one table)."""
    names = [s.env for s in ENVIRONMENT]
    assert len(names) == len(set(names))
    assert {"TY_WAREHOUSE_URL", "OLLAMA_HOST", "TY_LLM_API_KEY", "TY_KLDB_CSV", "TY_EMBED_MODEL"} <= set(names)
    env.setenv("TY_LLM_API_KEY", "sk-not-shown")  # free-form: no parser could refuse (and quote) it
    assert check_environment() == []


def test_every_bad_value_of_a_resource_is_refused_at_once(env: pytest.MonkeyPatch) -> None:
    """Three bad `ollama` fields in run config fail the run with all three lines, in field order, not with
    the first only (which left the next two to be found one run at a time)."""
    bad = {"host": "ftp://ops:pw123@gpu1", "backend": "vllm", "hosts": "http://gpu1:8000=zero"}
    variables = {"host": "OLLAMA_HOST", "backend": "TY_LLM_BACKEND", "hosts": "TY_LLM_HOSTS"}
    by_name = {p.name: str(p) for p in check_environment({variables[f]: v for f, v in bad.items()})}
    expected = "; ".join(by_name[variables[f]] for f in bad)
    assert setting_failure(run({"ollama": bad})) == expected
    assert SEEN == {} and "pw123" not in expected
    with pytest.raises(InvalidSetting) as info:
        OllamaResource(**bad)
    assert str(info.value) == expected
    assert [e.name for e in info.value.setting_errors] == list(variables.values())
    # Across resources Dagster stops at the first one it fails to build, so a second bad resource is
    # only named once the first is fixed: the run reports exactly one resource's lines.
    [scope_line] = [str(p) for p in check_environment({"TY_LLM_MAX_POSTINGS": "-5"})]
    both = setting_failure(run({"ollama": bad, "llm_scope": {"max_postings": -5}}))
    assert both in (expected, scope_line)

"""A pydantic JSON schema in the form OpenAI's strict structured outputs accept.

OpenAI's API answers HTTP 400 (`Invalid schema for response_format ...`) to a `strict: true` json_schema
unless every object in it, nested ones, array items and `$defs` included, has `additionalProperties: false`
and lists every property in `required`; it also refuses a `default` keyword and a root that is not an
object (pydantic's `anyOf` root, say). vLLM, SGLang and llama.cpp accept all of these, which is why the
schemas pydantic produces went out unchanged for so long.

The rewrite keeps the answers our pydantic models accept: a property that had a default becomes required,
so a strict model must write it (`null` for an optional one, whose schema already allows null; `[]` for a
list), and the models still validate the answer. Only what cannot be made strict without changing the
answer's shape (a root `anyOf`, a free-form object or a mapping) is reported, so the caller can send the
schema with `strict: false`: OpenAI then takes it as guidance, and grammar-constrained servers, which
ignore `strict`, still enforce all of it.
"""

from __future__ import annotations

import copy
from typing import Any

# Keywords whose value is one subschema, a list of them, or a name -> subschema mapping.
_ONE = ("items", "additionalProperties", "not", "contains")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_NAMED = ("$defs", "definitions")


def openai_strict_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A conforming copy of `schema`, and None, or why the copy still cannot be sent as strict."""
    out = copy.deepcopy(schema)
    problems: list[str] = []
    _conform(out, "root", problems)
    if out.get("type") != "object" or "anyOf" in out:
        problems.insert(0, "the root is not a plain object (OpenAI's strict mode needs one)")
    return out, (problems[0] if problems else None)


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def _conform(node: Any, where: str, problems: list[str]) -> None:
    if not isinstance(node, dict):
        return
    node.pop("default", None)  # "'default' is not permitted"; every property is required anyway
    if _is_object(node):
        properties = node.get("properties")
        extra = node.get("additionalProperties", False)
        if not isinstance(properties, dict):
            problems.append(f"{where} is an object without listed properties")
        elif isinstance(extra, dict) and extra:
            # A dict field: its keys are data, so they cannot be listed. `true` is no such case: the
            # model accepts the listed keys alone, so forbidding more changes nothing it validates.
            problems.append(f"{where} is a mapping with free keys")
        else:
            node["additionalProperties"] = False
            node["required"] = list(properties)
        for name, sub in (properties or {}).items():
            _conform(sub, f"{where}.{name}", problems)
    for key in _ONE:
        if isinstance(node.get(key), dict):
            _conform(node[key], f"{where}.{key}", problems)
    for key in _MANY:
        for i, sub in enumerate(node.get(key) or []):
            _conform(sub, f"{where}.{key}[{i}]", problems)
    for key in _NAMED:
        for name, sub in (node.get(key) or {}).items():
            _conform(sub, f"{key}.{name}", problems)

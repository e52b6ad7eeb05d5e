"""Digdir's DPI JSON schemas (reference/vectors/dpi/reference/json-schema), read where they lie.

Their definitions carry nested `"$id": "#/definitions/..."`, which Python's jsonschema would take as new base
URIs: those are dropped, and every file is registered under its top-level `$id` (as the vectors' README says).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[3] / "shared" / "reference" / "vectors" / "dpi" / "reference" / "json-schema"


def _without_nested_ids(node: Any, top: bool = True) -> Any:
    if isinstance(node, dict):
        return {key: _without_nested_ids(value, False) for key, value in node.items() if top or key != "$id"}
    if isinstance(node, list):
        return [_without_nested_ids(item, False) for item in node]
    return node


@cache
def _registry() -> tuple[Registry, dict[str, dict[str, Any]]]:
    registry: Registry = Registry()
    by_name = {}
    for path in sorted(SCHEMAS.rglob("*.schema.json")):
        schema = _without_nested_ids(json.loads(path.read_text(encoding="utf-8")))
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
        by_name[path.name] = schema
    return registry, by_name


def problems(document: dict[str, Any], message_type: str) -> list[str]:
    """What is wrong with `document` (an SBD wrapped in standardBusinessDocument) against its type's schema."""
    registry, by_name = _registry()
    schema = by_name[f"innbyggerpost_dpi_{message_type}_1_0.schema.json"]
    validator = Draft7Validator(schema, registry=registry)
    return [f"{'/'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)]

"""Edits of the local toggle file (Unleash's client format): pure changes, atomic writes."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Definitions = dict[str, Any]


class ToggleFileError(ValueError):
    """The file does not hold the toggle in the expected shape."""


def load(path: Path) -> Definitions:
    """The file's definitions."""
    data: Definitions = json.loads(path.read_text())
    return data


def save(path: Path, definitions: Definitions) -> None:
    """Write atomically, so a watching process never reads half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(definitions, indent=2) + "\n")
    os.replace(temporary, path)


def _feature(definitions: Definitions, name: str) -> dict[str, Any]:
    for feature in definitions.get("features", []):
        if feature.get("name") == name:
            return dict(feature)
    raise ToggleFileError(f"toggle {name!r} is not defined in the file")


def _tenant_constraint(feature: dict[str, Any]) -> dict[str, Any]:
    for strategy in feature.get("strategies", []):
        for constraint in strategy.get("constraints", []):
            if constraint.get("contextName") == "userId" and constraint.get("operator") == "IN":
                return dict(constraint)
    raise ToggleFileError(
        f"toggle {feature.get('name')!r} has no per-tenant constraint (userId IN [...])"
    )


def tenants(definitions: Definitions, name: str) -> list[int]:
    """The tenants a per-tenant toggle targets."""
    return sorted(int(v) for v in _tenant_constraint(_feature(definitions, name))["values"])


def with_tenants(
    definitions: Definitions, name: str, *, add: Iterable[int] = (), remove: Iterable[int] = ()
) -> Definitions:
    """A copy where the toggle targets its tenants plus `add`, minus `remove`."""
    changed = copy.deepcopy(definitions)
    feature = _feature(changed, name)
    current = set(tenants(changed, name))
    values = sorted((current | set(add)) - set(remove))
    for original in changed["features"]:
        if original.get("name") == name:
            for strategy in original.get("strategies", []):
                for constraint in strategy.get("constraints", []):
                    if constraint.get("contextName") == "userId":
                        constraint["values"] = [str(v) for v in values]
            original["enabled"] = feature.get("enabled", True)
    return changed


def with_enabled(definitions: Definitions, name: str, enabled: bool) -> Definitions:
    """A copy where the (global) toggle is on or off."""
    changed = copy.deepcopy(definitions)
    _feature(changed, name)
    for feature in changed["features"]:
        if feature.get("name") == name:
            feature["enabled"] = enabled
    return changed

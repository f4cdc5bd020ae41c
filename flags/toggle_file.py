"""Edits of the local toggle file (Unleash's client format): pure changes, atomic writes."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flags import targeting

Definitions = dict[str, Any]


class ToggleFileError(ValueError):
    """The file does not hold the toggle in the expected shape."""


DEFAULTS = Path(__file__).parent / "toggles.json"
"""The toggles' tracked definitions (every per-tenant list empty): a local toggle file starts
as a copy of it, and this one is never written."""


def ensure(path: Path) -> Path:
    """The toggle file, first copied from DEFAULTS when it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(DEFAULTS.read_text())
        os.replace(temporary, path)  # two processes starting at once both write the same
    return path


def load(path: Path) -> Definitions:
    """The file's definitions."""
    data: Definitions = json.loads(ensure(path).read_text())
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


def _tenant_strategy(feature: dict[str, Any]) -> int:
    for index, strategy in enumerate(feature.get("strategies", [])):
        if targeting.tenant_constraint(strategy) is not None:
            return index
    raise ToggleFileError(
        f"toggle {feature.get('name')!r} has no per-tenant constraint (userId IN [...])"
    )


def tenants(definitions: Definitions, name: str) -> list[int]:
    """The tenants a per-tenant toggle targets."""
    feature = _feature(definitions, name)
    return targeting.targeted(feature["strategies"][_tenant_strategy(feature)])


def with_tenants(
    definitions: Definitions, name: str, *, add: Iterable[int] = (), remove: Iterable[int] = ()
) -> Definitions:
    """A copy where the toggle targets its tenants plus `add`, minus `remove`."""
    changed = copy.deepcopy(definitions)
    for feature in changed["features"]:
        if feature.get("name") == name:
            index = _tenant_strategy(feature)
            feature["strategies"][index] = targeting.retarget(
                feature["strategies"][index], add=add, remove=remove
            )
            return changed
    raise ToggleFileError(f"toggle {name!r} is not defined in the file")


def with_enabled(definitions: Definitions, name: str, enabled: bool) -> Definitions:
    """A copy where the (global) toggle is on or off."""
    changed = copy.deepcopy(definitions)
    _feature(changed, name)
    for feature in changed["features"]:
        if feature.get("name") == name:
            feature["enabled"] = enabled
    return changed


class FileStore:
    """The local toggle file, with the Admin API client's operations (flags/admin_api.py)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def tenants(self, name: str) -> list[int]:
        return tenants(load(self.path), name)

    def is_enabled(self, name: str) -> bool:
        return bool(_feature(load(self.path), name).get("enabled"))

    def set_tenants(
        self, name: str, *, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> list[int]:
        changed = with_tenants(load(self.path), name, add=add, remove=remove)
        save(self.path, changed)
        return tenants(changed, name)

    def set_enabled(self, name: str, enabled: bool) -> None:
        save(self.path, with_enabled(load(self.path), name, enabled))

    def close(self) -> None:
        """Nothing held open."""

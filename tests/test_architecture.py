"""The layering of docs/ARCHITECTURE.md ("Layers") holds (import-linter's contracts in
pyproject.toml, which `make test` also runs as `lint-imports`), and covers every module: a new
module must be given its layer, or the contracts would not look at it."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from app.core.settings import PROJECT_ROOT

CONFIG = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def layered_modules() -> list[str]:
    layers = next(c for c in CONFIG["contracts"] if c["type"] == "layers")["layers"]
    return [m.strip() for layer in layers for m in layer.replace("|", ":").split(":")]


def project_modules() -> list[str]:
    modules = []
    for package in CONFIG["root_packages"]:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if len(parts) > 1:
                modules.append(".".join(parts))
    return modules


def test_every_module_belongs_to_a_layer() -> None:
    layered = layered_modules()
    orphans = [
        module
        for module in project_modules()
        if not any(module == m or module.startswith(f"{m}.") for m in layered)
    ]
    assert orphans == [], "give these modules a layer in pyproject.toml [tool.importlinter]"


def test_the_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(linter)], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


LONG = 300  # lines (docs/CONVENTIONS.md): a module over it says why in its docstring


def test_a_module_over_300_lines_says_why() -> None:
    silent = []
    for package in ("app", "backfill", "flags", "migrations"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            source = path.read_text()
            if source.count("\n") <= LONG:
                continue
            docstring = ast.get_docstring(ast.parse(source)) or ""
            if "Over 300 lines because" not in " ".join(docstring.split()):
                silent.append(f"{path.relative_to(PROJECT_ROOT)} ({source.count(chr(10))})")
    assert silent == [], "split these, or say why they stay long ('Over 300 lines because')"

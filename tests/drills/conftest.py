"""Reliability drills (issue 12): the `drill` marker, and slow drills kept out of the normal
suite. `pytest tests/drills -m drill` (`make drills`) runs the slow ones; without a `-m`
that names `drill`, they are skipped, so the normal suite stays fast."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "drill: a slow reliability drill (kill -9, restarts, real Unleash); -m drill"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "drill" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow reliability drill: run with `pytest -m drill`")
    for item in items:
        if item.get_closest_marker("drill") is not None:
            item.add_marker(skip)

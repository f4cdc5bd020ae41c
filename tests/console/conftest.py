"""The console's fixtures: a toggles file of the test's own and the app over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.core.settings import Settings
from app.main import create_app
from tests.flags.test_client import write_toggles


@pytest.fixture
def toggles(tmp_path: Path) -> Path:
    path = tmp_path / "toggles.json"
    write_toggles(path, [])
    return path


@pytest.fixture
def console(settings: Settings, engine: Engine, toggles: Path) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"flags_file": toggles}), engine)
    with TestClient(app, base_url="http://testserver") as client:
        yield client

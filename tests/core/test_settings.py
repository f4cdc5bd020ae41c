"""Settings refused at start-up in production: the compose file's default secrets, a weak
JWT secret."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from app.core.settings import DEVELOPMENT_JWT_SECRET, PROJECT_ROOT, Settings, SettingsError
from app.core.settings import load_settings as load

STRONG_SECRET = "kX9#vN2m!pL5@qR7$tW1^yB4&cF6*hJ0"
COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def start_up(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings read the way start-up reads them, from the environment: a private production
    configuration changed by `env`."""
    for name in ("UNLEASH_API_TOKEN", "UNLEASH_ADMIN_TOKEN", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(PROJECT_ROOT / "tests")  # no .env there
    values = {
        "APP_ENV": "production",
        "JWT_SECRET": STRONG_SECRET,
        "DATABASE_URL": "postgresql://app:Pr1vate-db-Passw0rd@db:5432/app",
        **env,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return load()


def test_a_private_production_configuration_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = start_up(
        monkeypatch,
        UNLEASH_API_TOKEN="default:development.4f1c9e0b7a2d48c3b6e5f8a1d2c3b4a5",
        UNLEASH_ADMIN_TOKEN="*:*.9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
    )
    assert settings.app_env == "production"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"UNLEASH_API_TOKEN": "default:development.backend-token-change-me"}, "UNLEASH_API_TOKEN"),
        ({"UNLEASH_ADMIN_TOKEN": "*:*.admin-token-change-me"}, "UNLEASH_ADMIN_TOKEN"),
        ({"DATABASE_URL": "postgresql://stoflow:stoflow@postgres:5432/stoflow"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql+psycopg://stoflow:stoflow@db/x"}, "DATABASE_URL"),
        ({"JWT_SECRET": "a" * 32}, "JWT_SECRET"),
        ({"JWT_SECRET": "ab" * 40}, "JWT_SECRET"),
        ({"JWT_SECRET": DEVELOPMENT_JWT_SECRET}, "JWT_SECRET"),
        ({"JWT_SECRET": "change-me-change-me-change-me-0123456789"}, "JWT_SECRET"),
        ({"JWT_SECRET": "Sh0rt!sEcret"}, "JWT_SECRET"),
    ],
)
def test_production_refuses_a_default_or_weak_secret_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError, match=variable) as refused:
        start_up(monkeypatch, **env)
    for value in env.values():
        assert value not in str(refused.value), "the message names the setting, not the secret"


def test_production_lists_every_refused_setting_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as refused:
        start_up(
            monkeypatch,
            JWT_SECRET="a" * 32,
            UNLEASH_API_TOKEN="default:development.backend-token-change-me",
        )
    assert "JWT_SECRET" in str(refused.value) and "UNLEASH_API_TOKEN" in str(refused.value)


def _app_env() -> dict[str, Any]:
    env: dict[str, Any] = COMPOSE["x-app-env"]
    return env


@pytest.mark.parametrize(
    "variable", ["JWT_SECRET", "DATABASE_URL", "UNLEASH_API_TOKEN", "UNLEASH_ADMIN_TOKEN"]
)
def test_compose_takes_every_secret_from_the_operator(variable: str) -> None:
    # `${NAME:?message}`: compose stops when the variable is unset; no default value to ship.
    assert ":?" in str(_app_env()[variable]), f"{variable} has a default in docker-compose.yml"
    for service in ("postgres", "unleash"):
        for value in COMPOSE["services"][service]["environment"].values():
            assert "change-me" not in str(value) and "stoflow:stoflow" not in str(value)
    assert ":?" in COMPOSE["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_compose_publishes_unleash_on_loopback_only() -> None:
    for mapping in COMPOSE["services"]["unleash"].get("ports", []):
        host = str(mapping).rsplit(":", 2)[0]
        assert "127.0.0.1" in host, f"Unleash published beyond loopback: {mapping}"


def test_production_defaults_to_json_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert start_up(monkeypatch).log_format == "json"
    assert start_up(monkeypatch, LOG_FORMAT="console").log_format == "console"
    assert start_up(monkeypatch, APP_ENV="development").log_format == "console"


def test_production_closes_the_api_docs_and_metrics_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = start_up(monkeypatch)
    assert not closed.serve_api_docs and not closed.serve_metrics
    opened = start_up(monkeypatch, SERVE_API_DOCS="true", SERVE_METRICS="true")
    assert opened.serve_api_docs and opened.serve_metrics
    development = start_up(monkeypatch, APP_ENV="development")
    assert development.serve_api_docs and development.serve_metrics


def test_the_image_gives_the_app_a_writable_data_dir() -> None:
    # The console's sessions live under DATA_DIR; the package's default is not writable there.
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "ENV DATA_DIR=/srv/data" in dockerfile and "chown app /srv/data" in dockerfile

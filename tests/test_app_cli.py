"""`python -m app`: tokens for local use, and settings refused at start-up by name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.core.security import decode_token
from app.core.settings import DEVELOPMENT_JWT_SECRET, PROJECT_ROOT


def app_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "APP_ENV")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=PROJECT_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_prints_a_valid_tenant_token_and_an_admin_token() -> None:
    tenant = app_cli("token", "42")
    admin = app_cli("token", "--admin")
    assert tenant.returncode == 0, tenant.stderr
    assert decode_token(DEVELOPMENT_JWT_SECRET, tenant.stdout.strip()).user_id == 42
    principal = decode_token(DEVELOPMENT_JWT_SECRET, admin.stdout.strip())
    assert principal.is_admin and principal.user_id is None


@pytest.mark.parametrize("args", [("token", "0"), ("token", "-5"), ("token",)])
def test_token_refuses_a_bad_user_id_with_exit_code_2(args: tuple[str, ...]) -> None:
    result = app_cli(*args)
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"JWT_SECRET": "short"}, "JWT_SECRET"),
        ({"DATABASE_URL": "mysql://root@localhost/db"}, "DATABASE_URL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"APP_ENV": "production"}, "JWT_SECRET"),
        ({"MAX_IMAGES_PER_PRODUCT": "many"}, "MAX_IMAGES_PER_PRODUCT"),
        ({"STORAGE_BACKEND": "s3"}, "S3_BUCKET"),
        (
            {"APP_ENV": "production", "JWT_SECRET": "p" * 40, "MARKETPLACE_ALLOW_HTTP": "true"},
            "MARKETPLACE_ALLOW_HTTP",
        ),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(
    env: dict[str, str], variable: str
) -> None:
    result = app_cli("token", "1", **env)
    assert result.returncode == 2
    assert variable in result.stderr

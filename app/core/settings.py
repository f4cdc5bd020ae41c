"""Settings from the environment, validated once at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_JWT_SECRET = "development-only-secret-change-me-0123456789"  # noqa: S105
# Words of the placeholders shipped in this repository (docker-compose.yml, README, tests):
# a production secret holding one was copied, not generated. ("development" is only refused
# in JWT_SECRET: an Unleash token names its environment, which may be called development.)
PLACEHOLDER_WORDS = ("change-me", "changeme")
JWT_PLACEHOLDER_WORDS = (*PLACEHOLDER_WORDS, "development", "example", "test-secret")
DEFAULT_DATABASE_PASSWORDS = frozenset({"stoflow", "postgres", "password", "secret", "admin"})
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT_CHARACTERS = 10


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


class Settings(BaseSettings):
    """Every knob of the app, read from environment variables (or `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    app_env: Literal["development", "test", "production"] = "development"
    database_url: str | None = None
    data_dir: Path = PROJECT_ROOT / ".data"

    unleash_url: str | None = None
    unleash_api_token: str | None = None
    unleash_admin_token: str | None = None
    # Where `python -m flags` changes toggles through the Admin API.
    unleash_project: str = "default"
    unleash_environment: str = "development"
    # Toggle definitions used when UNLEASH_URL is not set (Unleash's own JSON format).
    # Default: DATA_DIR/toggles.json, copied from flags/toggles.json (the tracked defaults,
    # never written) on first use, so that flipping a flag leaves the checkout clean.
    flags_file: Path = PROJECT_ROOT / ".data" / "toggles.json"

    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_ttl_seconds: int = Field(default=12 * 3600, gt=0)

    storage_backend: Literal["local", "s3"] = "local"
    media_root: Path | None = None
    media_base_url: str = "http://127.0.0.1:8000/media"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None

    # Default: json when APP_ENV=production, console otherwise (see _production_defaults).
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # /docs, /redoc, /openapi.json and /metrics: default closed when APP_ENV=production.
    serve_api_docs: bool = True
    serve_metrics: bool = True
    # Failed console sign-ins allowed per client address and minute (then 429).
    console_login_failures_per_minute: int = Field(default=10, ge=1)

    # Image URLs the API accepts besides the storage's own base (e.g. a CDN in front of R2).
    extra_image_url_bases: tuple[str, ...] = ()
    max_images_per_product: int = Field(default=30, ge=1, le=1000)
    max_upload_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    # 25 Mpx: a 24 Mpx camera (6000x4000) passes. Checking a picture decodes it once.
    max_upload_pixels: int = Field(default=25_000_000, gt=0)
    # Bytes of decoded pixels the checks in flight may hold per process (a 25 Mpx PNG costs
    # ~100 MB, a 14 Mpx WebP ~256 MB: app/services/decode_budget.py); more uploads wait for
    # their share, and a picture costing more than all of it is refused.
    decode_budget_bytes: int = Field(default=256 * 1024 * 1024, ge=16 * 1024 * 1024)
    # Request bodies, counted as they arrive (413 before the rest is read): JSON API routes,
    # and the console's forms. The upload route takes max_upload_bytes plus the multipart
    # envelope (UPLOAD_ENVELOPE_BYTES). deploy/nginx.conf repeats these numbers.
    max_json_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_form_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Bytes of stored images per tenant (objects under t<id>/): an upload past it is a 413.
    # Counted in each tenant's media_usage row, reserved before the file is stored, and
    # reconciled with the storage by `python -m app sweep-media` (docs/RUNBOOK.md).
    media_quota_bytes_per_tenant: int = Field(default=20 * 1024**3, gt=0)
    legacy_sources: tuple[str, ...] = ("pythonApiWOO",)
    migration_lock_timeout_ms: int = Field(default=500, gt=0)
    # Marketplaces fetch photos over https only. A local demo serves its media over http on
    # loopback: this lets its payloads be built anyway (refused with APP_ENV=production).
    marketplace_allow_http: bool = False
    # Once every tenant is contracted: new tenants start contracted (table only) too.
    contract_new_tenants: bool = False

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a postgresql:// URL (this project runs on PostgreSQL only)")
        return value or None

    @field_validator("media_base_url", "unleash_url", "s3_endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="before")
    @classmethod
    def _production_defaults(cls, data: Any) -> Any:
        # Defaults that depend on APP_ENV; a value the environment gives is kept.
        if not isinstance(data, dict) or data.get("app_env") != "production":
            return data
        defaults = {"log_format": "json", "serve_api_docs": False, "serve_metrics": False}
        return {**defaults, **data}

    @model_validator(mode="before")
    @classmethod
    def _flags_file_in_data_dir(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("flags_file"):
            return data
        data_dir = data.get("data_dir") or PROJECT_ROOT / ".data"
        return {**data, "flags_file": Path(data_dir) / "toggles.json"}

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if len(self.jwt_secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters long")
        if self.app_env == "production":
            problems = _production_problems(self)
            if problems:
                raise ValueError("; ".join(problems))
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("S3_BUCKET is required when STORAGE_BACKEND=s3")
        return self

    @property
    def resolved_media_root(self) -> Path:
        """The local storage folder (default: `.data/media`)."""
        return self.media_root or self.data_dir / "media"


def _production_problems(settings: Settings) -> list[str]:
    """What APP_ENV=production refuses, each naming its setting (never echoing the secret)."""
    problems = []
    if _is_weak_secret(settings.jwt_secret):
        problems.append(
            "JWT_SECRET must be a private random value when APP_ENV=production "
            f"({MIN_SECRET_LENGTH}+ characters, {MIN_SECRET_DISTINCT_CHARACTERS}+ distinct, "
            "no placeholder such as 'change-me'; e.g. `openssl rand -base64 48`)"
        )
    for name, token in (
        ("UNLEASH_API_TOKEN", settings.unleash_api_token),
        ("UNLEASH_ADMIN_TOKEN", settings.unleash_admin_token),
    ):
        if token is not None and _has_placeholder(token):
            problems.append(
                f"{name} is the placeholder shipped in docker-compose.yml: create a private "
                "token in Unleash (or set a private init token) when APP_ENV=production"
            )
    if settings.database_url is not None and _has_default_password(settings.database_url):
        problems.append(
            "DATABASE_URL uses a default database password (e.g. stoflow:stoflow): set "
            "POSTGRES_PASSWORD to a private value when APP_ENV=production"
        )
    if settings.marketplace_allow_http:
        problems.append("MARKETPLACE_ALLOW_HTTP must stay false when APP_ENV=production")
    return problems


def _has_placeholder(value: str, words: tuple[str, ...] = PLACEHOLDER_WORDS) -> bool:
    return any(word in value.lower() for word in words)


def _is_weak_secret(secret: str) -> bool:
    return (
        len(secret) < MIN_SECRET_LENGTH
        or len(set(secret)) < MIN_SECRET_DISTINCT_CHARACTERS
        or secret == DEVELOPMENT_JWT_SECRET
        or _has_placeholder(secret, JWT_PLACEHOLDER_WORDS)
    )


def _has_default_password(database_url: str) -> bool:
    try:
        url = make_url(database_url)
    except ArgumentError:  # not a URL SQLAlchemy can read: the connection will say so
        return False
    password = url.password
    if password is None:  # peer, certificate or .pgpass authentication
        return False
    password = str(password)
    return password.lower() in DEFAULT_DATABASE_PASSWORDS or password == url.username


def load_settings() -> Settings:
    """Read settings, turning a validation failure into one message naming each variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()

"""Settings from the environment, validated once at start-up."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEVELOPMENT_JWT_SECRET = "development-only-secret-change-me-0123456789"  # noqa: S105


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
    flags_file: Path = PROJECT_ROOT / "flags" / "toggles.json"

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

    log_format: Literal["json", "console"] = "console"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Image URLs the API accepts besides the storage's own base (e.g. a CDN in front of R2).
    extra_image_url_bases: tuple[str, ...] = ()
    max_images_per_product: int = Field(default=30, ge=1, le=1000)
    max_upload_bytes: int = Field(default=15 * 1024 * 1024, gt=0)
    max_upload_pixels: int = Field(default=40_000_000, gt=0)
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

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.app_env == "production" and self.jwt_secret == DEVELOPMENT_JWT_SECRET:
            raise ValueError("JWT_SECRET must be set to a private value when APP_ENV=production")
        if self.app_env == "production" and self.marketplace_allow_http:
            raise ValueError("MARKETPLACE_ALLOW_HTTP must stay false when APP_ENV=production")
        if len(self.jwt_secret) < 32:
            raise ValueError("JWT_SECRET must be at least 32 characters long")
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("S3_BUCKET is required when STORAGE_BACKEND=s3")
        return self

    @property
    def resolved_media_root(self) -> Path:
        """The local storage folder (default: `.data/media`)."""
        return self.media_root or self.data_dir / "media"


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

"""Where toggles are changed (the Unleash Admin API, or the local toggle file) and the
read-table guard, shared by `python -m flags` and the operator console."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import Engine

from app.core.database import unit_of_work
from app.core.settings import Settings
from app.services.image_paths import tenant_facts
from backfill.tenants import is_ready
from flags import toggle_file
from flags.admin_api import UnleashAdmin
from flags.client import Toggle

PER_TENANT = {"read-table": Toggle.READ_TABLE, "shadow-compare": Toggle.SHADOW_COMPARE}
GLOBAL = {"dual-write": Toggle.DUAL_WRITE, "backfill-pause": Toggle.BACKFILL_PAUSE}


class StoreUnavailable(RuntimeError):
    """Toggles cannot be changed with this configuration (the message names the variable)."""


class ToggleStore(Protocol):
    """Where toggles are changed: the Unleash Admin API or the local file."""

    location: str

    def tenants(self, name: str) -> list[int]: ...

    def is_enabled(self, name: str) -> bool: ...

    def set_tenants(self, name: str, *, add: list[int], remove: list[int]) -> list[int]: ...

    def set_enabled(self, name: str, enabled: bool) -> None: ...

    def close(self) -> None: ...


def toggle_store(settings: Settings) -> ToggleStore:
    """The Unleash Admin API when UNLEASH_URL is set, else the toggle file."""
    if not settings.unleash_url:
        return toggle_file.FileStore(settings.flags_file)
    if not settings.unleash_admin_token:
        raise StoreUnavailable(
            "UNLEASH_ADMIN_TOKEN: required to change toggles while UNLEASH_URL is set"
        )
    return UnleashAdmin(
        settings.unleash_url,
        settings.unleash_admin_token,
        project=settings.unleash_project,
        environment=settings.unleash_environment,
    )


def unverified_tenants(engine: Engine, tenants: list[int]) -> list[int]:
    """The tenants read-table must not be enabled for (not migrated, or not verified)."""
    unverified = []
    for tenant_id in tenants:
        if not is_ready(engine, tenant_id):
            unverified.append(tenant_id)
            continue
        with unit_of_work(engine, tenant_id) as session:
            if not tenant_facts(session).is_verified:
                unverified.append(tenant_id)
    return unverified

"""Where toggles are changed (the Unleash Admin API, or the local toggle file), behind the
verified-only interlock: read-table is never turned on for a tenant the given check calls
unverified, whoever asks (`python -m flags`, the operator console). A leaf: the check comes
from the caller (app.repositories.migration_state.unverified_tenants), the settings as any
object with the attributes of `StoreConfig`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from flags import toggle_file
from flags.admin_api import UnleashAdmin
from flags.client import Toggle

PER_TENANT = {"read-table": Toggle.READ_TABLE, "shadow-compare": Toggle.SHADOW_COMPARE}
GLOBAL = {"dual-write": Toggle.DUAL_WRITE, "backfill-pause": Toggle.BACKFILL_PAUSE}

# The tenants of a list that are not verified (read-table must stay off for them).
UnverifiedCheck = Callable[[Sequence[int]], list[int]]


class StoreUnavailable(RuntimeError):
    """Toggles cannot be changed with this configuration (the message names the variable)."""


class NotVerified(RuntimeError):
    """read-table asked for tenants that are not verified; nothing was changed."""

    def __init__(self, tenants: Sequence[int]) -> None:
        super().__init__(f"not verified: {', '.join(map(str, tenants))}")
        self.tenants = list(tenants)


class StoreConfig(Protocol):
    """The settings a toggle store needs (app.core.settings.Settings has them)."""

    @property
    def unleash_url(self) -> str | None: ...

    @property
    def unleash_admin_token(self) -> str | None: ...

    @property
    def unleash_project(self) -> str: ...

    @property
    def unleash_environment(self) -> str: ...

    @property
    def flags_file(self) -> Path: ...


class ToggleStore(Protocol):
    """Where toggles are changed: the Unleash Admin API or the local file."""

    location: str

    def tenants(self, name: str) -> list[int]: ...

    def is_enabled(self, name: str) -> bool: ...

    def set_tenants(self, name: str, *, add: list[int], remove: list[int]) -> list[int]: ...

    def set_enabled(self, name: str, enabled: bool) -> None: ...

    def close(self) -> None: ...


class InterlockedStore:
    """A toggle store that refuses read-table for unverified tenants (unless forced)."""

    def __init__(self, inner: ToggleStore, unverified: UnverifiedCheck) -> None:
        self._inner = inner
        self._unverified = unverified
        self.location = inner.location

    def tenants(self, name: str) -> list[int]:
        """The tenants a per-tenant toggle targets."""
        return self._inner.tenants(name)

    def is_enabled(self, name: str) -> bool:
        """Whether a global toggle is on."""
        return self._inner.is_enabled(name)

    def set_tenants(
        self, name: str, *, add: list[int], remove: list[int], force: bool = False
    ) -> list[int]:
        """Target `add`, untarget `remove`; NotVerified (nothing changed) when read-table
        would target an unverified tenant and `force` is not given."""
        if name == Toggle.READ_TABLE and add and not force:
            refused = self._unverified(add)
            if refused:
                raise NotVerified(refused)
        return self._inner.set_tenants(name, add=add, remove=remove)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Turn a global toggle on or off."""
        self._inner.set_enabled(name, enabled)

    def close(self) -> None:
        """Release the store's connection."""
        self._inner.close()


def unleash_admin(config: StoreConfig) -> UnleashAdmin:
    """The Unleash Admin API of the configured server (UNLEASH_URL and its admin token)."""
    if not config.unleash_url or not config.unleash_admin_token:
        raise StoreUnavailable(
            "UNLEASH_ADMIN_TOKEN: required to change toggles while UNLEASH_URL is set"
        )
    return UnleashAdmin(
        config.unleash_url,
        config.unleash_admin_token,
        project=config.unleash_project,
        environment=config.unleash_environment,
    )


def toggle_store(config: StoreConfig, *, unverified: UnverifiedCheck) -> InterlockedStore:
    """The Unleash Admin API when UNLEASH_URL is set, else the toggle file; interlocked."""
    if not config.unleash_url:
        return InterlockedStore(toggle_file.FileStore(config.flags_file), unverified)
    return InterlockedStore(unleash_admin(config), unverified)

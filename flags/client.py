"""One Unleash client per process, evaluating toggles with the tenant as context.

With UNLEASH_URL it polls that server; without, the same official client is bootstrapped
from flags import toggle_file
from flags/toggles.json (Unleash's own format) and a watcher re-bootstraps it when the file
changes, so local runs evaluate exactly as production does. Failing safe: before the first
fetch, and for a toggle the server does not know, the defaults below answer; when the server
goes away the client keeps its last values (docs/research/unleash-client-6.9.1.md).
"""

from __future__ import annotations

import json
import tempfile
import threading
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import structlog
from UnleashClient import UnleashClient  # type: ignore[attr-defined]
from UnleashClient.cache import FileCache
from UnleashClient.events import BaseEvent, UnleashEventType

from flags import toggle_file
from flags.stages import Flags

log = structlog.get_logger("flags")

APP_NAME = "product-images"
TOGGLES_FILE = Path(__file__).resolve().parent / "toggles.json"  # tracked defaults


class Toggle(StrEnum):
    """The migration's toggles, by their Unleash names."""

    DUAL_WRITE = "product-images.dual-write"
    READ_TABLE = "product-images.read-table"
    SHADOW_COMPARE = "product-images.shadow-compare"
    BACKFILL_PAUSE = "product-images.backfill-pause"


# What every toggle says when flags cannot be read: reads stay on the JSONB.
DEFAULTS: dict[Toggle, bool] = {
    Toggle.DUAL_WRITE: True,
    Toggle.READ_TABLE: False,
    Toggle.SHADOW_COMPARE: False,
    Toggle.BACKFILL_PAUSE: False,
}


class ClientConfig(Protocol):
    """The settings a flags client needs (app.core.settings.Settings has them)."""

    @property
    def unleash_url(self) -> str | None: ...

    @property
    def unleash_api_token(self) -> str | None: ...

    @property
    def flags_file(self) -> Path: ...


class FlagClient:
    """Evaluates the migration's toggles for a tenant; never raises, never blocks a request."""

    @classmethod
    def from_settings(cls, config: ClientConfig) -> FlagClient:
        """Unleash when UNLEASH_URL is set, else the local toggle file."""
        return cls(
            url=config.unleash_url,
            api_token=config.unleash_api_token,
            toggles_file=config.flags_file,
        )

    def __init__(
        self,
        *,
        url: str | None = None,
        api_token: str | None = None,
        toggles_file: Path = TOGGLES_FILE,
        refresh_interval: int = 1,
        watch_interval: float = 1.0,
    ) -> None:
        # Each process its own cache folder: the default one is shared and leaks between runs.
        self._cache_dir = tempfile.TemporaryDirectory(prefix="unleash-cache-")
        self._stop = threading.Event()
        self._fetched = threading.Event()
        self.toggles_file = Path(toggles_file)
        self.source = url or str(self.toggles_file)
        if url:
            self._client = UnleashClient(
                url=url,
                app_name=APP_NAME,
                custom_headers={"Authorization": api_token} if api_token else None,
                refresh_interval=refresh_interval,
                request_timeout=2,
                request_retries=0,
                disable_metrics=True,
                cache_directory=self._cache_dir.name,
                event_callback=self._on_event,
            )
            # A server that accepts connections but never answers would block here for
            # request_timeout x retries: start in the background, defaults answer meanwhile.
            self._init = threading.Thread(target=self._client.initialize_client, daemon=True)
            self._init.start()
        else:
            self._cache = FileCache(APP_NAME, directory=self._cache_dir.name)
            self._cache.bootstrap_from_file(toggle_file.ensure(self.toggles_file))
            self._client = UnleashClient(
                url="http://127.0.0.1:9/api",  # never contacted: fetch_toggles=False
                app_name=APP_NAME,
                cache=self._cache,
                disable_registration=True,
                disable_metrics=True,
                refresh_interval=refresh_interval,
            )
            self._client.initialize_client(fetch_toggles=False)
            self._mtime = self.toggles_file.stat().st_mtime_ns
            threading.Thread(target=self._watch, args=(watch_interval,), daemon=True).start()

    def wait_until_ready(self, timeout: float) -> bool:
        """Wait (for a command-line tool, never in a request) until the server's toggles are
        fetched; False when it did not answer in time (the defaults keep answering)."""
        if getattr(self, "_init", None) is None:
            return True  # the toggle file is read synchronously
        return self._fetched.wait(timeout)

    def _on_event(self, event: BaseEvent) -> None:
        if event.event_type == UnleashEventType.FETCHED and not self._fetched.is_set():
            self._fetched.set()
            log.info("flags.fetched", server=self.source)

    def reload(self) -> None:
        """Read the toggle file again now (the watcher does this when the file changes).
        Raises ValueError (the last good values stay) when the file is not valid JSON with a
        `features` list, e.g. caught half-written by an editor that does not replace it
        atomically."""
        definitions = json.loads(self.toggles_file.read_text())
        if not isinstance(definitions, dict) or not isinstance(definitions.get("features"), list):
            raise ValueError("not an Unleash toggle file: no `features` list")
        self._cache.bootstrap_from_file(self.toggles_file)
        # UnleashClient 6.9 re-reads its cache every refresh_interval on its own; this makes
        # the change visible at once for whoever asked for the reload.
        self._client._store.load_from_cache()
        log.info("flags.file_reloaded", file=str(self.toggles_file))

    def _watch(self, interval: float) -> None:
        """Reload when the file changes; keep the last good values when it cannot be read,
        and try again on the next tick (a file caught half-written may be completed within
        the same mtime tick, so "changed since last time" alone would miss the final
        version). One error event per unreadable version, not one a tick."""
        failed: int | None = None
        while not self._stop.wait(interval):
            try:
                mtime = self.toggles_file.stat().st_mtime_ns
                if mtime == self._mtime:
                    continue
                self.reload()
                self._mtime, failed = mtime, None
            except (OSError, ValueError) as exc:
                if failed != mtime:
                    log.error("flags.file_unreadable", file=str(self.toggles_file), error=str(exc))
                    failed = mtime

    def is_enabled(self, toggle: Toggle, tenant_id: int | None = None) -> bool:
        """The toggle for this tenant (`userId` = the tenant's user id), or its default."""
        default = DEFAULTS[toggle]
        context: dict[str, Any] = {"userId": str(tenant_id)} if tenant_id is not None else {}
        try:
            return bool(
                self._client.is_enabled(
                    toggle.value, context, fallback_function=lambda _name, _ctx: default
                )
            )
        except Exception as exc:  # fail safe: a flag problem must never fail a request
            log.error("flags.evaluation_failed", toggle=toggle.value, error=repr(exc))
            return default

    def flags_for(self, tenant_id: int) -> Flags:
        """The image toggles for one tenant."""
        return Flags(
            dual_write=self.is_enabled(Toggle.DUAL_WRITE, tenant_id),
            read_table=self.is_enabled(Toggle.READ_TABLE, tenant_id),
            shadow_compare=self.is_enabled(Toggle.SHADOW_COMPARE, tenant_id),
        )

    def close(self) -> None:
        """Stop the watcher and the client's scheduler."""
        self._stop.set()
        try:
            self._client.destroy()
        finally:
            self._cache_dir.cleanup()

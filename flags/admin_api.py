"""Toggle changes through the Unleash Admin API (unleash-server 7.x), the same operations
`flags/toggle_file.py` does on the local file. The calls were checked against a real
7.5.1 server (docs/research/unleash-client-6.9.1.md and tests/flags/test_unleash_server.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import structlog

from flags import targeting

log = structlog.get_logger("flags.admin")


class UnleashAdminError(RuntimeError):
    """The server could not be reached, refused the token, or answered unexpectedly."""


class UnknownToggle(UnleashAdminError):
    """The toggle does not exist on the server yet (`python -m flags push` creates it)."""


class UnleashAdmin:
    """One project and environment of an Unleash server, through its Admin API."""

    def __init__(
        self,
        api_url: str,
        admin_token: str,
        *,
        project: str = "default",
        environment: str = "development",
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # UNLEASH_URL is the server's API root (`http://host:4242/api`), as the client wants.
        self.location = f"{api_url.rstrip('/')} (project {project}, environment {environment})"
        self.project = project
        self.environment = environment
        self._http = httpx.Client(
            base_url=f"{api_url.rstrip('/')}/admin/projects/{project}",
            headers={"Authorization": admin_token, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UnleashAdmin:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- reads -------------------------------------------------------------------------

    def feature(self, name: str) -> dict[str, Any]:
        """The toggle as the server holds it."""
        return self._call("GET", f"/features/{name}", name=name)

    def _environment(self, name: str) -> dict[str, Any]:
        for environment in self.feature(name).get("environments", []):
            if environment.get("name") == self.environment:
                return dict(environment)
        raise UnleashAdminError(
            f"toggle {name!r} has no environment {self.environment!r} in project {self.project!r}"
        )

    def is_enabled(self, name: str) -> bool:
        """Whether the toggle is on in this environment."""
        return bool(self._environment(name).get("enabled"))

    def tenants(self, name: str) -> list[int]:
        """The tenants the toggle's per-tenant strategy targets."""
        strategy = self._tenant_strategy(name)
        return targeting.targeted(strategy) if strategy else []

    def _tenant_strategy(self, name: str) -> dict[str, Any] | None:
        for strategy in self._environment(name).get("strategies", []):
            if targeting.tenant_constraint(strategy) is not None:
                return dict(strategy)
        return None

    # --- changes -----------------------------------------------------------------------

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Turn the toggle on or off in this environment."""
        action = "on" if enabled else "off"
        self._call("POST", f"/features/{name}/environments/{self.environment}/{action}", name=name)
        log.info("flags.admin_changed", toggle=name, enabled=enabled, server=self.location)

    def set_tenants(
        self, name: str, *, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> list[int]:
        """Add and remove tenants on the toggle's `userId IN [...]` strategy. Unleash refuses
        an empty `IN` list and turns a toggle with no strategy on for everyone, so "nobody"
        is the toggle off with no tenant strategy: the last tenant out turns it off, then
        deletes the strategy; the first tenant in gets a strategy, then turns it on. Returns
        the tenants targeted afterwards."""
        add, remove = list(add), list(remove)
        strategy = self._tenant_strategy(name)
        base = f"/features/{name}/environments/{self.environment}/strategies"
        current = targeting.targeted(strategy) if strategy else []
        wanted = sorted((set(current) | set(add)) - set(remove))
        if not wanted:
            if strategy is not None:
                self.set_enabled(name, False)
                self._call("DELETE", f"{base}/{strategy['id']}", name=name)
        elif strategy is None:
            self._call("POST", base, name=name, json=targeting.tenant_strategy(name, wanted))
        else:
            changed = targeting.retarget(strategy, add=add, remove=remove)
            body = {key: changed[key] for key in ("name", "parameters", "constraints")}
            for optional in ("title", "disabled", "segments", "variants", "sortOrder"):
                if optional in changed:
                    body[optional] = changed[optional]
            self._call("PUT", f"{base}/{strategy['id']}", name=name, json=body)
        if wanted and not self.is_enabled(name):
            self.set_enabled(name, True)
        now = self.tenants(name)
        log.info("flags.admin_changed", toggle=name, tenants=now, server=self.location)
        return now

    def create(self, feature: dict[str, Any]) -> None:
        """Create a toggle from its toggle-file definition (strategies and on/off); a
        per-tenant strategy that targets nobody is left out and the toggle stays off (see
        set_tenants)."""
        name = str(feature["name"])
        self._call(
            "POST",
            "/features",
            name=name,
            json={"name": name, "type": "release", "description": feature.get("description", "")},
        )
        strategies = 0
        for strategy in feature.get("strategies", []):
            if targeting.tenant_constraint(strategy) is not None and not targeting.targeted(
                strategy
            ):
                continue
            body = {
                "name": strategy["name"],
                "parameters": strategy.get("parameters", {}),
                "constraints": strategy.get("constraints", []),
            }
            self._call(
                "POST",
                f"/features/{name}/environments/{self.environment}/strategies",
                name=name,
                json=body,
            )
            strategies += 1
        self.set_enabled(name, bool(feature.get("enabled")) and strategies > 0)

    def exists(self, name: str) -> bool:
        try:
            self.feature(name)
        except UnknownToggle:
            return False
        return True

    # --- transport ---------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, name: str, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise UnleashAdminError(
                f"Unleash at {self.location} cannot be reached: {exc!r}"
            ) from None
        if response.status_code == 404 and method == "GET":
            raise UnknownToggle(
                f"toggle {name!r} does not exist in Unleash at {self.location}; "
                "`python -m flags push` creates the migration's toggles"
            )
        if response.status_code in (401, 403):
            raise UnleashAdminError(
                f"Unleash at {self.location} refused the admin token "
                f"(HTTP {response.status_code}): check UNLEASH_ADMIN_TOKEN"
            )
        if response.status_code >= 400:
            raise UnleashAdminError(
                f"Unleash answered HTTP {response.status_code} to {method} {path}: "
                f"{response.text[:300]}"
            )
        if not response.content:
            return {}
        data = response.json()
        return data if isinstance(data, dict) else {"items": data}

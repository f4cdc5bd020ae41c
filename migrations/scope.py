"""Which schema a revision belongs to: `public` once, or every tenant schema."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Literal

from alembic import op

Scope = Literal["public", "tenant"]
SCOPE_KEY = "migration_scope"


def current_scope() -> Scope:
    """The scope env.py is migrating on this connection."""
    scope: Scope = op.get_bind().info[SCOPE_KEY]
    return scope


def _only(scope: Scope) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def decorate(step: Callable[[], None]) -> Callable[[], None]:
        @wraps(step)
        def run() -> None:
            if current_scope() == scope:
                step()

        return run

    return decorate


public_schema = _only("public")
tenant_schema = _only("tenant")

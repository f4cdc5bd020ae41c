"""Which representations a tenant's image reads and writes use, decided once per call from
the tenant's facts (in the caller's transaction) and its flags, by flags.stages.resolve."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlalchemy.orm import Session

from app.core.database import session_schema, tenant_id_of
from app.core.metrics import INTERLOCK_REFUSALS
from app.repositories.tenant_facts import tenant_facts
from flags.stages import Flags, ReadPath, Resolution, resolve

log = structlog.get_logger("flags")

FlagSource = Callable[[int], Flags]

__all__ = ["FlagSource", "ImagePaths", "ReadPath"]


class ImagePaths:
    """Resolves a tenant's stage per call; the flags come from a source (Unleash, or none)."""

    def __init__(self, flags: FlagSource | None = None) -> None:
        self._flags = flags or (lambda _tenant: Flags())

    def resolution(self, session: Session) -> Resolution:
        """The tenant's stage and paths; a refused `read-table` is logged as an error."""
        tenant_id = tenant_id_of(session_schema(session))
        resolved = resolve(tenant_facts(session), self._flags(tenant_id))
        if resolved.refusal:
            INTERLOCK_REFUSALS.inc()
            log.error("flags.interlock_refused", tenant=tenant_id, reason=resolved.refusal)
        return resolved

    def writes_table(self, session: Session) -> bool:
        """Write the table as well as the JSONB."""
        return self.resolution(session).writes_table

    def read_path(self, session: Session) -> ReadPath:
        """Where reads come from."""
        return self.resolution(session).read_path

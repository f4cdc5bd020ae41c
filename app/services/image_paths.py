"""Which representations a tenant's image reads and writes use, decided once per call from
the tenant's facts (in the caller's transaction) and its flags, by flags.stages.resolve."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from app.core.database import TenantSession
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

    def resolution(self, session: TenantSession) -> Resolution:
        """The tenant's stage and paths, resolved once per transaction of `session` (a
        request's unit of work, an audit's pass over a tenant): every decision of the
        transaction uses the same stage, and the facts' three queries run once. A refused
        `read-table` is logged as an error."""
        cached = session.stage  # forgotten at the transaction's end (TenantSession)
        if isinstance(cached, Resolution):
            return cached
        resolved = resolve(tenant_facts(session), self._flags(session.tenant_id))
        if resolved.refusal:
            INTERLOCK_REFUSALS.inc()
            log.error("flags.interlock_refused", tenant=session.tenant_id, reason=resolved.refusal)
        session.stage = resolved
        return resolved

    def writes_table(self, session: TenantSession) -> bool:
        """Write the table as well as the JSONB."""
        return self.resolution(session).writes_table

    def read_path(self, session: TenantSession) -> ReadPath:
        """Where reads come from."""
        return self.resolution(session).read_path

"""Which representations a tenant's image reads and writes use, decided once per call from
the tenant's facts (in the caller's transaction) and its flags, by flags.stages.resolve."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from app.core.database import session_schema, tenant_id_of
from app.core.metrics import INTERLOCK_REFUSALS
from app.repositories.tenant_facts import tenant_facts
from flags.stages import Flags, ReadPath, Resolution, resolve

log = structlog.get_logger("flags")

FlagSource = Callable[[int], Flags]

__all__ = ["FlagSource", "ImagePaths", "ReadPath"]


_RESOLVED = "pim.resolution"  # session.info key: the stage of the current transaction


@event.listens_for(Session, "after_transaction_end")
def _forget_the_stage(session: Session, transaction: SessionTransaction) -> None:
    # The next transaction resolves afresh: the stage may have moved on (a verify, a flag).
    if transaction.parent is None:
        session.info.pop(_RESOLVED, None)


class ImagePaths:
    """Resolves a tenant's stage per call; the flags come from a source (Unleash, or none)."""

    def __init__(self, flags: FlagSource | None = None) -> None:
        self._flags = flags or (lambda _tenant: Flags())

    def resolution(self, session: Session) -> Resolution:
        """The tenant's stage and paths, resolved once per transaction of `session` (a
        request's unit of work, an audit's pass over a tenant): every decision of the
        transaction uses the same stage, and the facts' three queries run once. A refused
        `read-table` is logged as an error."""
        cached = session.info.get(_RESOLVED)
        if isinstance(cached, Resolution):
            return cached
        tenant_id = tenant_id_of(session_schema(session))
        resolved = resolve(tenant_facts(session), self._flags(tenant_id))
        if resolved.refusal:
            INTERLOCK_REFUSALS.inc()
            log.error("flags.interlock_refused", tenant=tenant_id, reason=resolved.refusal)
        session.info[_RESOLVED] = resolved
        return resolved

    def writes_table(self, session: Session) -> bool:
        """Write the table as well as the JSONB."""
        return self.resolution(session).writes_table

    def read_path(self, session: Session) -> ReadPath:
        """Where reads come from."""
        return self.resolution(session).read_path

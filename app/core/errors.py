"""The one base of the errors a caller is told about: each says its HTTP status, the field at
fault (when there is one) and why, so `app/api/errors.py` renders every one of them with one
handler. Raised by the domain core, the services and the edges alike; nothing here knows
HTTP beyond the status number."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """An error with a status and a field. `validation` errors answer in FastAPI's 422 shape
    (`{"detail": [{"loc": ["body", field], "msg": ..., "type": reason}]}`), the others as
    `{"detail": ..., "field": ...}` plus `extra()`."""

    status: int = 422
    field: str | None = None
    reason: str = "invalid"
    validation: ClassVar[bool] = False
    # Seconds after which the same call may succeed (503s), sent as Retry-After.
    retry_after: ClassVar[int | None] = None
    # A 401's challenge, sent as WWW-Authenticate.
    challenge: ClassVar[str | None] = None
    # The event a 5xx is logged as (alerts key on it).
    log_event: ClassVar[str] = "domain_error"

    @property
    def detail(self) -> str:
        """The sentence the caller reads."""
        return str(self)

    def extra(self) -> dict[str, Any]:
        """More of the body, beside detail and field (never in the validation shape)."""
        return {}

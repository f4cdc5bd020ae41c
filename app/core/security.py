"""JWT bearer tokens: HS256, `sub` = the tenant's user id, optional `role: admin`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from app.core.database import InvalidTenantId, tenant_schema

ALGORITHM = "HS256"
_USER_ID = re.compile(r"[1-9][0-9]{0,17}")


class InvalidToken(Exception):
    """A token that is missing, expired, forged or malformed."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant's user, an operator, or both."""

    user_id: int | None
    is_admin: bool


def issue_token(
    secret: str, *, user_id: int | None, is_admin: bool = False, ttl: timedelta, now: datetime
) -> str:
    """Sign a token for a tenant's user (and/or an operator with `role: admin`)."""
    if user_id is None and not is_admin:
        raise ValueError("a token needs a user id, an admin role, or both")
    claims: dict[str, object] = {
        "sub": str(user_id) if user_id is not None else "operator",
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if user_id is not None:
        tenant_schema(user_id)
    if is_admin:
        claims["role"] = "admin"
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    """Validate signature, algorithm and expiry; return the caller."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from None
    is_admin = claims.get("role") == "admin"
    sub = claims["sub"]
    if sub == "operator" and is_admin:
        return Principal(user_id=None, is_admin=True)
    # ASCII digits only: str.isdigit() would also accept fullwidth digits.
    if not isinstance(sub, str) or not _USER_ID.fullmatch(sub):
        raise InvalidToken("sub must be a user id")
    try:
        user_id = int(sub)
        tenant_schema(user_id)
    except (ValueError, InvalidTenantId):
        raise InvalidToken("sub must be a positive user id") from None
    return Principal(user_id=user_id, is_admin=is_admin)


def now_utc() -> datetime:
    """The current time, timezone-aware (the edge's clock, passed into the core)."""
    return datetime.now(UTC)

"""Console sign-in: the admin token is pasted once into a form and kept in an HttpOnly,
SameSite=Strict cookie; every state-changing form carries a CSRF token bound to that cookie
(an HMAC of it with the app's secret), checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from app.core.security import InvalidToken, Principal, decode_token

COOKIE = "pim_console"


class ConsoleLoginRequired(Exception):
    """No valid admin cookie: pages redirect to the login form, actions are refused."""


class CsrfRejected(Exception):
    """A state-changing request without the right CSRF token."""


def admin_from_cookie(request: Request) -> Principal:
    token = request.cookies.get(COOKIE)
    if not token:
        raise ConsoleLoginRequired("sign in with an admin token")
    try:
        principal = decode_token(request.app.state.settings.jwt_secret, token)
    except InvalidToken as exc:
        raise ConsoleLoginRequired(f"the console session is not valid: {exc}") from None
    if not principal.is_admin:
        raise ConsoleLoginRequired("the console needs an admin token")
    return principal


def csrf_token(request: Request) -> str:
    """The CSRF token of this session (empty when signed out)."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        return ""
    secret = request.app.state.settings.jwt_secret.encode()
    return hmac.new(secret, b"csrf:" + token.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = csrf_token(request)
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise CsrfRejected("missing or wrong CSRF token")

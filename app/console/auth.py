"""Console sign-in: the admin token is pasted once into a form and checked; the browser then
holds only a server-side session id (app/console/sessions.py) in an HttpOnly,
SameSite=Strict cookie. Every state-changing form carries a CSRF token bound to that cookie
(an HMAC of it with the app's secret), checked in constant time; messages passed in a
redirect's URL are signed the same way, so a page shows only what the server wrote."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated

import jwt
from fastapi import Depends, Form, Request

from app.api.deps import services_of
from app.console.sessions import ConsoleSession, SessionStore
from app.core.security import InvalidToken, decode_token

COOKIE = "pim_console"


class ConsoleLoginRequired(Exception):
    """No valid admin cookie: pages redirect to the login form, actions are refused."""


class CsrfRejected(Exception):
    """A state-changing request without the right CSRF token."""


def session_store(request: Request) -> SessionStore:
    """The app's console sessions."""
    store: SessionStore = request.app.state.console_sessions
    return store


def admin_from_cookie(request: Request) -> ConsoleSession:
    """The open session the cookie names; ConsoleLoginRequired otherwise."""
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        raise ConsoleLoginRequired("sign in with an admin token")
    session = session_store(request).lookup(session_id)
    if session is None:
        raise ConsoleLoginRequired("the console session has ended or is not valid: sign in")
    return session


def open_session(request: Request, token: str, ttl_seconds: int) -> str:
    """Check an admin token and open a session (its id is the cookie's value), ending when the
    token does or after `ttl_seconds`. InvalidToken when the token cannot open the console."""
    principal = decode_token(services_of(request).settings.jwt_secret, token)
    if not principal.is_admin:
        raise InvalidToken("not an admin token")
    # The signature and expiry were just checked: only `exp` is read here.
    token_expiry = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    return session_store(request).open(
        who=f"admin token {token_fingerprint(token)}",
        expires_at=min(token_expiry, time.time() + ttl_seconds),
    )


def token_fingerprint(token: str) -> str:
    """Ten hex digits that name a token in the logs without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:10]


def _mac(request: Request, purpose: bytes, text: str = "") -> str:
    session_id = request.cookies.get(COOKIE, "")
    if not session_id:
        return ""
    secret = services_of(request).settings.jwt_secret.encode()
    message = purpose + session_id.encode() + b"\0" + text.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    """The CSRF token of this session (empty when signed out)."""
    return _mac(request, b"csrf:")


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = csrf_token(request)
    if not expected or not submitted or not _same(expected, submitted):
        raise CsrfRejected("missing or wrong CSRF token")


def _same(expected: str, submitted: str) -> bool:
    # As bytes: compare_digest raises TypeError on a non-ASCII str (a 500 on a form value).
    return hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "replace"))


def message_signature(request: Request, message: str) -> str:
    """The signature a redirect carries with its `msg` (bound to this session)."""
    return _mac(request, b"msg:", message)


def signed_message(request: Request) -> str | None:
    """The request's `msg` when the server signed it for this session, else None: a link
    from elsewhere cannot put its own words on a console page."""
    message = request.query_params.get("msg")
    signature = request.query_params.get("sig", "")
    expected = message_signature(request, message) if message else ""
    if not expected or not _same(expected, signature):
        return None
    return message


def _csrf_checked(request: Request, csrf: Annotated[str | None, Form(alias="csrf")] = None) -> None:
    check_csrf(request, csrf)


# The console's checks as typed dependencies: a route that changes state declares both, the
# session first (no session: 403 "sign in", not a CSRF complaint).
AdminCookie = Annotated[ConsoleSession, Depends(admin_from_cookie)]
Csrf = Annotated[None, Depends(_csrf_checked)]

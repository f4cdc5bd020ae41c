"""Request bodies bounded before they are read: a size per route, counted as the bytes
arrive, and the bearer token checked before an API body is read at all.

FastAPI reads (and spools) a body before it resolves a route's dependencies, so without this
a 200 MB upload without a token went to disk before its 401, and a 150 MB JSON body grew the
process by ~450 MB before any check. Here:

- a declared `Content-Length` over the route's limit is a 413 before one body byte is read;
- a body that arrives in chunks (no length, or a lying one) is counted and cut off at the
  limit: the route's own response is replaced by the 413;
- an `/api/` request that carries a body needs a valid bearer token first (401 otherwise,
  the body unread). The route's dependencies still decide tenant and role.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.security import InvalidToken, decode_token

# The multipart envelope around an upload's file: boundaries, part headers and the small
# form fields (alt text <= 2 KB, up to 20 tags, flags); generous, and still bounded.
UPLOAD_ENVELOPE_BYTES = 64 * 1024
UPLOAD_ROUTE = re.compile(r"/api/products/[^/]+/images/upload")


@dataclass(frozen=True)
class BodyRule:
    """The most a route reads, the field a 413 names, and whether a token comes first."""

    limit: int
    field: str
    bearer_first: bool


@dataclass(frozen=True)
class BodyLimits:
    """The rules of this app, from its settings."""

    upload: BodyRule
    api: BodyRule
    other: BodyRule

    @classmethod
    def of(cls, *, max_upload_bytes: int, max_json_bytes: int, max_form_bytes: int) -> BodyLimits:
        """Uploads get the file limit plus the envelope; other API routes the JSON limit;
        everything else (the console's forms) the form limit."""
        return cls(
            upload=BodyRule(max_upload_bytes + UPLOAD_ENVELOPE_BYTES, "file", bearer_first=True),
            api=BodyRule(max_json_bytes, "body", bearer_first=True),
            other=BodyRule(max_form_bytes, "body", bearer_first=False),
        )

    def rule_for(self, method: str, path: str) -> BodyRule:
        """The rule of one request."""
        if method == "POST" and UPLOAD_ROUTE.fullmatch(path.rstrip("/")):
            return self.upload
        if path.startswith("/api/"):
            return self.api
        return self.other


class BodyTooLarge(Exception):
    """Raised into the route when its body passes the limit while being read."""


# The token check: the problem with the Authorization header (as the 401 says it), or None.
TokenCheck = Callable[[str | None], str | None]


class BodyLimitMiddleware:
    """Enforce `BodyLimits` on every HTTP request (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits, check_token: TokenCheck) -> None:
        self.app = app
        self.limits = limits
        self.check_token = check_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.limits.rule_for(scope["method"], scope["path"])
        headers = Headers(scope=scope)
        declared = _declared_length(headers)
        carries_body = (declared or 0) > 0 or "transfer-encoding" in headers
        if carries_body and rule.bearer_first:
            problem = self.check_token(headers.get("authorization"))
            if problem is not None:
                await _respond(
                    send,
                    401,
                    {"detail": problem, "field": None},
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        if declared is not None and declared > rule.limit:
            await _respond(send, 413, _too_large(rule, declared))
            return
        await self._counted(rule, scope, receive, send)

    async def _counted(self, rule: BodyRule, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        exceeded = False
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > rule.limit:
                    exceeded = True
                    raise BodyTooLarge(f"more than {rule.limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                if exceeded:  # the route turned the cut-off into its own error: say why
                    response_started = True
                    await _respond(send, 413, _too_large(rule, received))
                    return
                response_started = True
            elif exceeded:
                return  # the rest of the replaced response
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLarge:
            if not response_started:
                await _respond(send, 413, _too_large(rule, received))


def _declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.isascii() or not value.isdigit():
        return None  # the server (h11) refuses a malformed length before the app sees it
    return int(value)


def _too_large(rule: BodyRule, size: int) -> dict[str, object]:
    # The shape of FastAPI's 422 (and of UploadRejected's 413): one format for clients.
    return {
        "detail": [
            {
                "loc": ["body", rule.field],
                "msg": f"the request body is larger than the {rule.limit} bytes this route "
                f"accepts (at least {size} bytes sent)",
                "type": "too_large",
            }
        ]
    }


async def _respond(
    send: Send, status: int, content: object, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(content).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is not read: the connection cannot be reused.
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def bearer_problem(secret: str, authorization: str | None) -> str | None:
    """What is wrong with an Authorization header, in the words of the API's 401, or None."""
    scheme, token = get_authorization_scheme_param(authorization)
    if not authorization or scheme.lower() != "bearer" or not token:
        return "missing bearer token"
    try:
        decode_token(secret, token)
    except InvalidToken as exc:
        return f"invalid token: {exc}"
    return None

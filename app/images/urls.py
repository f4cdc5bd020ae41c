"""Which image URLs the API accepts: http(s) URLs under one of the configured storage bases."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from app.images.errors import InvalidImageField


def check_image_url(url: str, bases: Sequence[str]) -> str:
    """Return the URL if it is http(s) and under a storage base, else raise naming `url`."""
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        raise InvalidImageField("url", "must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidImageField("url", "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise InvalidImageField("url", "must not carry credentials")
    # Decoded as a client would: "%2e%2e" is "..", and an encoded slash or backslash would
    # hide one (found by the hostile-input drill).
    for segment in parts.path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            raise InvalidImageField(
                "url", "must not contain '.' or '..' path segments, even percent-encoded"
            )
    for base in bases:
        allowed = urlsplit(base.rstrip("/"))
        same_origin = (parts.scheme, parts.netloc.lower()) == (
            allowed.scheme,
            allowed.netloc.lower(),
        )
        if (
            same_origin
            and parts.path.startswith(allowed.path + "/")
            and len(parts.path) > len(allowed.path) + 1
        ):
            return url
    raise InvalidImageField(
        "url", "must point at an object under a storage base: " + ", ".join(bases)
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def fetch_refusal(url: str, bases: Sequence[str]) -> str | None:
    """Why a server-side fetch must not request `url`, or None when it is under a base.

    Stricter than `check_image_url`, since the server itself sends the request: same scheme,
    host and port (default ports made explicit) as a base, the path under the base's path on
    a segment boundary once percent-decoded, and no credentials, backslash, non-ASCII or
    control character, encoded slash, double encoding or '.'/'..' segment.
    """
    target = _fetch_origin(url)
    if isinstance(target, str):
        return target
    for base in bases:
        allowed = _fetch_origin(base.rstrip("/") or base)
        if isinstance(allowed, str):
            continue
        scheme, host, port, path = target
        base_scheme, base_host, base_port, base_path = allowed
        prefix = base_path.rstrip("/") + "/"
        if (
            (scheme, host, port) == (base_scheme, base_host, base_port)
            and path.startswith(prefix)
            and len(path) > len(prefix)
        ):
            return None
    return "not under a storage base: " + ", ".join(bases)


def _fetch_origin(url: str) -> tuple[str, str, int, str] | str:
    """(scheme, host, port, decoded path) of an absolute http(s) URL, or why it is refused."""
    if any(not 0x21 <= ord(char) < 0x7F for char in url):
        return "contains a space, a control or a non-ASCII character"
    if "\\" in url:
        return "contains a backslash"
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        return f"scheme {parts.scheme!r} is not http or https"
    if "@" in parts.netloc:
        return "carries credentials"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port"
    host = parts.hostname
    if not host:
        return "has no host"
    lowered = parts.path.lower()
    if "%2f" in lowered or "%5c" in lowered:
        return "contains an encoded slash or backslash"
    path = unquote(parts.path) or "/"
    if "%" in path:
        return "is percent-encoded twice"
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in path) or "\\" in path:
        return "contains an encoded control character or backslash"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "contains '.' or '..' path segments"
    return parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme], path

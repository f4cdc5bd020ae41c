"""Which image URLs the API accepts: http(s) URLs under one of the configured storage bases."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

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
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise InvalidImageField("url", "must not contain '.' or '..' path segments")
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

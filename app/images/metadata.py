"""What a stored image's first bytes say: its type and pixel size. Pure: bytes in, values out.

Pillow reads the header lazily (`Image.open` parses it, decodes nothing). The bytes decide,
never the file name or the Content-Type the server sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from typing import Final

from PIL import Image as PillowImage

# Pillow's format names -> the MIME type recorded. MPO is a multi-picture JPEG (cameras).
MIME_TYPES: Final = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
ACCEPTED_FORMATS: Final = ("JPEG", "PNG", "WEBP", "GIF")

_SIGNATURES: Final = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
# Images in formats the enrichment does not read: named so the failure says what they are.
_OTHER_SIGNATURES: Final = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"8BPS", "PSD"),
)
_ISO_BRANDS: Final = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC"}
_SVG: Final = re.compile(rb"^\s*(<\?xml[^>]*>\s*)?<svg[\s>]", re.IGNORECASE)
SIGNATURE_BYTES: Final = 16
"""Fewer bytes than this (of an object not read to its end) cannot be told apart yet."""


class Reason(StrEnum):
    """Why an image has no metadata: kept in `image_metadata_failures.reason`."""

    REFUSED_URL = "refused_url"
    REFUSED_REDIRECT = "refused_redirect"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    NOT_FOUND = "not_found"
    HTTP_ERROR = "http_error"
    UNREACHABLE = "unreachable"
    TOO_MANY_RETRIES = "too_many_retries"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    UNREADABLE_HEADER = "unreadable_header"
    TOO_MANY_PIXELS = "too_many_pixels"
    HEADER_TOO_LARGE = "header_too_large"
    SIZE_UNKNOWN = "size_unknown"


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """Type and pixel size read from an image's header."""

    mime_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The bytes are not an image the enrichment reads, and why."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class NeedMoreBytes:
    """The header goes on past the bytes given; `at_least` is the total needed when known."""

    at_least: int | None = None


def sniff(head: bytes) -> str | None:
    """The accepted format the first bytes announce (Pillow's name), or None."""
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def parse_header(head: bytes, *, complete: bool) -> HeaderFacts | Unreadable | NeedMoreBytes:
    """Read type and size from the first bytes of an object (`complete`: all of it)."""
    name = sniff(head)
    if name is None:
        if len(head) < SIGNATURE_BYTES and not complete:
            return NeedMoreBytes()
        other = _other_format(head)
        if other is not None:
            return Unreadable(
                Reason.UNSUPPORTED_FORMAT, f"{other} (read: {', '.join(ACCEPTED_FORMATS)})"
            )
        if not head:
            return Unreadable(Reason.NOT_AN_IMAGE, "the object is empty")
        return Unreadable(Reason.NOT_AN_IMAGE, f"starts with {head[:SIGNATURE_BYTES]!r}")
    try:
        with PillowImage.open(BytesIO(head), formats=[name]) as image:
            pillow_format, (width, height) = image.format, image.size
    except PillowImage.DecompressionBombError as exc:
        return Unreadable(Reason.TOO_MANY_PIXELS, str(exc))
    except Exception as exc:  # untrusted bytes: any parser error means "not readable (yet)"
        if complete:
            return Unreadable(Reason.UNREADABLE_HEADER, f"{name}: {exc}")
        # Pillow reads a WebP only whole; its RIFF header says how long that is.
        return NeedMoreBytes(_riff_length(head) if name == "WEBP" else None)
    mime_type = MIME_TYPES.get(pillow_format or "")
    if mime_type is None or width < 1 or height < 1:
        return Unreadable(
            Reason.UNREADABLE_HEADER, f"{pillow_format}: {width}x{height} is not a picture"
        )
    return HeaderFacts(mime_type, width, height)


def next_read_size(read: int, *, at_least: int | None, total: int | None, limit: int) -> int | None:
    """How many first bytes to ask for next (at least four times more, within the object's
    size), or None when that would pass `limit` or cannot grow."""
    wanted = max(read * 4, at_least or 0)
    if total is not None:
        wanted = min(wanted, total)
    if wanted <= read or wanted > limit:
        return None
    return wanted


_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$", re.IGNORECASE)


def content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """(first, last, total) of a `Content-Range: bytes first-last/total` header (total None
    for `*`), or None when absent or malformed."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None
    first, last = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if last < first or (total is not None and last >= total):
        return None
    return first, last, total


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait before retry `attempt` (0 = first retry): full jitter over an
    exponential ceiling, `jitter` in [0, 1) drawn by the caller."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 30))
    return ceiling * min(max(jitter, 0.0), 1.0)


_BMP_HEADER_SIZES: Final = (12, 40, 52, 56, 64, 108, 124)


def _other_format(head: bytes) -> str | None:
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    for signature, name in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BRANDS:
        return _ISO_BRANDS[head[8:12]]
    if _SVG.match(head[:1024]):
        return "SVG"
    return None


def _riff_length(head: bytes) -> int | None:
    """A RIFF file's total length: its 32-bit little-endian chunk size plus the 8-byte header."""
    if len(head) < 8:
        return None
    return int.from_bytes(head[4:8], "little") + 8

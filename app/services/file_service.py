"""FileService: check an uploaded picture from its own bytes, then store it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from io import BytesIO
from pathlib import PurePosixPath
from typing import Literal
from uuid import uuid4

import anyio.to_thread
from PIL import Image, UnidentifiedImageError

from app.core.errors import DomainError
from app.services.decode_budget import DecodeBudget, decode_cost, return_freed_memory
from app.storage.base import Storage

RejectionReason = Literal[
    "empty",
    "too_large",
    "not_an_image",
    "unsupported_type",
    "type_mismatch",
    "decompression_bomb",
    "corrupt",
]

ALLOWED = "a JPEG (.jpg, .jpeg), PNG (.png) or WebP (.webp) image"

# Pillow format -> (MIME type, extension of the stored key). MPO is what Pillow calls the
# multi-picture JPEG many phone cameras write; browsers show it as an ordinary JPEG.
_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", ".jpg"),
    "MPO": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "WEBP": ("image/webp", ".webp"),
}
_DECLARED_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
}
# Clients send these when they do not know the type: no claim, so nothing to contradict.
_UNCLAIMED_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_EXTENSIONS = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".jfif": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}


class UploadRejected(DomainError):
    """An upload refused before anything was stored; `reason` is a machine-readable code
    (413 when the file is too large, else 422)."""

    validation = True
    field = "file"

    def __init__(self, reason: RejectionReason, message: str) -> None:
        super().__init__(message)
        self.reason: RejectionReason = reason
        self.message = message
        self.status = 413 if reason == "too_large" else 422


@dataclass(frozen=True)
class UploadedFile:
    """A stored picture and what its bytes say it is."""

    url: str
    key: str
    mime_type: str
    file_size: int
    width: int
    height: int


@dataclass(frozen=True)
class SniffedImage:
    """What an image's header says, read without decoding a pixel."""

    pillow_format: str
    width: int
    height: int
    progressive: bool = False

    @property
    def decode_cost(self) -> int:
        """Bytes the decode that checks it may hold (app/services/decode_budget.py)."""
        return decode_cost(
            self.pillow_format, self.width, self.height, progressive=self.progressive
        )


class FileService:
    """Uploads of JPEG, PNG and WebP pictures, checked from their bytes before being stored."""

    def __init__(
        self, storage: Storage, *, max_bytes: int, max_pixels: int, decode_budget_bytes: int
    ) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        # Checks in flight hold at most this many bytes of decoded pixels in this process;
        # further uploads wait for their share without holding a thread.
        self.decode_budget = DecodeBudget(decode_budget_bytes)

    def upload(
        self,
        data: bytes,
        *,
        key_prefix: str,
        declared_content_type: str | None = None,
        filename: str | None = None,
    ) -> UploadedFile:
        """Check the bytes, then store them under `key_prefix/<random>.<ext>`."""
        header = self.check(data, declared_content_type=declared_content_type, filename=filename)
        return self._store(data, header, key_prefix)

    async def upload_bounded(
        self,
        data: bytes,
        *,
        key_prefix: str,
        declared_content_type: str | None = None,
        filename: str | None = None,
    ) -> UploadedFile:
        """`upload` from async code: the cheap checks first, then the decode once its
        estimated memory fits the process's budget, then the store; each in a worker thread."""
        sniff = partial(
            self.sniff, data, declared_content_type=declared_content_type, filename=filename
        )
        header = await anyio.to_thread.run_sync(sniff)
        async with self.decode_budget.borrow(header.decode_cost):
            await anyio.to_thread.run_sync(_check_intact_then_trim, data)
        return await anyio.to_thread.run_sync(self._store, data, header, key_prefix)

    def _store(self, data: bytes, header: SniffedImage, key_prefix: str) -> UploadedFile:
        mime_type, extension = _FORMATS[header.pillow_format]
        stored = self.storage.put(
            f"{key_prefix}/{uuid4().hex}{extension}", data, content_type=mime_type
        )
        return UploadedFile(
            url=stored.url,
            key=stored.key,
            mime_type=mime_type,
            file_size=len(data),
            width=header.width,
            height=header.height,
        )

    def discard(self, uploaded: UploadedFile) -> None:
        """Remove a stored upload whose image record could not be written."""
        self.storage.delete(uploaded.key)

    def check(
        self, data: bytes, *, declared_content_type: str | None = None, filename: str | None = None
    ) -> SniffedImage:
        """Raise UploadRejected unless the bytes are an acceptable, intact, honest picture."""
        header = self.sniff(data, declared_content_type=declared_content_type, filename=filename)
        _check_intact(data)
        return header

    def sniff(
        self, data: bytes, *, declared_content_type: str | None = None, filename: str | None = None
    ) -> SniffedImage:
        """Every check but the decode: size, header, pixels, type, and what the decode would
        cost; raise UploadRejected on the first that fails."""
        if not data:
            raise UploadRejected("empty", f"the file is empty: upload {ALLOWED}")
        if len(data) > self.max_bytes:
            raise UploadRejected(
                "too_large",
                f"the file is larger than the {self.max_bytes} bytes allowed: "
                f"upload {ALLOWED} of at most {self.max_bytes} bytes",
            )
        header = _read_header(data)
        if header.width * header.height > self.max_pixels:
            raise UploadRejected(
                "decompression_bomb",
                f"the image is {header.width}x{header.height} pixels, more than the "
                f"{self.max_pixels} allowed: upload {ALLOWED} of at most {self.max_pixels} pixels",
            )
        if header.pillow_format not in _FORMATS:
            raise UploadRejected(
                "unsupported_type",
                f"{header.pillow_format} images are not accepted: upload {ALLOWED}",
            )
        mime_type = _FORMATS[header.pillow_format][0]
        for claim in _claims(declared_content_type, filename):
            if claim.mime_type != mime_type:
                raise UploadRejected(
                    "type_mismatch",
                    f"the file lies about its type: its bytes are {mime_type} but its "
                    f"{claim.source} says {claim.mime_type}; upload {ALLOWED} whose name "
                    "and content type match its contents",
                )
        if header.decode_cost > self.decode_budget.total_bytes:
            raise UploadRejected(
                "decompression_bomb",
                f"checking this {header.width}x{header.height} {header.pillow_format} image "
                f"would hold {header.decode_cost // 2**20} MB in memory, more than the "
                f"{self.decode_budget.total_bytes // 2**20} MB allowed: upload a smaller "
                f"picture (or a JPEG, {ALLOWED})",
            )
        return header


@dataclass(frozen=True)
class _Claim:
    """A type the client asserted, and where it asserted it."""

    source: str
    mime_type: str


def _claims(declared_content_type: str | None, filename: str | None) -> list[_Claim]:
    """The MIME types the declared content type and the filename extension assert."""
    claims = []
    declared = (declared_content_type or "").split(";")[0].strip().lower()
    if declared not in _UNCLAIMED_TYPES:
        claims.append(_Claim("content type", _DECLARED_ALIASES.get(declared, declared)))
    extension = PurePosixPath((filename or "").replace("\\", "/")).suffix.lower()
    if extension:
        claims.append(_Claim(f"extension {extension!r}", _EXTENSIONS.get(extension, extension)))
    return claims


def _read_header(data: bytes) -> SniffedImage:
    """Identify the format and size; Pillow's open is lazy, so no pixel is decoded here."""
    try:
        with Image.open(BytesIO(data)) as image:
            progressive = bool(image.info.get("progressive") or image.info.get("progression"))
            return SniffedImage(str(image.format), image.width, image.height, progressive)
    except UnidentifiedImageError:
        raise UploadRejected(
            "not_an_image", f"the file is not an image: upload {ALLOWED}"
        ) from None
    # Pillow's own guard against its global limit; the warning arrives as an exception only
    # where warnings are errors. The limit is not changed here: it is shared by the process.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadRejected(
            "decompression_bomb", f"the image declares too many pixels ({exc}): upload {ALLOWED}"
        ) from None
    except Exception as exc:  # Pillow's parsers raise assorted types on a mangled header
        raise _corrupt(exc) from None


def _check_intact(data: bytes) -> None:
    """Refuse a truncated or corrupt file: verify its structure, then decode it once."""
    try:
        with Image.open(BytesIO(data)) as image:
            image.verify()
        # verify() checks chunk checksums (PNG) but decodes nothing, and for JPEG it checks
        # nothing: only decoding notices a cut-off body. A fresh open, as verify() spends it.
        with Image.open(BytesIO(data)) as image:
            # JPEG can decode at 1/8 scale, still reading every byte, for 1/64 of the memory.
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except Exception as exc:  # truncation is OSError, bad data anything from SyntaxError up
        raise _corrupt(exc) from None


def _check_intact_then_trim(data: bytes) -> None:
    """`_check_intact`, then the freed decode buffers given back, in the same thread and
    before the budget lets the next decode in, so the budget bounds resident memory."""
    try:
        _check_intact(data)
    finally:
        return_freed_memory()


def _corrupt(exc: Exception) -> UploadRejected:
    """The rejection of an image Pillow cannot read to the end."""
    return UploadRejected(
        "corrupt", f"the image is truncated or corrupt ({exc}): upload an intact {ALLOWED}"
    )

"""FileService: validate an uploaded picture from its bytes, then store it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import PurePosixPath
from uuid import uuid4

from PIL import Image as PillowImage
from PIL import UnidentifiedImageError

from app.storage.base import Storage

ACCEPTED = {
    "JPEG": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "WEBP": ("image/webp", ".webp"),
}
EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
DECLARED = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
}


class UploadRejected(Exception):
    """An upload refused before anything was stored; `reason` is a machine-readable code."""

    field = "file"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
class Sniffed:
    """Type and size read from an image's header."""

    pillow_format: str
    width: int
    height: int


class FileService:
    """Uploads: type sniffed from the bytes (JPEG, PNG, WebP), size and pixel limits."""

    def __init__(self, storage: Storage, *, max_bytes: int, max_pixels: int) -> None:
        self.storage = storage
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    def upload(
        self,
        data: bytes,
        *,
        key_prefix: str,
        declared_content_type: str | None = None,
        filename: str | None = None,
    ) -> UploadedFile:
        """Validate, then store under `key_prefix/<random>.<ext>`; nothing stored on refusal."""
        sniffed = self.inspect(data, declared_content_type=declared_content_type, filename=filename)
        mime_type, extension = ACCEPTED[sniffed.pillow_format]
        key = f"{key_prefix}/{uuid4().hex}{extension}"
        stored = self.storage.put(key, data, content_type=mime_type)
        return UploadedFile(
            url=stored.url,
            key=stored.key,
            mime_type=mime_type,
            file_size=len(data),
            width=sniffed.width,
            height=sniffed.height,
        )

    def discard(self, uploaded: UploadedFile) -> None:
        """Remove a stored upload whose image record could not be written."""
        self.storage.delete(uploaded.key)

    def inspect(
        self, data: bytes, *, declared_content_type: str | None = None, filename: str | None = None
    ) -> Sniffed:
        """Read type and dimensions from the bytes and check every limit."""
        if not data:
            raise UploadRejected("empty", "the file is empty")
        if len(data) > self.max_bytes:
            raise UploadRejected(
                "too_large", f"the file is larger than the {self.max_bytes} bytes allowed"
            )
        sniffed = self._sniff(data)
        if sniffed.pillow_format not in ACCEPTED:
            raise UploadRejected(
                "unsupported_type",
                f"{sniffed.pillow_format} images are not accepted: use JPEG, PNG or WebP",
            )
        claimed = _claimed_formats(declared_content_type, filename)
        if claimed - {sniffed.pillow_format}:
            raise UploadRejected(
                "type_mismatch",
                f"the file is {sniffed.pillow_format} but claims to be "
                + " and ".join(sorted(claimed)),
            )
        if sniffed.width * sniffed.height > self.max_pixels:
            raise UploadRejected(
                "decompression_bomb",
                f"{sniffed.width}x{sniffed.height} pixels exceeds the {self.max_pixels} allowed",
            )
        self._verify(data)
        return sniffed

    @staticmethod
    def _sniff(data: bytes) -> Sniffed:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", PillowImage.DecompressionBombWarning)
                # Header only: Pillow's open is lazy, no pixel is decoded here.
                with PillowImage.open(BytesIO(data)) as image:
                    return Sniffed(str(image.format), image.width, image.height)
        except (
            UnidentifiedImageError,
            PillowImage.DecompressionBombError,
            PillowImage.DecompressionBombWarning,
        ) as exc:
            if isinstance(exc, UnidentifiedImageError):
                raise UploadRejected("not_an_image", "the file is not an image") from None
            raise UploadRejected("decompression_bomb", str(exc)) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise UploadRejected("corrupt", f"the image cannot be read: {exc}") from None

    @staticmethod
    def _verify(data: bytes) -> None:
        try:
            with PillowImage.open(BytesIO(data)) as image:
                image.verify()
            # verify() does not decode pixel data; a full load catches truncated bodies.
            with PillowImage.open(BytesIO(data)) as image:
                image.load()
        except Exception as exc:  # Pillow raises many types for corrupt data
            raise UploadRejected("corrupt", f"the image is corrupt or truncated: {exc}") from None


def _claimed_formats(declared: str | None, filename: str | None) -> set[str]:
    claimed: set[str] = set()
    if declared and declared.lower() not in ("application/octet-stream", ""):
        claimed.add(DECLARED.get(declared.lower().split(";")[0].strip(), declared))
    if filename:
        suffix = PurePosixPath(filename).suffix.lower()
        if suffix:
            claimed.add(EXTENSIONS.get(suffix, suffix))
    return claimed

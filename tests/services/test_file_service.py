"""FileService: pictures judged by their own bytes, stored only when acceptable."""

from __future__ import annotations

import errno
import io
import os
import re
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.services.file_service import FileService, UploadedFile, UploadRejected
from app.storage.base import StorageUnavailable, StoredObject, check_key
from app.storage.local import LocalStorage

BASE = "http://testserver/media"
MAX_BYTES = 1_000_000
MAX_PIXELS = 4_000_000
BUDGET = 256 * 1024 * 1024


def picture(pillow_format: str, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    """A small picture with some structure, encoded by Pillow."""
    image = Image.new(mode, size)
    image.putdata(
        [(x * 7 % 256, y * 5 % 256, (x + y) % 256) for y in range(size[1]) for x in range(size[0])]
    )
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format)
    return buffer.getvalue()


def noisy_jpeg(size: int = 256) -> bytes:
    """A JPEG whose body is large next to its header, so cutting it keeps the header whole."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), os.urandom(size * size * 3)).save(buffer, "JPEG")
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size: rows of zeros compress to almost nothing."""
    row = bytes(1 + (width + 7) // 8)  # filter byte, then one bit per pixel
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        checksum = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
def service(root: Path) -> FileService:
    return FileService(
        LocalStorage(root, BASE),
        max_bytes=MAX_BYTES,
        max_pixels=MAX_PIXELS,
        decode_budget_bytes=BUDGET,
    )


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def rejected(
    service: FileService,
    root: Path,
    data: bytes,
    *,
    declared_content_type: str | None = None,
    filename: str | None = None,
) -> UploadRejected:
    """Upload expecting a refusal; check that nothing at all was written."""
    with pytest.raises(UploadRejected) as refusal:
        service.upload(
            data,
            key_prefix="t1/p1",
            declared_content_type=declared_content_type,
            filename=filename,
        )
    assert stored_files(root) == [], "nothing is stored when an upload is refused"
    assert refusal.value.field == "file"
    assert "JPEG" in str(refusal.value), "the message says what is allowed"
    return refusal.value


@pytest.mark.parametrize(
    ("pillow_format", "mime_type", "extension", "filename"),
    [
        ("JPEG", "image/jpeg", ".jpg", "holiday.jpeg"),
        ("PNG", "image/png", ".png", "diagram.PNG"),
        ("WEBP", "image/webp", ".webp", "photo.webp"),
    ],
)
def test_each_accepted_type_is_stored_with_what_its_bytes_say(
    service: FileService,
    root: Path,
    pillow_format: str,
    mime_type: str,
    extension: str,
    filename: str,
) -> None:
    data = picture(pillow_format)
    uploaded = service.upload(
        data, key_prefix="t1/p7", declared_content_type=mime_type, filename=filename
    )

    assert re.fullmatch(rf"t1/p7/[0-9a-f]{{32}}{re.escape(extension)}", uploaded.key)
    assert uploaded == UploadedFile(
        url=f"{BASE}/{uploaded.key}",
        key=uploaded.key,
        mime_type=mime_type,
        file_size=len(data),
        width=64,
        height=48,
    )
    assert (root / uploaded.key).read_bytes() == data


@pytest.mark.parametrize(
    ("declared", "filename"),
    [
        (None, None),
        ("application/octet-stream", "blob"),
        ("image/jpg", "photo.JPG"),
        ("image/jpeg; charset=binary", "C:\\fakepath\\photo.jfif"),
        ("IMAGE/JPEG", None),
    ],
)
def test_missing_or_generic_or_aliased_claims_are_not_lies(
    service: FileService, declared: str | None, filename: str | None
) -> None:
    uploaded = service.upload(
        picture("JPEG"), key_prefix="p", declared_content_type=declared, filename=filename
    )
    assert uploaded.mime_type == "image/jpeg"


def test_a_phone_camera_multi_picture_jpeg_is_a_jpeg(service: FileService) -> None:
    first, second = Image.new("RGB", (30, 20), "red"), Image.new("RGB", (30, 20), "blue")
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    uploaded = service.upload(buffer.getvalue(), key_prefix="p", filename="IMG_0001.jpg")
    assert (uploaded.mime_type, uploaded.key[-4:], uploaded.width) == ("image/jpeg", ".jpg", 30)


def test_an_empty_file_is_refused(service: FileService, root: Path) -> None:
    assert rejected(service, root, b"").reason == "empty"


def test_a_file_over_the_byte_limit_is_refused(root: Path) -> None:
    data = picture("PNG")
    service = FileService(
        LocalStorage(root, BASE),
        max_bytes=len(data) - 1,
        max_pixels=MAX_PIXELS,
        decode_budget_bytes=BUDGET,
    )
    refusal = rejected(service, root, data)
    assert refusal.reason == "too_large"
    assert str(len(data) - 1) in refusal.message
    assert service.upload(picture("PNG", (8, 8)), key_prefix="p").file_size < len(data)


@pytest.mark.parametrize(
    "data",
    [b"hello, not an image", b"%PDF-1.7\n", b"<svg xmlns='http://www.w3.org/2000/svg'/>"],
)
def test_a_file_that_is_not_an_image_is_refused(
    service: FileService, root: Path, data: bytes
) -> None:
    refusal = rejected(service, root, data, declared_content_type="image/png", filename="a.png")
    assert refusal.reason == "not_an_image"


@pytest.mark.parametrize(("pillow_format", "filename"), [("GIF", "a.gif"), ("BMP", "a.bmp")])
def test_images_of_other_types_are_refused(
    service: FileService, root: Path, pillow_format: str, filename: str
) -> None:
    refusal = rejected(service, root, picture(pillow_format), filename=filename)
    assert refusal.reason == "unsupported_type"


@pytest.mark.parametrize(
    ("pillow_format", "declared", "filename"),
    [
        ("PNG", "image/jpeg", "photo.jpg"),  # a PNG renamed .jpg and declared as JPEG
        ("PNG", None, "photo.jpg"),
        ("PNG", "image/jpeg", None),
        ("PNG", "image/png", "photo.jpg"),
        ("JPEG", "image/jpeg", "photo.webp"),
        ("WEBP", "text/plain", None),
        ("JPEG", None, "photo.txt"),
    ],
)
def test_a_file_that_lies_about_its_type_is_refused(
    service: FileService,
    root: Path,
    pillow_format: str,
    declared: str | None,
    filename: str | None,
) -> None:
    refusal = rejected(
        service, root, picture(pillow_format), declared_content_type=declared, filename=filename
    )
    assert refusal.reason == "type_mismatch"
    assert "lies about its type" in refusal.message


def test_more_pixels_than_allowed_is_a_decompression_bomb(root: Path) -> None:
    bomb = io.BytesIO()
    Image.new("1", (4000, 4000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 10_000
    service = FileService(
        LocalStorage(root, BASE),
        max_bytes=MAX_BYTES,
        max_pixels=1_000_000,
        decode_budget_bytes=BUDGET,
    )

    refusal = rejected(service, root, bomb.getvalue(), filename="bomb.png")
    assert refusal.reason == "decompression_bomb"
    assert "4000x4000" in refusal.message


def test_a_header_past_pillows_own_limit_is_a_decompression_bomb(root: Path) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    bomb = png_declaring(20_000, 20_000)
    assert len(bomb) < 200_000
    # Even a service configured far above Pillow's guard never decodes 400 million pixels.
    service = FileService(
        LocalStorage(root, BASE), max_bytes=MAX_BYTES, max_pixels=10**9, decode_budget_bytes=BUDGET
    )

    assert rejected(service, root, bomb, filename="bomb.png").reason == "decompression_bomb"
    assert limit == Image.MAX_IMAGE_PIXELS, "Pillow's process-wide limit is left alone"


def test_the_pixel_limit_is_per_service(root: Path) -> None:
    data = picture("PNG", (100, 100))
    strict = FileService(
        LocalStorage(root, BASE), max_bytes=MAX_BYTES, max_pixels=9_999, decode_budget_bytes=BUDGET
    )
    lenient = FileService(
        LocalStorage(root, BASE), max_bytes=MAX_BYTES, max_pixels=10_000, decode_budget_bytes=BUDGET
    )

    assert rejected(strict, root, data).reason == "decompression_bomb"
    assert lenient.upload(data, key_prefix="p").width == 100


def test_a_truncated_jpeg_is_refused(service: FileService, root: Path) -> None:
    data = noisy_jpeg()
    with Image.open(io.BytesIO(data[: len(data) // 2])) as image:
        assert image.format == "JPEG", "the header survives the cut"
    refusal = rejected(service, root, data[: len(data) // 2], filename="cut.jpg")
    assert refusal.reason == "corrupt"


def test_a_truncated_png_is_refused(service: FileService, root: Path) -> None:
    data = picture("PNG")
    assert rejected(service, root, data[: len(data) - 30]).reason == "corrupt"


def test_a_png_with_a_damaged_body_is_refused(service: FileService, root: Path) -> None:
    data = bytearray(picture("PNG"))
    data[data.index(b"IDAT") + 20] ^= 0xFF  # the chunk's checksum no longer matches
    assert rejected(service, root, bytes(data)).reason == "corrupt"


def test_a_storage_failure_propagates_and_leaves_nothing(
    service: FileService, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StorageUnavailable, match="No space left"):
        service.upload(picture("JPEG"), key_prefix="t1/p1", filename="a.jpg")
    monkeypatch.undo()
    assert stored_files(root) == []


def test_discard_removes_the_stored_object(service: FileService, root: Path) -> None:
    uploaded = service.upload(picture("WEBP"), key_prefix="t1/p1")
    service.discard(uploaded)
    assert not service.storage.exists(uploaded.key)
    assert stored_files(root) == []


class MemoryStorage:
    """An in-memory Storage that records what was put."""

    base_url = "mem://objects"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        self.objects[check_key(key)] = data
        return StoredObject(key, self.url_for(key), len(data), content_type)

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def exists(self, key: str) -> bool:
        return key in self.objects

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def url_for(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def key_for_url(self, url: str) -> str | None:
        return url.removeprefix(f"{self.base_url}/") if url.startswith(self.base_url) else None


SAMPLE_PNG = picture("PNG", (16, 16))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.tuples(st.integers(0, len(SAMPLE_PNG) - 1), st.integers(1, 255)), max_size=4
        ).map(lambda flips: _flipped(SAMPLE_PNG, flips)),
        st.integers(1, len(SAMPLE_PNG)).map(lambda cut: SAMPLE_PNG[:cut]),
    )
)
def test_any_bytes_are_either_accepted_intact_or_refused_with_nothing_stored(data: bytes) -> None:
    storage = MemoryStorage()
    service = FileService(
        storage, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, decode_budget_bytes=BUDGET
    )
    try:
        uploaded = service.upload(data, key_prefix="fuzz")
    except UploadRejected as refusal:
        assert storage.objects == {}
        assert refusal.reason != "too_large"
    else:
        assert storage.objects == {uploaded.key: data}
        with Image.open(io.BytesIO(data)) as image:
            image.load()


def _flipped(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    mutable = bytearray(data)
    for index, mask in flips:
        mutable[index] ^= mask
    return bytes(mutable)

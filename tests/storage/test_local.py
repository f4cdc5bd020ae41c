"""LocalStorage on a real folder: atomic writes, hard-link deduplication, clear failures."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from app.storage.base import InvalidKey, ObjectNotFound, StorageUnavailable
from app.storage.local import BLOBS_FOLDER, LocalStorage

BASE = "http://testserver/media"


def disk_full(*_: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
def storage(root: Path) -> LocalStorage:
    return LocalStorage(root, BASE + "/")


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_put_get_exists_delete(storage: LocalStorage, root: Path) -> None:
    stored = storage.put("t1/p1/a.jpg", b"jpeg bytes", content_type="image/jpeg")

    assert (stored.key, stored.url, stored.size, stored.content_type) == (
        "t1/p1/a.jpg",
        f"{BASE}/t1/p1/a.jpg",
        10,
        "image/jpeg",
    )
    assert (root / "t1/p1/a.jpg").read_bytes() == b"jpeg bytes"
    assert storage.get("t1/p1/a.jpg") == b"jpeg bytes"
    assert storage.exists("t1/p1/a.jpg")
    assert not storage.exists("t1/p1/b.jpg")
    assert not storage.exists("t1")  # a folder is not an object

    storage.delete("t1/p1/a.jpg")
    storage.delete("t1/p1/a.jpg")  # deleting a missing object is fine
    storage.delete("never/was/there.jpg")
    assert not storage.exists("t1/p1/a.jpg")
    with pytest.raises(ObjectNotFound):
        storage.get("t1/p1/a.jpg")
    with pytest.raises(ObjectNotFound):
        storage.get("t1")


def test_put_replaces_an_existing_object(storage: LocalStorage) -> None:
    storage.put("a.png", b"first", content_type="image/png")
    storage.put("a.png", b"second", content_type="image/png")
    assert storage.get("a.png") == b"second"


def test_identical_content_shares_one_inode_with_its_blob(
    storage: LocalStorage, root: Path
) -> None:
    storage.put("t1/p1/a.jpg", b"same bytes", content_type="image/jpeg")
    storage.put("t2/p9/b.jpg", b"same bytes", content_type="image/jpeg")
    storage.put("t2/p9/c.jpg", b"other bytes", content_type="image/jpeg")

    blob = root / BLOBS_FOLDER / hashlib.sha256(b"same bytes").hexdigest()
    a, b, c = ((root / k).stat() for k in ("t1/p1/a.jpg", "t2/p9/b.jpg", "t2/p9/c.jpg"))
    assert a.st_ino == b.st_ino == blob.stat().st_ino
    assert a.st_nlink == 3
    assert c.st_ino != a.st_ino
    assert oct(a.st_mode & 0o777) == oct(0o644)


def test_deleting_the_last_key_of_a_blob_removes_the_blob(
    storage: LocalStorage, root: Path
) -> None:
    storage.put("a.jpg", b"shared", content_type="image/jpeg")
    storage.put("b.jpg", b"shared", content_type="image/jpeg")

    storage.delete("a.jpg")
    assert storage.get("b.jpg") == b"shared"
    assert len(files_under(root / BLOBS_FOLDER)) == 1

    storage.delete("b.jpg")
    assert files_under(root) == []


def test_a_failed_link_falls_back_to_a_plain_copy(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(*_: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    storage.put("a.jpg", b"bytes", content_type="image/jpeg")

    assert storage.get("a.jpg") == b"bytes"
    assert (root / "a.jpg").stat().st_nlink == 1
    assert not [p for p in root.rglob("*") if p.name.endswith((".tmp", ".link"))]


@pytest.mark.parametrize("broken", ["write", "replace"])
def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_object(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    storage.put("t/p/a.jpg", b"old", content_type="image/jpeg")
    before = files_under(root)

    monkeypatch.setattr(os, broken, disk_full)
    with pytest.raises(StorageUnavailable, match=r"No space left on device \(ENOSPC\)"):
        storage.put("t/p/a.jpg", b"new", content_type="image/jpeg")
    with pytest.raises(StorageUnavailable, match=r"'t/p/b\.jpg'"):
        storage.put("t/p/b.jpg", b"new", content_type="image/jpeg")
    monkeypatch.undo()

    assert files_under(root) == before, "no temporary file and no half-written object"
    assert storage.get("t/p/a.jpg") == b"old"
    assert not storage.exists("t/p/b.jpg")


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes through file modes; the ENOSPC test covers this"
)
def test_a_read_only_folder_is_a_clear_error(storage: LocalStorage, root: Path) -> None:
    storage.put("t/a.jpg", b"old", content_type="image/jpeg")
    for folder in (root / "t", root, root / BLOBS_FOLDER):
        folder.chmod(0o500)
    try:
        with pytest.raises(StorageUnavailable, match="Permission denied"):
            storage.put("t/b.jpg", b"new", content_type="image/jpeg")
    finally:
        for folder in (root / "t", root, root / BLOBS_FOLDER):
            folder.chmod(0o700)
    assert storage.get("t/a.jpg") == b"old"
    assert not storage.exists("t/b.jpg")


@pytest.mark.parametrize("key", ["../x", "/abs", ".blobs/x", "a/../../x", f"{BLOBS_FOLDER}/.."])
def test_keys_outside_the_served_objects_are_refused_everywhere(
    storage: LocalStorage, root: Path, key: str
) -> None:
    for operation in (
        lambda: storage.put(key, b"x", content_type="image/jpeg"),
        lambda: storage.get(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: storage.url_for(key),
    ):
        with pytest.raises(InvalidKey):
            operation()
    assert not root.exists() or files_under(root.parent) == []


def test_blobs_are_never_reachable_through_a_url(storage: LocalStorage) -> None:
    storage.put("a.jpg", b"bytes", content_type="image/jpeg")
    digest = hashlib.sha256(b"bytes").hexdigest()
    assert storage.key_for_url(f"{BASE}/{BLOBS_FOLDER}/{digest}") is None


def test_url_for_and_key_for_url_round_trip(storage: LocalStorage) -> None:
    assert storage.base_url == BASE
    url = storage.url_for("t1/p2/x.webp")
    assert url == f"{BASE}/t1/p2/x.webp"
    assert storage.key_for_url(url) == "t1/p2/x.webp"
    assert storage.key_for_url("https://elsewhere.example/media/t1/p2/x.webp") is None

"""Drill: what hostile requests cost a served process (issue 19, items 1 and 2), measured as
its peak resident memory (VmHWM, reset between phases) against the budgets stated in
docs/benchmarks.md ("Request budgets"):

- huge bodies sent without a token (200 MB multipart, 150 MB JSON): refused with a 401 before
  they are read; the client could push only what the socket buffers hold;
- the same with a token: a declared length over the limit is a 413 at once; a body streamed
  in chunks with no length is cut off at the route's limit;
- eight uploads at once of the worst pictures the checks accept (4 PNGs of exactly
  MAX_UPLOAD_PIXELS, ~100 KB on the wire and ~100 MB decoded; 4 WebPs of 14.4 Mpx, ~1 KB and
  ~245 MB decoded) all succeed, and the decode budget keeps the peak near its 256 MB, not the
  ~1.4 GB of eight decodes at once.

The server is `python -m app serve` in its own process, so its memory is its own. Not marked
`drill`: it runs in `make test` (about 20 s). Linux only (/proc)."""

from __future__ import annotations

import io
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import Engine

from tests.conftest import TEST_SECRET, bearer
from tests.drills.support import START_BOUND, free_loopback_port
from tests.images_db import insert_legacy_product

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc"
)

MB = 1024 * 1024
# docs/benchmarks.md, "Request budgets": peak resident growth of the serving process.
REFUSED_BODY_BUDGET = 20 * MB  # a 401 or 413 before the body: nothing of it held
STREAMED_BODY_BUDGET = 40 * MB  # a chunked body cut off at its limit (multipart spools at 1 MB)
# 8 worst-case uploads at once: the decode budget (256 MB) and what a request holds.
CONCURRENT_DECODE_BUDGET = 300 * MB
# A client can push no more than the socket buffers (kernel and server) hold before the
# refusal arrives: far below the body it announced.
PUSHED_BEFORE_REFUSAL = 24 * MB
MAX_PIXELS = 25_000_000  # the default MAX_UPLOAD_PIXELS, 5000 x 5000


@dataclass
class Served:
    url: str
    port: int
    pid: int

    def peak_since_reset(self) -> int:
        """Bytes of resident memory at the peak since the last `reset_peak`, over the
        resident memory at that reset."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["VmHWM"].split()[0]) * 1024 - self._at_reset

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        status = Path(f"/proc/{self.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        self._at_reset = int(fields["VmRSS"].split()[0]) * 1024


@pytest.fixture
def served(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[Served]:
    port = free_loopback_port()
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "JWT_SECRET": TEST_SECRET,
        "DATA_DIR": str(tmp_path / "data"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "MEDIA_BASE_URL": f"http://127.0.0.1:{port}/media",
        "LOG_LEVEL": "WARNING",
        "TMPDIR": str(tmp_path),
    }
    env.pop("UNLEASH_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_BOUND * 2
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            raise RuntimeError(f"the server did not start: {err.decode()[-2000:]}")
        time.sleep(0.1)
    try:
        yield Served(url, port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=START_BOUND)
        except subprocess.TimeoutExpired:
            process.kill()


def worst_picture(kind: str) -> bytes:
    """The costliest picture of its format the checks accept by default: a PNG of exactly
    MAX_UPLOAD_PIXELS, a WebP of the most pixels whose decode fits DECODE_BUDGET_BYTES."""
    buffer = io.BytesIO()
    if kind == "PNG":
        Image.new("RGBA", (5000, MAX_PIXELS // 5000)).save(buffer, format="PNG")
    else:
        Image.new("RGBA", (3800, 3800)).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


PIECE = 256 * 1024


def push(port: int, head: bytes, body_bytes: int) -> tuple[int, int]:
    """Send `head`, then up to `body_bytes` of body, stopping as soon as the server answers;
    return its status and how many body bytes went out."""
    return _send(port, head, b"0" * PIECE, body_bytes)


def push_chunked(port: int, head: bytes, opening: bytes, body_bytes: int) -> tuple[int, int]:
    """Like `push`, with the body in HTTP chunks (no length announced): `opening`, then
    spaces (inside a file part, or JSON whitespace)."""
    first_chunk = f"{len(opening):x}\r\n".encode() + opening + b"\r\n"
    frame = f"{PIECE:x}\r\n".encode() + b" " * PIECE + b"\r\n"
    return _send(port, head + first_chunk, frame, body_bytes)


def _send(port: int, head: bytes, frame: bytes, body_bytes: int) -> tuple[int, int]:
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        while sent < body_bytes:
            readable, writable, _ = select.select([sock], [sock], [], 60)
            if readable:
                break
            if not writable:
                raise AssertionError("the server neither read nor answered for 60 s")
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += PIECE
        sock.settimeout(60)
        answer = sock.recv(65536)
    return int(answer.split(b"\r\n", 1)[0].split()[1]), sent


def request_head(
    path: str, content_type: str, length: int | None, token: dict[str, str] | None
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: x")
    lines += [f"{k}: {v}" for k, v in (token or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked_head(path: str, content_type: str, token: dict[str, str]) -> bytes:
    return request_head(path, content_type, None, token).replace(
        b"Transfer-Encoding: x", b"Transfer-Encoding: chunked"
    )


def report(what: str, status: int, pushed: int, served: Served) -> None:
    peak = served.peak_since_reset()
    print(f"{what}: {status} after {pushed / MB:.1f} MB sent, peak growth {peak / MB:.1f} MB")


def test_hostile_bodies_and_worst_case_decodes_stay_within_their_memory_budgets(
    served: Served, engine: Engine, tenant: int
) -> None:
    product = insert_legacy_product(engine, tenant, [])
    upload = f"/api/products/{product}/images/upload"
    multipart = "multipart/form-data; boundary=drill"
    token = bearer(tenant)
    # Warm up: every decoder loaded once, so what follows measures requests, not imports.
    small = io.BytesIO()
    Image.new("RGBA", (64, 64)).save(small, format="PNG")
    warm = httpx.post(
        served.url + upload, files={"file": ("w.png", small.getvalue())}, headers=token
    )
    assert warm.status_code == 201, warm.text

    # 1. Without a token: a 401 before the body is read.
    for path, content_type, size in [
        (upload, multipart, 200 * MB),
        (f"/api/products/{product}/images", "application/json", 150 * MB),
    ]:
        served.reset_peak()
        status, pushed = push(served.port, request_head(path, content_type, size, None), size)
        report(f"{size // MB} MB to {path} without a token", status, pushed, served)
        assert status == 401
        assert pushed < PUSHED_BEFORE_REFUSAL, pushed
        assert served.peak_since_reset() < REFUSED_BODY_BUDGET

    # 2. With a token, a declared length over the limit: a 413 at once.
    served.reset_peak()
    status, pushed = push(served.port, request_head(upload, multipart, 200 * MB, token), 200 * MB)
    report("200 MB upload declared, with a token", status, pushed, served)
    assert status == 413
    assert pushed < PUSHED_BEFORE_REFUSAL, pushed
    assert served.peak_since_reset() < REFUSED_BODY_BUDGET

    # 3. With a token, no length: counted and cut off at the route's limit.
    file_part = (
        b'--drill\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    for path, content_type, opening in [
        (upload, multipart, file_part),
        (f"/api/products/{product}/images", "application/json", b'{"url": "x"'),
    ]:
        served.reset_peak()
        status, pushed = push_chunked(
            served.port, chunked_head(path, content_type, token), opening, 200 * MB
        )
        report(f"chunked body to {path}, with a token", status, pushed, served)
        assert status == 413
        assert pushed < 15 * MB + PUSHED_BEFORE_REFUSAL, pushed
        assert served.peak_since_reset() < STREAMED_BODY_BUDGET

    # 4. Eight worst-case uploads at once: all served, the peak held by the decode slots.
    pictures = [("PNG", worst_picture("PNG")), ("WEBP", worst_picture("WEBP"))] * 4
    served.reset_peak()

    def send(picture: tuple[str, bytes]) -> int:
        kind, data = picture
        name = "worst.png" if kind == "PNG" else "worst.webp"
        response = httpx.post(
            served.url + upload, files={"file": (name, data)}, headers=token, timeout=300
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(send, pictures))
    peak = served.peak_since_reset()
    print(f"8 worst-case uploads: peak resident growth {peak / MB:.0f} MB")
    assert statuses == [201] * 8
    assert peak < CONCURRENT_DECODE_BUDGET, f"peak {peak / MB:.0f} MB"

"""A stand-in for R2 on loopback: a folder served over HTTP/1.1 with byte ranges, slowed down
like a network.

    .venv/bin/python bench/slow_media.py --root /tmp/media --port 8123 \\
      --latency-ms 30 --bandwidth-mbps 200

Every request waits `--latency-ms` before its answer starts (the round trip to the bucket;
a connection's first request waits twice: its TCP handshake), and every body byte goes
through one shared link of `--bandwidth-mbps`, so concurrent reads share it rather than
multiply it. `GET /media/<key>` answers the file `<root>/<key>` (206 for `Range: bytes=a-b`,
200 otherwise, 404 outside the folder). Used by bench/enrich_throughput.py; not in the app.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHUNK = 16 * 1024  # body bytes per send: the link is shared at this grain
RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class SlowMedia:
    """An ASGI app serving `root` under `prefix` with a per-request delay and a shared link."""

    def __init__(
        self, root: Path, *, prefix: str, latency: float, bytes_per_second: float | None
    ) -> None:
        self.root = root.resolve()
        self.prefix = prefix.rstrip("/") + "/"
        self.latency = latency
        self.bytes_per_second = bytes_per_second
        self._link_free_at = 0.0  # when the link has sent everything queued so far
        self._connections: set[tuple[Any, ...]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        connection = tuple(scope.get("client") or ())
        delay = self.latency
        if connection not in self._connections:  # a new connection: its handshake first
            self._connections.add(connection)
            delay += self.latency
        await asyncio.sleep(delay)
        status, headers, body = self._answer(scope)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for start in range(0, len(body), CHUNK):
            chunk = body[start : start + CHUNK]
            await self._transmit(len(chunk))
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _answer(self, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        path: str = scope["path"]
        file = (self.root / path.removeprefix(self.prefix)).resolve()
        if (
            scope["method"] != "GET"
            or not path.startswith(self.prefix)
            or not file.is_relative_to(self.root)
            or not file.is_file()
        ):
            return 404, [(b"content-length", b"9")], b"not found"
        data = file.read_bytes()
        headers = [(b"content-type", b"application/octet-stream"), (b"accept-ranges", b"bytes")]
        asked = dict(scope["headers"]).get(b"range", b"").decode("latin-1")
        wanted = RANGE.fullmatch(asked)
        if wanted is None:
            return 200, [*headers, (b"content-length", str(len(data)).encode())], data
        first = int(wanted[1])
        last = min(int(wanted[2]) if wanted[2] else len(data) - 1, len(data) - 1)
        if first >= len(data) or last < first:
            return 416, [(b"content-range", f"bytes */{len(data)}".encode())], b""
        part = data[first : last + 1]
        return (
            206,
            [
                *headers,
                (b"content-range", f"bytes {first}-{last}/{len(data)}".encode()),
                (b"content-length", str(len(part)).encode()),
            ],
            part,
        )

    async def _transmit(self, size: int) -> None:
        """Wait until `size` more bytes have gone through the shared link."""
        if not self.bytes_per_second:
            return
        now = asyncio.get_running_loop().time()
        self._link_free_at = max(now, self._link_free_at) + size / self.bytes_per_second
        await asyncio.sleep(self._link_free_at - now)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="/media")
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--bandwidth-mbps", type=float, default=None, help="none: no cap")
    args = parser.parse_args()
    app = SlowMedia(
        args.root,
        prefix=args.prefix,
        latency=args.latency_ms / 1000,
        bytes_per_second=args.bandwidth_mbps * 1e6 / 8 if args.bandwidth_mbps else None,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

"""What checking an upload costs in memory, and a per-process budget that bounds it.

A picture is checked by decoding it once (only decoding notices a cut-off body). What that
holds in memory depends on the format, not on the file's size: a 100 KB PNG of 25 Mpx
decodes into 100 MB. Measured peaks per pixel (docs/benchmarks.md, "Request budgets";
`tests/services/test_decode_budget.py` holds the model above the measurement):

- PNG: the decoded image, at most 4 bytes a pixel (RGB is stored as 4 bytes by Pillow);
- WebP: ~16-17 bytes a pixel (libwebp's animation decoder keeps two canvases, then Pillow copies
  the frame into its own image);
- baseline JPEG: decoded at 1/8 scale (`draft`), so ~1/16 byte a pixel;
- progressive JPEG: every DCT coefficient is kept until the last scan, 2 bytes a sample,
  up to 4 samples a pixel (CMYK): 8 bytes a pixel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

BYTES_PER_PIXEL = {"PNG": 4.0, "WEBP": 17.0, "JPEG": 1 / 16, "MPO": 1 / 16}
PROGRESSIVE_JPEG_BYTES_PER_PIXEL = 8.0
FLOOR_BYTES = 8 * 1024 * 1024  # decoder state and code pages, tables, the file's own copy


def decode_cost(pillow_format: str, width: int, height: int, *, progressive: bool) -> int:
    """Bytes that checking a picture of this format and size may hold at its peak."""
    per_pixel = BYTES_PER_PIXEL.get(pillow_format, 16.0)
    if progressive and pillow_format in ("JPEG", "MPO"):
        per_pixel = PROGRESSIVE_JPEG_BYTES_PER_PIXEL
    return FLOOR_BYTES + math.ceil(width * height * per_pixel)


def _malloc_trim() -> object:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_TRIM = _malloc_trim()


def return_freed_memory() -> None:
    """Give the memory a decode freed back to the system (glibc's `malloc_trim`; nothing
    elsewhere). Without it, glibc keeps freed decode buffers in the arenas of the threads
    that used them (its mmap threshold grows after the first large free), and the process's
    resident size creeps past the budget as eight threads each keep their own."""
    if callable(_TRIM):
        _TRIM(0)


class DecodeBudget:
    """A weighted semaphore of bytes: each decode borrows its cost and waits, without
    holding a thread, until that much is free. First come, first served, so a large picture
    is not starved by a stream of small ones."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self.free_bytes = total_bytes
        self._queue: deque[object] = deque()
        self._changed = anyio.Condition()

    @asynccontextmanager
    async def borrow(self, cost: int) -> AsyncIterator[None]:
        """Hold `cost` bytes of the budget for the block; `cost` must fit in the total."""
        if cost > self.total_bytes:
            raise ValueError(f"a cost of {cost} bytes never fits a budget of {self.total_bytes}")
        ticket = object()
        async with self._changed:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self.free_bytes < cost:
                    await self._changed.wait()
            except BaseException:  # cancelled while waiting: leave the queue, wake the next
                self._queue.remove(ticket)
                self._changed.notify_all()
                raise
            self._queue.popleft()
            self.free_bytes -= cost
            self._changed.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with self._changed:
                    self.free_bytes += cost
                    self._changed.notify_all()

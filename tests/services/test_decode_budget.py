"""The decode cost model stays above what a check really holds (measured in a fresh process
for each format), and the per-process budget bounds the checks in flight (issue 19, item 2)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from PIL import Image

from app.services.decode_budget import DecodeBudget, decode_cost
from app.services.file_service import FileService, UploadRejected
from app.storage.local import LocalStorage

MB = 1024 * 1024
SIDE = 2000  # 4 Mpx: large enough that the decode dominates the measurement

MEASURE = """
import sys
from pathlib import Path
from app.services.file_service import _check_intact
data = Path(sys.argv[1]).read_bytes()
def peak():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
Path("/proc/self/clear_refs").write_text("5")
before = peak()
_check_intact(data)
print(peak() - before)
"""

CASES = [
    ("PNG", "RGBA", {}),
    ("PNG", "RGB", {}),
    ("PNG", "I;16", {}),
    ("WEBP", "RGBA", {"lossless": True}),
    ("WEBP", "RGB", {"quality": 80}),
    ("JPEG", "RGB", {}),
    ("JPEG", "RGB", {"progressive": True, "subsampling": 0}),
    ("JPEG", "CMYK", {"progressive": True}),
]


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(("kind", "mode", "options"), CASES)
def test_the_cost_model_bounds_the_measured_peak_of_a_check(
    tmp_path: Path, kind: str, mode: str, options: dict[str, object]
) -> None:
    buffer = io.BytesIO()
    Image.new(mode, (SIDE, SIDE)).save(buffer, format=kind, **options)
    path = tmp_path / f"picture.{kind.lower()}"
    path.write_bytes(buffer.getvalue())
    measured = int(
        subprocess.run(
            [sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, check=True
        ).stdout
    )
    with Image.open(path) as image:
        progressive = bool(image.info.get("progressive"))
    assert progressive == bool(options.get("progressive"))
    assert measured <= decode_cost(kind, SIDE, SIDE, progressive=progressive), (
        f"{kind} {mode}: {measured / MB:.1f} MB measured"
    )


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def webp(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height)).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


def test_a_picture_whose_check_would_pass_the_budget_is_refused_before_decoding(
    tmp_path: Path,
) -> None:
    service = FileService(
        LocalStorage(tmp_path, "http://testserver/media"),
        max_bytes=10 * MB,
        max_pixels=25_000_000,
        decode_budget_bytes=64 * MB,
    )
    # Same pixels: the PNG fits (4 bytes a pixel), the WebP (16) does not.
    assert service.sniff(png(3000, 3000)).decode_cost <= 64 * MB
    with pytest.raises(UploadRejected) as refused:
        service.sniff(webp(3000, 3000))
    assert refused.value.reason == "decompression_bomb"
    assert "64 MB" in refused.value.message
    assert not list(tmp_path.rglob("*.webp"))


def test_the_budget_bounds_what_is_borrowed_at_once_and_serves_in_arrival_order() -> None:
    budget = DecodeBudget(100)
    in_use = 0
    peak = 0
    order: list[str] = []

    async def decode(name: str, cost: int, arrive_after: float) -> None:
        nonlocal in_use, peak
        await anyio.sleep(arrive_after)
        async with budget.borrow(cost):
            order.append(name)
            in_use += cost
            peak = max(peak, in_use)
            await anyio.sleep(0.01)
            in_use -= cost

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(decode, "a", 60, 0)
            group.start_soon(decode, "big", 100, 0.001)  # must wait for a to finish
            for k in range(5):  # small ones that would fit beside a, but arrived after big
                group.start_soon(decode, f"s{k}", 10, 0.002 + k / 1000)

    anyio.run(main)
    assert peak <= 100
    assert order[:2] == ["a", "big"]
    assert sorted(order[2:]) == [f"s{k}" for k in range(5)]
    assert budget.free_bytes == 100


def test_a_wait_cancelled_leaves_the_queue_and_the_budget_whole() -> None:
    budget = DecodeBudget(100)

    async def main() -> None:
        async with budget.borrow(80):
            with anyio.move_on_after(0.05):
                async with budget.borrow(50):
                    raise AssertionError("50 more bytes never fit beside 80")
            # The cancelled waiter is gone: a small borrower is not stuck behind it.
            with anyio.fail_after(5):
                async with budget.borrow(20):
                    pass
        with anyio.fail_after(5):
            async with budget.borrow(100):
                pass

    anyio.run(main)
    assert budget.free_bytes == 100


def test_a_cost_larger_than_the_whole_budget_is_an_error_not_a_wait() -> None:
    async def main() -> None:
        async with DecodeBudget(10).borrow(11):
            pass

    with pytest.raises(ValueError, match="never fits"):
        anyio.run(main)

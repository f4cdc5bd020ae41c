"""Reading the first bytes of stored objects over HTTP, only under the storage bases.

Each object is asked for its first `head_bytes` with a Range request on pooled keep-alive
connections; when the header parse needs more (a JPEG whose size marker follows large
metadata, a WebP: Pillow reads those whole), a wider range is asked, up to `max_head_bytes`.
Redirects are followed by hand (at most `max_redirects`, within the bases); 429, 5xx,
timeouts and connection errors are retried with jittered backoff. Nothing here raises for
I/O: every object ends as `Fetched` or `Failed`.

Over 300 lines because the ranged GET, its widening, the redirects within the bases and the
retries are one request's life.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx

from app.images.metadata import (
    HeaderFacts,
    NeedMoreBytes,
    Reason,
    Unreadable,
    backoff_delay,
    content_range,
    next_read_size,
    parse_header,
)
from app.images.urls import fetch_refusal
from backfill.enrich.options import EnrichOptions

REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Fetched:
    """What one object's first bytes said."""

    url: str
    mime_type: str
    file_size: int
    width: int
    height: int
    requests: int
    bytes_read: int


@dataclass(frozen=True)
class Failed:
    """Why one object's metadata could not be read."""

    url: str
    reason: Reason
    detail: str
    requests: int
    bytes_read: int


class RateLimiter:
    """At most `rate` acquisitions per second across threads, evenly spaced."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for the next free slot."""
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


@dataclass
class _Tally:
    requests: int = 0
    bytes_read: int = 0


@dataclass(frozen=True)
class _Head:
    data: bytes
    total: int | None
    complete: bool


@dataclass(frozen=True)
class _Redirect:
    location: str


@dataclass(frozen=True)
class _Transient:
    detail: str
    retry_after: float | None = None


@dataclass(frozen=True)
class _Final:
    reason: Reason
    detail: str


class _DeadlinePassed(Exception):
    """The whole response took longer than the per-request timeout."""


class Fetcher:
    """Reads the first bytes of stored objects over HTTP, only under the storage bases."""

    def __init__(
        self,
        bases: Sequence[str],
        options: EnrichOptions,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.bases = tuple(base.rstrip("/") for base in bases)
        self.options = options
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(options.timeout),
            limits=httpx.Limits(
                max_connections=options.concurrency,
                max_keepalive_connections=options.concurrency,
            ),
            follow_redirects=False,
            # Proxies from the environment would decide where requests go: not here.
            trust_env=False,
            headers={"Accept-Encoding": "identity", "User-Agent": "product-images-enrich"},
        )
        self.limiter = RateLimiter(options.max_rate)
        self._sleep = sleep
        self._jitter = jitter
        self._origins = {_origin(httpx.URL(base)) for base in self.bases}

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def refusal(self, url: str) -> str | None:
        """Why `url` must not be requested, or None (checked by two parsers that must agree)."""
        refused = fetch_refusal(url, self.bases)
        if refused is not None:
            return refused
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            return f"invalid URL: {exc}"
        if _origin(parsed) not in self._origins:
            return "the HTTP client reads its host differently"
        return None

    def fetch(self, url: str) -> Fetched | Failed:
        """Type, size and pixels of the object at `url`, or why not; never raises for I/O."""
        tally = _Tally()
        refused = self.refusal(url)
        if refused is not None:
            return Failed(url, Reason.REFUSED_URL, refused, 0, 0)
        wanted = self.options.head_bytes
        while True:
            head = self._first_bytes(url, wanted, tally)
            if isinstance(head, _Final):
                return Failed(url, head.reason, head.detail, tally.requests, tally.bytes_read)
            parsed = parse_header(head.data, complete=head.complete)
            if isinstance(parsed, HeaderFacts):
                if head.total is None:
                    return Failed(
                        url,
                        Reason.SIZE_UNKNOWN,
                        "the server sent neither Content-Range nor Content-Length",
                        tally.requests,
                        tally.bytes_read,
                    )
                return Fetched(
                    url,
                    parsed.mime_type,
                    head.total,
                    parsed.width,
                    parsed.height,
                    tally.requests,
                    tally.bytes_read,
                )
            if isinstance(parsed, Unreadable):
                return Failed(url, parsed.reason, parsed.detail, tally.requests, tally.bytes_read)
            more = next_read_size(
                wanted,  # not len(head.data): a server sending less than asked ends too
                at_least=parsed.at_least if isinstance(parsed, NeedMoreBytes) else None,
                total=head.total,
                limit=self.options.max_head_bytes,
            )
            if more is None:
                detail = (
                    f"no readable header in the first {len(head.data)} bytes "
                    f"(limit {self.options.max_head_bytes})"
                )
                return Failed(
                    url, Reason.HEADER_TOO_LARGE, detail, tally.requests, tally.bytes_read
                )
            wanted = more

    def _first_bytes(self, url: str, wanted: int, tally: _Tally) -> _Head | _Final:
        current = url
        for _hop in range(self.options.max_redirects + 1):
            answer = self._with_retries(current, wanted, tally)
            if not isinstance(answer, _Redirect):
                return answer
            target = urljoin(current, answer.location)
            refused = self.refusal(target)
            if refused is not None:
                return _Final(Reason.REFUSED_REDIRECT, f"to {target}: {refused}")
            current = target
        return _Final(
            Reason.TOO_MANY_REDIRECTS,
            f"more than {self.options.max_redirects} redirects (last to {current})",
        )

    def _with_retries(self, url: str, wanted: int, tally: _Tally) -> _Head | _Redirect | _Final:
        options = self.options
        reason, detail = Reason.TOO_MANY_RETRIES, ""
        for attempt in range(options.retries + 1):
            self.limiter.acquire()
            tally.requests += 1
            retry_after: float | None = None
            try:
                answer = self._get(url, wanted, tally)
            except (httpx.TimeoutException, _DeadlinePassed) as exc:
                reason, detail = Reason.TOO_MANY_RETRIES, f"timeout ({type(exc).__name__})"
            except httpx.RequestError as exc:
                reason, detail = Reason.UNREACHABLE, f"{type(exc).__name__}: {exc}"
            else:
                if not isinstance(answer, _Transient):
                    return answer
                reason, detail, retry_after = (
                    Reason.TOO_MANY_RETRIES,
                    answer.detail,
                    answer.retry_after,
                )
            if attempt < options.retries:
                delay = backoff_delay(
                    attempt,
                    base=options.backoff_base,
                    cap=options.backoff_cap,
                    jitter=self._jitter(),
                )
                if retry_after is not None:
                    delay = max(delay, min(retry_after, options.backoff_cap))
                self._sleep(delay)
        return _Final(reason, f"{detail} (after {options.retries + 1} attempts)")

    def _get(self, url: str, wanted: int, tally: _Tally) -> _Head | _Redirect | _Transient | _Final:
        deadline = time.monotonic() + self.options.timeout
        with self.client.stream("GET", url, headers={"Range": f"bytes=0-{wanted - 1}"}) as reply:
            status = reply.status_code
            if status in REDIRECTS:
                location = reply.headers.get("location")
                if not location:
                    return _Final(Reason.HTTP_ERROR, f"HTTP {status} without a Location")
                return _Redirect(location)
            if status in (404, 410):
                return _Final(Reason.NOT_FOUND, f"HTTP {status}")
            if status == 429 or status >= 500:
                return _Transient(f"HTTP {status}", _retry_after(reply.headers.get("retry-after")))
            if status == 206:
                ranged = content_range(reply.headers.get("content-range"))
                if ranged is None or ranged[0] != 0:
                    value = reply.headers.get("content-range")
                    return _Final(Reason.HTTP_ERROR, f"HTTP 206 with Content-Range {value!r}")
                data, _ended = _read(reply, wanted, deadline, tally)
                total = ranged[2]
                return _Head(data, total, total is not None and len(data) >= total)
            if status == 200:  # the server ignored the range: read the start, then hang up
                length = reply.headers.get("content-length", "")
                total = int(length) if length.isdigit() else None
                data, ended = _read(reply, wanted, deadline, tally)
                if ended and total is None:
                    total = len(data)
                return _Head(data, total, ended or (total is not None and len(data) >= total))
            if status == 416 and reply.headers.get("content-range", "").strip() == "bytes */0":
                return _Head(b"", 0, True)  # an empty object has no byte 0
            return _Final(Reason.HTTP_ERROR, f"HTTP {status}")


def _read(reply: httpx.Response, wanted: int, deadline: float, tally: _Tally) -> tuple[bytes, bool]:
    """Up to `wanted` bytes of the body and whether the body ended within them."""
    buffer = bytearray()
    for chunk in reply.iter_bytes():
        tally.bytes_read += len(chunk)
        buffer += chunk
        # Only past `wanted` is the body hung up on: a body of exactly `wanted` bytes (the
        # range asked) is read to its end, so that its connection goes back to the pool. At
        # `>=`, every ranged read cost a new connection: one more round trip (TLS: two).
        if len(buffer) > wanted:
            return bytes(buffer[:wanted]), False
        if time.monotonic() > deadline:
            raise _DeadlinePassed
    return bytes(buffer), True


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0)

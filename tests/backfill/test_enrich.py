"""The metadata enrichment on real PostgreSQL against a real HTTP server on loopback."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from PIL import Image as PillowImage
from sqlalchemy import Engine, text

from app.core.database import tenant_schema, unit_of_work
from app.core.settings import PROJECT_ROOT, Settings
from app.images import ImageError
from app.services import product_service
from app.services.product_image_service import (
    FoundMetadata,
    NewImage,
    ProductImageService,
)
from backfill.enrich import (
    Enricher,
    EnrichOptions,
    Failed,
    Fetched,
    Fetcher,
    TenantEnrichment,
    enrich_tenants,
    metadata_report,
)
from backfill.runner import RunOptions, run_tenant
from tests.images_db import assert_representations_equal, insert_legacy_product

FAST = EnrichOptions(
    concurrency=4, retries=3, backoff_base=0.001, backoff_cap=0.01, timeout=5.0, batch_products=3
)


def encode(pillow_format: str, width: int, height: int, seed: int = 1, **options: Any) -> bytes:
    """A real image with noisy pixels (so a lossless one is large)."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    out = BytesIO()
    PillowImage.frombytes("RGB", (width, height), pixels).save(out, pillow_format, **options)
    return out.getvalue()


@dataclass
class Route:
    """How the server answers one path."""

    body: bytes = b""
    # ok | no-range | capped | slow | flaky | fail | stall | redirect | gate | missing
    kind: str = "ok"
    location: str = ""


@dataclass
class MediaServer:
    """A threaded HTTP/1.1 server with byte ranges, counting every request per path (and
    the Range asked) and every connection opened."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    ranges: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    connections: int = 0
    gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def base(self) -> str:
        return f"{self.origin}/media"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def serve(self, name: str, body: bytes = b"", kind: str = "ok", location: str = "") -> str:
        self.routes[f"/media/{name}"] = Route(body, kind, location)
        return self.url(name)

    def total_requests(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def setup(self) -> None:  # once per connection, however many requests it carries
                super().setup()
                with server.lock:
                    server.connections += 1

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with server.lock:
                    server.requests[path] += 1
                    seen = server.requests[path]
                    server.ranges.append((path, self.headers.get("Range")))
                route = server.routes.get(path, Route(kind="missing"))
                try:
                    self._answer(route, seen)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _answer(self, route: Route, seen: int) -> None:
                if route.kind == "gate":
                    server.gate.wait(30)
                if route.kind == "slow":
                    time.sleep(0.05)
                if route.kind == "stall":
                    time.sleep(1.0)
                if route.kind == "missing":
                    return self._send(404, b"not found", {"Content-Type": "text/plain"})
                if route.kind == "redirect":
                    return self._send(302, b"", {"Location": route.location})
                if route.kind == "fail" or (route.kind == "flaky" and seen <= 2):
                    return self._send(500, b"oops", {"Content-Type": "text/plain"})
                # The stored Content-Type says JPEG whatever the bytes are: it is not trusted.
                headers = {"Content-Type": "image/jpeg"}
                wanted = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range") or "")
                if route.kind == "no-range" or wanted is None:
                    return self._send(200, route.body, headers)
                first, last = int(wanted[1]), int(wanted[2])
                if first >= len(route.body):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(route.body)}"})
                last = min(last, len(route.body) - 1)
                if route.kind == "capped":  # some servers send less than the range asked
                    last = min(last, first + 4095)
                headers["Content-Range"] = f"bytes {first}-{last}/{len(route.body)}"
                self._send(206, route.body[first : last + 1], headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.gate.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def media() -> Iterator[MediaServer]:
    server = MediaServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def outside() -> Iterator[MediaServer]:
    """Another loopback server, outside every base: it must never be asked anything."""
    server = MediaServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def media_settings(settings: Settings, media: MediaServer) -> Settings:
    return settings.model_copy(update={"media_base_url": media.base})


def service_for(settings: Settings) -> ProductImageService:
    return ProductImageService(
        legacy_sources=settings.legacy_sources,
        max_images=settings.max_images_per_product,
        url_bases=(settings.media_base_url, *settings.extra_image_url_bases),
    )


def migrated_products(
    engine: Engine, tenant: int, products: list[list[str]], *, source: str = "stoflow"
) -> list[int]:
    """Legacy products with these image URLs, moved to the table by the backfill."""
    ids = [
        insert_legacy_product(
            engine, tenant, [{"url": url, "order": i} for i, url in enumerate(urls)], source=source
        )
        for urls in products
    ]
    assert run_tenant(engine, tenant, RunOptions()).status == "done"
    return ids


def migrated_product(
    engine: Engine, tenant: int, urls: list[str], *, source: str = "stoflow"
) -> int:
    """One legacy product with these image URLs, moved to the table by the backfill."""
    return migrated_products(engine, tenant, [urls], source=source)[0]


def rows(engine: Engine, tenant: int, product_id: int | None = None) -> list[Any]:
    where = "" if product_id is None else "WHERE product_id = :p"
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                text(
                    f"SELECT * FROM {tenant_schema(tenant)}.product_images {where} "
                    'ORDER BY product_id, "order"'
                ),
                {"p": product_id},
            ).mappings()
        ]


def by_url(engine: Engine, tenant: int) -> dict[str, Any]:
    return {row["url"]: row for row in rows(engine, tenant)}


def failures(engine: Engine, tenant: int) -> dict[str, Any]:
    with engine.connect() as connection:
        return {
            row["url"]: dict(row)
            for row in connection.execute(
                text(f"SELECT * FROM {tenant_schema(tenant)}.image_metadata_failures")
            ).mappings()
        }


def enrich(
    engine: Engine, settings: Settings, tenant: int, options: EnrichOptions = FAST
) -> TenantEnrichment:
    [result] = enrich_tenants(engine, service_for(settings), [tenant], options)
    return result


# --- reading every format ----------------------------------------------------------------


def test_every_field_is_filled_for_each_format_from_the_bytes(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    big_webp = encode("WEBP", 300, 200, lossless=True)
    assert len(big_webp) > 64 * 1024, "read in two steps: Pillow needs a WebP whole"
    objects = {
        media.serve("a.jpg", encode("JPEG", 640, 480)): ("image/jpeg", 640, 480),
        media.serve("b.png", encode("PNG", 31, 17)): ("image/png", 31, 17),
        media.serve("c.webp", encode("WEBP", 120, 90)): ("image/webp", 120, 90),
        media.serve("d.webp", big_webp): ("image/webp", 300, 200),
        media.serve("e.gif", encode("GIF", 64, 48)): ("image/gif", 64, 48),
        media.serve("f.jpg", encode("PNG", 50, 40), kind="no-range"): ("image/png", 50, 40),
        media.serve("g.jpg", encode("JPEG", 1200, 900), kind="no-range"): ("image/jpeg", 1200, 900),
        media.serve("h.png", encode("PNG", 12, 34), kind="slow"): ("image/png", 12, 34),
        media.serve("moved.gif", kind="redirect", location="/media/e.gif"): ("image/gif", 64, 48),
    }
    sizes = {url: len(media.routes[url.removeprefix(media.origin)].body) for url in objects}
    sizes[media.url("moved.gif")] = sizes[media.url("e.gif")]
    urls = list(objects)
    first = migrated_product(engine, tenant, urls[:5], source="pythonApiWOO")  # last = label
    second = migrated_product(engine, tenant, urls[5:])

    result = enrich(engine, media_settings, tenant)

    assert (result.status, result.enriched, result.failed, result.skipped) == ("done", 9, 0, 0)
    found = by_url(engine, tenant)
    for url, (mime_type, width, height) in objects.items():
        row = found[url]
        assert (row["mime_type"], row["width"], row["height"]) == (mime_type, width, height), url
        assert row["file_size"] == sizes[url], url
    assert [row["alt_text"] for row in rows(engine, tenant, first)] == [
        "Levi's 501, photo 1 of 4",
        "Levi's 501, photo 2 of 4",
        "Levi's 501, photo 3 of 4",
        "Levi's 501, photo 4 of 4",
        "price label, not published",
    ]
    assert [row["alt_text"] for row in rows(engine, tenant, second)][-1] == (
        "Levi's 501, photo 4 of 4"
    )
    for product_id in (first, second):
        assert_representations_equal(engine, tenant, product_id)
    assert failures(engine, tenant) == {}
    # A server that ignores ranges is hung up on after the first bytes: far less than the
    # 2000x1500 JPEG was read.
    assert result.bytes_read < sum(sizes.values())


def test_a_written_alt_text_is_kept_and_only_missing_ones_get_the_default(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    urls = [media.serve(f"{i}.png", encode("PNG", 10 + i, 10)) for i in range(3)]
    product_id = migrated_product(engine, tenant, urls)
    service = service_for(media_settings)
    middle = rows(engine, tenant, product_id)[1]["id"]
    with unit_of_work(engine, tenant) as session:
        service.update_image(
            session,
            product_id=product_id,
            image_id=middle,
            alt_text="Back pocket, close up",
            now=datetime.now(UTC),
        )

    enrich(engine, media_settings, tenant)

    assert [(row["alt_text"], row["width"]) for row in rows(engine, tenant, product_id)] == [
        ("Levi's 501, photo 1 of 3", 10),
        ("Back pocket, close up", 11),
        ("Levi's 501, photo 3 of 3", 12),
    ]
    assert_representations_equal(engine, tenant, product_id)


# --- failures ----------------------------------------------------------------------------


def test_missing_objects_and_non_images_are_recorded_with_reasons_and_the_run_goes_on(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    good = media.serve("good.jpg", encode("JPEG", 20, 10))
    missing = media.url("gone.jpg")
    html = media.serve("page.jpg", b"<!doctype html><html><body>Sorry</body></html>")
    broken = media.serve("down.png", kind="fail")
    stalled = media.serve("stall.png", encode("PNG", 5, 5), kind="stall")
    product_id = migrated_product(engine, tenant, [missing, html, good, broken, stalled])
    options = EnrichOptions(
        concurrency=4, retries=1, backoff_base=0.001, backoff_cap=0.01, timeout=0.2
    )

    result = enrich(engine, media_settings, tenant, options)

    assert (result.status, result.enriched, result.failed) == ("done", 1, 4)
    recorded = failures(engine, tenant)
    assert {url: row["reason"] for url, row in recorded.items()} == {
        missing: "not_found",
        html: "not_an_image",
        broken: "too_many_retries",
        stalled: "too_many_retries",
    }
    assert "HTTP 500" in recorded[broken]["detail"]
    assert "timeout" in recorded[stalled]["detail"]
    assert all(
        row["attempts"] == 1 and row["product_id"] == product_id for row in recorded.values()
    )
    assert media.requests["/media/down.png"] == 2, "one try and one retry"
    found = by_url(engine, tenant)
    assert found[good]["mime_type"] == "image/jpeg"
    for url in (missing, html, broken, stalled):
        assert (found[url]["mime_type"], found[url]["alt_text"]) == (None, None)
    assert_representations_equal(engine, tenant, product_id)
    (counts,), listed = metadata_report(engine, [tenant])
    assert (counts.complete, counts.pending, counts.failed) == (1, 0, 4)
    assert counts.reasons == {"not_found": 1, "not_an_image": 1, "too_many_retries": 2}
    assert {row[-1] for row in listed} == {missing, html, broken, stalled}


def test_a_server_sending_less_than_asked_is_read_within_bounds(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    jpeg = media.serve("small-head.jpg", encode("JPEG", 300, 200), kind="capped")
    webp = media.serve("whole.webp", encode("WEBP", 300, 200, lossless=True), kind="capped")
    migrated_product(engine, tenant, [jpeg, webp])

    result = enrich(engine, media_settings, tenant)

    assert (result.enriched, result.failed) == (1, 1)
    assert by_url(engine, tenant)[jpeg]["width"] == 300
    assert failures(engine, tenant)[webp]["reason"] == "header_too_large"
    assert media.requests["/media/whole.webp"] == 2, "the start, then its whole length, once"


def test_transient_errors_are_retried_with_backoff_until_they_succeed(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    flaky = media.serve("flaky.webp", encode("WEBP", 40, 30), kind="flaky")
    product_id = migrated_product(engine, tenant, [flaky])

    result = enrich(engine, media_settings, tenant)

    assert (result.enriched, result.failed) == (1, 0)
    assert media.requests["/media/flaky.webp"] == 3, "500, 500, then the answer"
    assert rows(engine, tenant, product_id)[0]["width"] == 40
    assert failures(engine, tenant) == {}


def test_urls_outside_the_bases_are_refused_without_any_request_reaching_them(
    engine: Engine,
    tenant: int,
    media: MediaServer,
    outside: MediaServer,
    media_settings: Settings,
) -> None:
    secret = outside.serve("secret.png", encode("PNG", 9, 9))
    media.routes["/private/secret.png"] = Route(encode("PNG", 9, 9))
    direct = secret
    private = f"{media.origin}/private/secret.png"
    dotted = f"{media.base}/../private/secret.png"
    encoded = f"{media.base}/%2e%2e/private/secret.png"
    assert media.httpd is not None
    with_credentials = f"http://user:pw@127.0.0.1:{media.httpd.server_address[1]}/media/fine.png"
    away = media.serve("away.png", kind="redirect", location=secret)
    up = media.serve("up.png", kind="redirect", location="../private/secret.png")
    hop = [
        media.serve(f"hop{i}.png", kind="redirect", location=f"hop{i + 1}.png") for i in range(3)
    ]
    media.serve("hop3.png", encode("PNG", 3, 3))
    good = media.serve("fine.png", encode("PNG", 4, 4))
    urls = [direct, private, dotted, encoded, with_credentials, away, up, hop[0], good]
    product_id = migrated_product(engine, tenant, urls)

    result = enrich(engine, media_settings, tenant)

    assert outside.total_requests() == 0
    assert media.requests["/private/secret.png"] == 0
    assert media.requests["/media/hop3.png"] == 0, "a third redirect is not followed"
    assert {url: row["reason"] for url, row in failures(engine, tenant).items()} == {
        direct: "refused_url",
        private: "refused_url",
        dotted: "refused_url",
        encoded: "refused_url",
        with_credentials: "refused_url",
        away: "refused_redirect",
        up: "refused_redirect",
        hop[0]: "too_many_redirects",
    }
    assert (result.enriched, result.failed) == (1, 8)
    assert by_url(engine, tenant)[good]["width"] == 4
    assert_representations_equal(engine, tenant, product_id)


# --- reruns ------------------------------------------------------------------------------


def test_a_rerun_changes_and_requests_nothing_and_retry_failed_retries_only_failures(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    good = [media.serve(f"ok{i}.jpg", encode("JPEG", 30 + i, 20)) for i in range(4)]
    late = media.url("late.png")  # missing now, uploaded later
    down = media.serve("down.gif", kind="fail")
    product_id = migrated_product(engine, tenant, [*good, late, down])
    options = EnrichOptions(retries=0, batch_products=1)

    first = enrich(engine, media_settings, tenant, options)
    assert (first.enriched, first.failed) == (4, 2)
    table_before, failures_before = rows(engine, tenant), failures(engine, tenant)
    requests_before = media.total_requests()

    again = enrich(engine, media_settings, tenant, options)

    assert (again.images, again.enriched, again.failed) == (0, 0, 0)
    assert media.total_requests() == requests_before, "nothing pending, nothing fetched"
    assert rows(engine, tenant) == table_before
    assert failures(engine, tenant) == failures_before

    media.serve("late.png", encode("PNG", 70, 7))
    media.requests.clear()
    retried = enrich(engine, media_settings, tenant, EnrichOptions(retries=0, retry_failed=True))

    assert set(media.requests) == {"/media/late.png", "/media/down.gif"}
    assert (retried.images, retried.enriched, retried.failed) == (2, 1, 1)
    assert by_url(engine, tenant)[late]["width"] == 70
    after = failures(engine, tenant)
    assert set(after) == {down}, "a success deletes the failure row"
    assert after[down]["attempts"] == 2
    assert_representations_equal(engine, tenant, product_id)


def test_a_dry_run_reads_everything_and_writes_nothing(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    good = media.serve("a.png", encode("PNG", 8, 8))
    product_id = migrated_product(engine, tenant, [good, media.url("missing.png")])
    before = rows(engine, tenant)

    result = enrich(engine, media_settings, tenant, EnrichOptions(dry_run=True))

    assert (result.enriched, result.failed) == (1, 1)
    assert media.requests["/media/a.png"] == 1
    assert rows(engine, tenant) == before
    assert failures(engine, tenant) == {}
    assert rows(engine, tenant, product_id)[0]["mime_type"] is None


# --- races with the API ------------------------------------------------------------------


class MutatingFetcher(Fetcher):
    """A real fetcher that lets the API change a product right after one object is read."""

    def __init__(self, *args: Any, after: dict[str, Callable[[], None]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after = after

    def fetch(self, url: str) -> Fetched | Failed:
        answer = super().fetch(url)
        if url in self.after:
            self.after.pop(url)()
        return answer


def test_an_image_deleted_between_the_read_and_the_write_is_skipped_safely(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    urls = [media.serve(f"{i}.png", encode("PNG", 5 + i, 5)) for i in range(3)]
    doomed_url = media.url("doomed.png")  # missing: its failure must not be recorded either
    product_id = migrated_product(engine, tenant, [*urls, doomed_url])
    gone_product = migrated_product(engine, tenant, [media.serve("x.png", encode("PNG", 2, 2))])
    service = service_for(media_settings)
    ids = {row["url"]: row["id"] for row in rows(engine, tenant, product_id)}

    def delete(url: str) -> Callable[[], None]:
        def run() -> None:
            with unit_of_work(engine, tenant) as session:
                service.delete_image(
                    session, product_id=product_id, image_id=ids[url], now=datetime.now(UTC)
                )

        return run

    def delete_product() -> None:
        with unit_of_work(engine, tenant) as session:
            product_service.delete_product(session, gone_product)

    fetcher = MutatingFetcher(
        service_for(media_settings).url_bases,
        FAST,
        after={
            urls[1]: delete(urls[1]),
            doomed_url: delete(doomed_url),
            media.url("x.png"): delete_product,
        },
    )
    result = Enricher(engine, service, fetcher, FAST).run([tenant])[0]
    fetcher.close()

    assert (result.enriched, result.failed, result.skipped) == (2, 0, 3)
    assert [(row["url"], row["alt_text"]) for row in rows(engine, tenant, product_id)] == [
        (urls[0], "Levi's 501, photo 1 of 2"),
        (urls[2], "Levi's 501, photo 2 of 2"),
    ]
    assert failures(engine, tenant) == {}
    assert_representations_equal(engine, tenant, product_id)


def test_metadata_read_from_another_url_than_the_image_has_now_is_not_written(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    url = media.serve("a.png", encode("PNG", 5, 5))
    product_id = migrated_product(engine, tenant, [url])
    image_id: UUID = rows(engine, tenant, product_id)[0]["id"]
    with unit_of_work(engine, tenant) as session:
        outcome = service_for(media_settings).enrich_images(
            session,
            product_id=product_id,
            found=[FoundMetadata(image_id, media.url("other.png"), "image/png", 1, 5, 5)],
            now=datetime.now(UTC),
        )
    assert (outcome.enriched, outcome.skipped, outcome.written) == ((), (image_id,), False)
    assert rows(engine, tenant, product_id)[0]["mime_type"] is None


def test_enrichment_concurrent_with_api_mutations_keeps_both_representations_equal(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    for i in range(60):
        media.serve(f"p/{i}.jpg", encode("JPEG", 10 + i, 10), kind="slow")
    products = [
        migrated_product(engine, tenant, [media.url(f"p/{p * 5 + k}.jpg") for k in range(5)])
        for p in range(6)
    ]
    service = service_for(media_settings)
    stop = threading.Event()
    api_lock = threading.Lock()  # the API threads in one order, so "last alt written" is known
    written_alt: dict[UUID, str] = {}
    errors: list[BaseException] = []
    operations = Counter[str]()

    def api(seed: int) -> None:
        rng = random.Random(seed)
        step = 0
        while not stop.is_set() or step < 20:
            step += 1
            product_id = rng.choice(products)
            now = datetime.now(UTC)
            try:
                with api_lock, unit_of_work(engine, tenant) as session:
                    current = service.list_images(session, product_id=product_id).images
                    action = rng.choice(["add", "delete", "reorder", "label", "alt"])
                    if action == "add" or len(current) < 2:
                        service.add_image(
                            session,
                            product_id=product_id,
                            image_data=NewImage(url=media.url(f"p/{rng.randrange(60)}.jpg")),
                            position=rng.choice([None, 0]),
                            now=now,
                        )
                    elif action == "delete":
                        service.delete_image(
                            session, product_id=product_id, image_id=rng.choice(current).id, now=now
                        )
                    elif action == "reorder":
                        ids = [image.id for image in current]
                        rng.shuffle(ids)
                        service.reorder_images(
                            session, product_id=product_id, new_order=ids, now=now
                        )
                    elif action == "label":
                        service.set_label_flag(
                            session,
                            product_id=product_id,
                            image_id=rng.choice(current).id,
                            is_label=rng.random() < 0.7,
                            now=now,
                        )
                    else:
                        image_id = rng.choice(current).id
                        words = f"written by a person {seed}-{step}"
                        service.update_image(
                            session,
                            product_id=product_id,
                            image_id=image_id,
                            alt_text=words,
                            now=now,
                        )
                        written_alt[image_id] = words
                    operations[action] += 1
            except ImageError:
                continue
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=api, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    options = EnrichOptions(concurrency=4, batch_products=2, retries=2, backoff_base=0.001)
    first = enrich(engine, media_settings, tenant, options)
    during = sum(operations.values())
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert first.enriched > 0 and during > 0, "the API wrote while the enrichment ran"
    second = enrich(engine, media_settings, tenant, options)  # whatever the races skipped

    assert second.failed == 0
    for product_id in products:
        assert_representations_equal(engine, tenant, product_id)
        for row in rows(engine, tenant, product_id):
            assert None not in (row["mime_type"], row["file_size"], row["width"], row["alt_text"])
            if row["id"] in written_alt:
                assert row["alt_text"] == written_alt[row["id"]], "a person's words are kept"
    assert sum(operations.values()) >= 30


# --- the command line --------------------------------------------------------------------


def enrich_command(
    database_url: str, media: MediaServer, tmp: Path, *args: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "backfill.enrich_cli", *args],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "DATA_DIR": str(tmp),
            "MEDIA_BASE_URL": media.base,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_command_line_enriches_reports_json_events_and_refuses_unknown_tenants(
    database_url: str, engine: Engine, tenant: int, media: MediaServer, tmp_path: Path
) -> None:
    url = media.serve("a.webp", encode("WEBP", 33, 44))
    product_id = migrated_product(engine, tenant, [url, media.url("gone.png")])

    run = enrich_command(database_url, media, tmp_path, "--tenant", str(tenant))
    _out, err = run.communicate(timeout=120)

    assert run.returncode == 0, err
    assert '"event": "enrich.done"' in err and '"enriched": 1' in err
    assert "filled 1, failed 1 (not_found 1)" in err
    assert rows(engine, tenant, product_id)[0]["width"] == 33

    unknown = enrich_command(database_url, media, tmp_path, "--tenant", "999999999")
    _out, err = unknown.communicate(timeout=120)
    assert unknown.returncode == 2, err


def test_sigterm_finishes_the_batch_in_flight_and_a_rerun_completes(
    database_url: str, engine: Engine, tenant: int, media: MediaServer, tmp_path: Path
) -> None:
    body = encode("PNG", 6, 6)
    product_ids = migrated_products(
        engine, tenant, [[media.serve(f"held/{i}.png", body, kind="gate")] for i in range(105)]
    )
    run = enrich_command(database_url, media, tmp_path, "--tenant", str(tenant))
    assert run.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr or []), daemon=True)
    reader.start()
    while media.total_requests() == 0:  # the first batch is being read: signals are handled
        assert run.poll() is None, lines
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    while not any("backfill.stop_requested" in line for line in lines):
        assert run.poll() is None, lines
        time.sleep(0.01)
    media.gate.set()  # the requests held so far are answered: the batch can finish
    run.wait(timeout=120)
    reader.join(timeout=10)

    assert run.returncode == 130, lines
    enriched = [p for p in product_ids if rows(engine, tenant, p)[0]["mime_type"] is not None]
    assert enriched == product_ids[:100], "the first batch (100 products) and nothing more"

    rerun = enrich_command(database_url, media, tmp_path, "--tenant", str(tenant))
    _out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert all(rows(engine, tenant, p)[0]["mime_type"] == "image/png" for p in product_ids)

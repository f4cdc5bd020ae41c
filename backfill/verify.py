"""Verification across the shape change: the JSONB's normalised images against the table's
rows, per product, set-based, in one snapshot; the result is recorded per tenant.

The expected side is the backfill's own projection SQL (backfill/sql/project_products.sql)
run as a SELECT and joined, a chunk of products at a time, with the table's rows of the same
products: one projection, not a second copy to keep in step. Only the expected rejections go
into a temporary table (`pg_temp` first on the search path), by the backfill's own
record_rejections.sql.

Over 300 lines because the one-connection and the several-connection comparisons share the
chunking, the classification and the compare-and-set record, which must not drift apart.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import Connection, Engine, RowMapping, TextClause, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.core.database import quoted_schema, tenant_schema
from app.core.settings import get_settings
from app.images import IMAGE_KEYS, Image, row_to_image
from app.images.differences import Difference, classify
from app.repositories import migration_state
from backfill.projection import PROJECTED_SQL, ROW_COLUMNS, prepare_projection, record_rejections
from backfill.tenants import is_contracted

log = structlog.get_logger("backfill.verify")

# Products per comparison: their expected and actual rows (5 to 30 each) are hashed in
# memory by one join (docs/benchmarks.md, "Verify").
CHUNK = 5_000
# Connections comparing at once, in one snapshot (the lead lists the chunks): about half the
# wall time of one on a 2-core machine (docs/benchmarks.md, "Verify").
WORKERS = 2
MAX_DETAILED = 1_000

# Both sides' rows of a chunk, joined on (product, image id). A product differs when one of
# its rows is on one side only or differs in any image key: the records are compared field
# by field, NULL-safe (IS DISTINCT FROM), so (NULL, 500) and (500, NULL) differ, and no text
# or hash stands between them. Built from IMAGE_KEYS, so a new key is compared without
# anyone remembering to. Over one product, "every row matches one row" is the same test as
# the ordered list of its rows being equal: ids and orders are unique within a product on
# both sides.
_KEYS = ", ".join(f'"{key}"' for key in IMAGE_KEYS)
_EXPECTED_RECORD = ", ".join(f'e."{key}"' for key in IMAGE_KEYS)
_ACTUAL_RECORD = ", ".join(f'a."{key}"' for key in IMAGE_KEYS)


def _comparison(schema: str) -> str:
    return f"""
WITH expected AS ({PROJECTED_SQL}),
actual AS (
  SELECT product_id, {_KEYS}
  FROM {schema}.product_images
  WHERE product_id = ANY(CAST(:product_ids AS bigint[]))
)
SELECT count(e.id) AS expected_rows,
       count(*) FILTER (WHERE e.is_label) AS expected_labels,
       count(a.id) AS table_rows,
       count(*) FILTER (WHERE a.is_label) AS labels,
       coalesce(array_agg(DISTINCT coalesce(e.product_id, a.product_id))
                  FILTER (WHERE ROW({_EXPECTED_RECORD}) IS DISTINCT FROM ROW({_ACTUAL_RECORD})),
                '{{}}') AS mismatched
FROM expected AS e
FULL JOIN actual AS a ON a.product_id = e.product_id AND a.id = e.id
"""


_COLUMNS = ", ".join(f'"{column}"' for column in ROW_COLUMNS)


class TenantContracted(RuntimeError):
    """The tenant has no JSONB any more: verification has nothing to compare."""


@dataclass
class VerificationReport:
    """What verify found for one tenant."""

    tenant_id: int
    products: int = 0
    jsonb_elements: int = 0
    table_rows: int = 0
    expected_rows: int = 0
    rejected: int = 0
    rejected_unreported: int = 0
    labels: int = 0
    expected_labels: int = 0
    mismatched_products: int = 0
    mismatches: list[Difference] = field(default_factory=list)
    since: str | None = None
    seconds: float = 0.0
    # A drift (a write outside the dual-write, a restore) was recorded while this ran: the
    # comparison may be clean, but the tenant is not marked verified.
    raced_by_drift: bool = False

    @property
    def is_verified(self) -> bool:
        """Every element is a row or a reported rejection, every product matches, and no
        drift was recorded while the comparison ran."""
        return (
            not self.raced_by_drift
            and self.mismatched_products == 0
            and self.rejected_unreported == 0
            and self.jsonb_elements == self.expected_rows + self.rejected
            and (self.since is not None or self.table_rows == self.expected_rows)
        )

    def summary(self) -> dict[str, object]:
        """JSON-ready counts (stored with the verified state)."""
        data = asdict(self)
        data["mismatches"] = [asdict(m) for m in self.mismatches[:20]]
        data["is_verified"] = self.is_verified
        return data


def checked_since(raw: str, now: datetime) -> str:
    """The `--since` of a partial verify as a timezone-aware ISO 8601 instant, or ValueError
    with the reason: a date PostgreSQL would guess at ('yesterday', a naive time in the
    server's time zone) or a time in the future (it would compare nothing and say clean)."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError(f"{raw!r} is not an ISO 8601 time (e.g. 2026-11-25T08:00:00Z)") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{raw!r} has no time zone: add one (e.g. Z or +01:00)")
    if moment > now:
        raise ValueError(f"{raw!r} is in the future: it would compare no product")
    return moment.isoformat()


Progress = Callable[[int], None]  # products compared in the chunk just done


def verify_tenant(
    engine: Engine,
    tenant_id: int,
    *,
    since: str | None = None,
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> VerificationReport:
    """Compare both representations of every product (or those updated since a time), on
    `workers` connections sharing one snapshot; `progress` hears of each chunk, in the
    caller's thread (a job's, which may stop the pass by raising)."""
    if workers < 1:
        raise ValueError(f"workers: {workers} is not a positive number of connections")
    started = time.monotonic()
    schema = quoted_schema(tenant_schema(tenant_id))
    report = VerificationReport(tenant_id=tenant_id, since=since)
    if is_contracted(engine, tenant_id):
        raise TenantContracted(
            f"tenant {tenant_id} is contracted: products.images is gone, nothing to compare"
        )
    with engine.connect() as connection:
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        # The first read takes the snapshot: the generation it sees is what marking the
        # tenant verified compares against (migration_state.mark_verified).
        seen_generation = migration_state.drift_generation(connection, schema)
        if workers == 1:
            mismatched = _compare_chunks(connection, schema, report, progress)
        else:
            mismatched = _compare_in_parallel(engine, connection, schema, report, progress, workers)
        _classify(connection, schema, report, mismatched)
        connection.rollback()  # the temporary tables go with it
    report.seconds = time.monotonic() - started
    _record(engine, schema, report, seen_generation)
    log.info(
        "verify.done",
        tenant=tenant_id,
        # Only a full pass verifies; a `--since` pass is clean or not.
        verified=report.is_verified and report.since is None,
        clean=report.is_verified,
        since=report.since,
        mismatched_products=report.mismatched_products,
        seconds=round(report.seconds, 3),
    )
    return report


def compare_into_report(connection: Connection, schema: str, report: VerificationReport) -> None:
    """The comparison (of the products updated since `report.since`, or all) inside the
    caller's transaction (the contract's guard), leaving no temporary table behind and the
    search path on the tenant's schema."""
    mismatched = _compare_chunks(connection, schema, report)
    _classify(connection, schema, report, mismatched)
    connection.execute(text("DROP TABLE pg_temp.rejected_image_elements"))
    connection.execute(text(f"SET LOCAL search_path TO {schema}"))


def _scope(schema: str, since: str | None) -> str:
    """The products a `--since` pass compares: updated since then, or written outside the
    dual-write since then (a bypassing writer may leave updated_at alone; the safety net's
    log has them)."""
    if not since:
        return ""
    return (
        "WHERE (updated_at >= CAST(:since AS timestamptz) OR id IN (SELECT product_id "
        f"FROM {schema}.changed_products WHERE changed_at >= CAST(:since AS timestamptz)))"
    )


def _compare_chunks(
    connection: Connection,
    schema: str,
    report: VerificationReport,
    progress: Progress | None = None,
) -> list[int]:
    """Count both sides and compare them, a chunk of products at a time (all, or those in
    `report.since`'s scope), inside the caller's transaction; the expected rejections are
    left in `pg_temp.rejected_image_elements`. Returns the products that differ, by id."""
    comparison = _prepare_comparison(connection, schema)
    mismatched: list[int] = []
    for chunk in _chunks(connection, schema, report):
        mismatched.extend(_compare_chunk(connection, comparison, chunk, report))
        if progress is not None:
            progress(len(chunk))
    _count_rejections(connection, schema, report)
    report.mismatched_products = len(mismatched)
    return mismatched


def _prepare_comparison(connection: Connection, schema: str) -> TextClause:
    """The temporary rejections table and the search path, in the caller's transaction;
    the comparison statement."""
    connection.execute(
        text(
            f"CREATE TEMP TABLE rejected_image_elements (LIKE {schema}.rejected_image_elements "
            "INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DROP"
        )
    )
    connection.execute(
        text("CREATE UNIQUE INDEX ON pg_temp.rejected_image_elements (product_id, position)")
    )
    # pg_temp first: record_rejections.sql's unqualified report now means the temporary
    # one; the projection reads only `products`, which pg_temp does not have.
    connection.execute(text(f"SET LOCAL search_path TO pg_temp, {schema}, public"))
    prepare_projection(connection)
    return text(_comparison(schema))


def _compare_chunk(
    connection: Connection, comparison: TextClause, chunk: list[int], report: VerificationReport
) -> list[int]:
    """One chunk's counts added to `report`, its expected rejections recorded; the
    products that differ."""
    row = connection.execute(
        comparison,
        {"product_ids": chunk, "legacy_sources": list(get_settings().legacy_sources)},
    ).one()
    report.expected_rows += int(row.expected_rows)
    report.expected_labels += int(row.expected_labels)
    report.table_rows += int(row.table_rows)
    report.labels += int(row.labels)
    record_rejections(connection, chunk, "verify")
    return list(row.mismatched)


def _count_rejections(connection: Connection, schema: str, report: VerificationReport) -> None:
    """The expected rejections this connection recorded, and those the report lacks."""
    rejected = connection.execute(
        text(
            f"""
            SELECT count(*) AS rejected,
                   count(*) FILTER (WHERE NOT EXISTS (
                     SELECT 1 FROM {schema}.rejected_image_elements AS r
                     WHERE r.product_id = e.product_id AND r.position = e.position
                       AND r.reason = e.reason)) AS rejected_unreported
            FROM pg_temp.rejected_image_elements AS e
            """
        )
    ).one()
    report.rejected += int(rejected.rejected)
    report.rejected_unreported += int(rejected.rejected_unreported)


# --- several connections, one snapshot -------------------------------------------------------
#
# The lead connection's REPEATABLE READ snapshot (the one whose drift generation the mark
# compares against) is exported; each worker connection imports it (`SET TRANSACTION
# SNAPSHOT`), so every chunk is compared in that one snapshot, as on a single connection,
# and the compare-and-set proof is unchanged. The lead lists the chunks and hands them out
# through a bounded queue; the workers compare; `progress` runs in the caller's thread as
# results come back, so a job's cancel (raised there) stops the pass.

_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")
_DONE = object()
WORKER_LOCK_TIMEOUT = "5s"


@dataclass
class _Outcome:
    products: int = 0
    mismatched: list[int] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False


def _compare_in_parallel(
    engine: Engine,
    lead: Connection,
    schema: str,
    report: VerificationReport,
    progress: Progress | None,
    workers: int,
) -> list[int]:
    snapshot = str(lead.execute(text("SELECT pg_export_snapshot()")).scalar_one())
    if not _SNAPSHOT_ID.match(snapshot):
        raise RuntimeError(f"unexpected snapshot id {snapshot!r}")
    _prepare_comparison(lead, schema)  # the lead classifies the differences afterwards
    chunks: queue.Queue[object] = queue.Queue(maxsize=2 * workers)
    outcomes: queue.Queue[_Outcome] = queue.Queue()
    stop = threading.Event()
    partials: list[VerificationReport] = []
    threads: list[threading.Thread] = []
    mismatched: list[int] = []
    running = workers
    handed_out = compared = 0

    def collect(block: bool) -> None:
        nonlocal running, compared
        while running:
            try:
                outcome = outcomes.get(block=block, timeout=0.1 if block else None)
            except queue.Empty:
                return
            if outcome.error is not None:
                raise outcome.error
            if outcome.finished:  # a worker's last word: it saw the end, or had no connection
                running -= 1
                continue
            compared += 1
            mismatched.extend(outcome.mismatched)
            if progress is not None:
                progress(outcome.products)
            block = False

    def hand_out(item: object) -> None:
        while True:
            collect(block=False)
            if not running:
                raise RuntimeError(
                    "verify: no worker connection left to compare on (none could be had from "
                    "the pool within its timeout: fewer --workers, or a larger pool)"
                )
            try:
                chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    try:  # the threads start inside: whatever fails, the finally stops and joins them
        for _ in range(workers):
            partial = VerificationReport(tenant_id=report.tenant_id, since=report.since)
            partials.append(partial)
            thread = threading.Thread(
                target=_worker,
                args=(engine, schema, snapshot, partial, chunks, outcomes, stop),
                name="verify-worker",
                daemon=True,
            )
            threads.append(thread)
            thread.start()
        for chunk in _chunks(lead, schema, report):
            hand_out(chunk)
            handed_out += 1
        for _ in threads:  # one end marker per worker still there (each takes one)
            collect(block=False)
            if running:
                hand_out(_DONE)
        while running:
            collect(block=True)
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive() or thread.ident is not None:
                thread.join()
    if compared != handed_out:  # a worker left early: never a partial report
        raise RuntimeError(f"verify: {handed_out - compared} chunk(s) not compared")
    for partial in partials:
        for name in ("expected_rows", "expected_labels", "table_rows", "labels"):
            setattr(report, name, getattr(report, name) + getattr(partial, name))
        report.rejected += partial.rejected
        report.rejected_unreported += partial.rejected_unreported
    report.mismatched_products = len(mismatched)
    return sorted(mismatched)


def _worker(
    engine: Engine,
    schema: str,
    snapshot: str,
    partial: VerificationReport,
    chunks: queue.Queue[object],
    outcomes: queue.Queue[_Outcome],
    stop: threading.Event,
) -> None:
    """Compare the chunks handed out, in the lead's snapshot, until told it is over. With no
    connection to be had from the pool it leaves the chunks to the others."""
    try:
        try:
            connection = engine.connect()
        except PoolTimeout:
            log.warning("verify.worker_without_connection", pool=engine.pool.status())
            outcomes.put(_Outcome(finished=True))
            return
        with connection:
            connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            connection.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            # A lock it would wait for behind a DDL queued on the lead's locks: PostgreSQL sees
            # no cycle (the lead waits for this worker in Python), so fail instead of hanging.
            connection.execute(text(f"SET LOCAL lock_timeout = '{WORKER_LOCK_TIMEOUT}'"))
            comparison = _prepare_comparison(connection, schema)
            while not stop.is_set():
                try:
                    chunk = chunks.get(timeout=0.1)
                except queue.Empty:
                    continue
                if chunk is _DONE:
                    _count_rejections(connection, schema, partial)
                    outcomes.put(_Outcome(finished=True))
                    break
                assert isinstance(chunk, list)
                found = _compare_chunk(connection, comparison, chunk, partial)
                outcomes.put(_Outcome(products=len(chunk), mismatched=found))
            connection.rollback()
    except BaseException as exc:  # handed to the caller's thread, which raises it
        outcomes.put(_Outcome(error=exc))


def _chunks(connection: Connection, schema: str, report: VerificationReport) -> Iterator[list[int]]:
    """The products in scope, CHUNK at a time by id; counts them and their JSONB elements
    (an array's length, 1 for anything else) into the report on the way."""
    params: dict[str, object] = {"since": report.since} if report.since else {}
    after = 0
    while True:
        rows = connection.execute(
            text(
                "SELECT id, CASE jsonb_typeof(images) WHEN 'array' "
                "THEN jsonb_array_length(images) ELSE 1 END AS elements "
                f"FROM {schema}.products {_scope(schema, report.since) or 'WHERE true'} "
                "AND id > :after ORDER BY id LIMIT :n"
            ),
            {**params, "after": after, "n": CHUNK},
        ).all()
        if not rows:
            return
        report.products += len(rows)
        report.jsonb_elements += sum(int(row.elements) for row in rows)
        after = rows[-1].id
        yield [int(row.id) for row in rows]


def _classify(
    connection: Connection, schema: str, report: VerificationReport, mismatched: list[int]
) -> None:
    """Load the first MAX_DETAILED differing products' two sides and say how they differ."""
    detailed = mismatched[:MAX_DETAILED]
    if not detailed:
        return
    expected = _expected_images(connection, detailed)
    actual = _actual_images(connection, schema, detailed)
    for product_id in detailed:
        report.mismatches.extend(
            classify(product_id, expected.get(product_id, []), actual.get(product_id, []))
        )


def differing_products(engine: Engine, tenant_id: int, *, since: str | None = None) -> list[int]:
    """Every product whose rows differ from its JSONB's projection or whose rejected
    elements are not all in the report, in one REPEATABLE READ snapshot (what `backfill
    repair` rebuilds; nothing is written)."""
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.connect() as connection:
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        differing = set(
            _compare_chunks(connection, schema, VerificationReport(tenant_id, since=since))
        )
        differing.update(
            connection.execute(
                text(
                    "SELECT DISTINCT e.product_id FROM pg_temp.rejected_image_elements AS e "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {schema}.rejected_image_elements AS r "
                    "WHERE r.product_id = e.product_id AND r.position = e.position "
                    "AND r.reason = e.reason)"
                )
            ).scalars()
        )
        connection.rollback()
    return sorted(differing)


def _expected_images(connection: Connection, product_ids: list[int]) -> dict[int, list[Image]]:
    rows = connection.execute(
        text(f'SELECT {_COLUMNS} FROM ({PROJECTED_SQL}) AS projected ORDER BY product_id, "order"'),
        {"product_ids": product_ids, "legacy_sources": list(get_settings().legacy_sources)},
    ).mappings()
    return _by_product(rows)


def _actual_images(
    connection: Connection, schema: str, product_ids: list[int]
) -> dict[int, list[Image]]:
    rows = connection.execute(
        text(
            f"SELECT {_COLUMNS} FROM {schema}.product_images "
            'WHERE product_id = ANY(CAST(:product_ids AS bigint[])) ORDER BY product_id, "order"'
        ),
        {"product_ids": product_ids},
    ).mappings()
    return _by_product(rows)


def _by_product(rows: Iterable[RowMapping]) -> dict[int, list[Image]]:
    images: dict[int, list[Image]] = {}
    for row in rows:
        images.setdefault(int(row["product_id"]), []).append(row_to_image(dict(row)))
    return images


def _record(engine: Engine, schema: str, report: VerificationReport, seen_generation: int) -> None:
    """Store the result: a full clean pass verifies, unless a drift was recorded since its
    snapshot (compare-and-set); any difference is drift."""
    summary = json.dumps(report.summary(), default=str)
    with engine.begin() as connection:
        if report.is_verified and report.since is None:
            if not migration_state.mark_verified(
                connection, schema, seen_generation=seen_generation, summary=summary
            ):
                report.raced_by_drift = True
                log.warning("verify.raced_by_drift", tenant=report.tenant_id)
        elif not report.is_verified:
            migration_state.record_failed_verification(connection, schema, summary)


def verified_at(engine: Engine, tenant_id: int) -> datetime | None:
    """When the tenant was last verified clean (None: not verified)."""
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.connect() as connection:
        return migration_state.verified_at(connection, schema)

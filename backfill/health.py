"""The database's health, which a backfill yields to besides the app's own busy sessions
(gh-ost's max-lag and throttle queries): a standby's replay lag over a limit, an autovacuum
that has worked on the tenant's tables for long, and a checkpoint the WAL volume forced
(`max_wal_size` reached: the backfill writes faster than the server retires WAL).

`sample` reads the server's statistics views in one statement; `pressure` is the pure
decision, so the thresholds are tested without a standby."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class HealthLimits:
    """When the backfill waits; None turns a signal off."""

    max_replication_lag_seconds: float | None = 10.0
    autovacuum_after_seconds: float | None = 60.0
    yield_to_forced_checkpoints: bool = True


@dataclass(frozen=True)
class HealthSample:
    """One reading of the server's health."""

    replication_lag_seconds: float  # the largest replay lag of any standby; 0 without one
    long_autovacuums: int  # autovacuum workers on the tenant's tables past the limit
    requested_checkpoints: int  # a counter: checkpoints forced by WAL volume or asked for


def pressure(
    previous: HealthSample | None, current: HealthSample, limits: HealthLimits
) -> str | None:
    """Why the backfill should wait now, or None."""
    lag_limit = limits.max_replication_lag_seconds
    if lag_limit is not None and current.replication_lag_seconds > lag_limit:
        return f"replication lag {current.replication_lag_seconds:.1f} s is over {lag_limit:g} s"
    if limits.autovacuum_after_seconds is not None and current.long_autovacuums > 0:
        return (
            f"autovacuum has worked on the tenant's tables for over "
            f"{limits.autovacuum_after_seconds:g} s"
        )
    if (
        limits.yield_to_forced_checkpoints
        and previous is not None
        and current.requested_checkpoints > previous.requested_checkpoints
    ):
        return "a checkpoint was requested (WAL past max_wal_size, or CHECKPOINT)"
    return None


_CHECKPOINTS = {
    # PostgreSQL 17 moved the counter to pg_stat_checkpointer.
    True: "(SELECT num_requested FROM pg_stat_checkpointer)",
    False: "(SELECT checkpoints_req FROM pg_stat_bgwriter)",
}


def sample(connection: Connection, schema: str, limits: HealthLimits) -> HealthSample:
    """Read the server's health for a run on `schema` (ends the read's transaction)."""
    # The dialect read the server's version when it connected: no round trip per batch.
    version = connection.dialect.server_version_info or (0,)
    row = connection.execute(
        text(
            "SELECT "
            "(SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) "
            " FROM pg_stat_replication) AS lag, "
            "(SELECT count(*) FROM pg_stat_progress_vacuum v "
            " JOIN pg_stat_activity a ON a.pid = v.pid "
            " WHERE a.backend_type = 'autovacuum worker' "
            " AND v.datid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            " AND v.relid IN (to_regclass(:products), to_regclass(:images)) "
            " AND a.xact_start < now() - make_interval(secs => :after)) AS vacuums, "
            f"{_CHECKPOINTS[version >= (17,)]} AS checkpoints"
        ),
        {
            "products": f"{schema}.products",
            "images": f"{schema}.product_images",
            "after": limits.autovacuum_after_seconds or 0.0,
        },
    ).one()
    connection.commit()
    return HealthSample(float(row.lag), int(row.vacuums), int(row.checkpoints))

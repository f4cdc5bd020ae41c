"""Stage resolution: from a tenant's facts and flags to the paths it reads and writes.
Pure: the flags client and the database facts are inputs; the one place the interlocks live."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """Where a tenant is in the migration (the industry's migration-flag vocabulary)."""

    LEGACY = "legacy"  # no product_images table yet
    DUAL_WRITE = "dual-write"  # table exists, writes go to both
    BACKFILLED = "backfilled"  # history copied, not verified
    VERIFIED = "verified"  # verify proved JSONB == table
    SHADOW = "shadow"  # reads compared across both representations
    LIVE = "live"  # reads come from the table
    COMPLETE = "complete"  # products.images dropped: table only


class ReadPath(StrEnum):
    """Which representation answers a read."""

    JSONB = "jsonb"
    TABLE = "table"


@dataclass(frozen=True)
class TenantFacts:
    """What the database says about a tenant (read per request, cached briefly)."""

    has_table: bool
    is_contracted: bool
    is_backfilled: bool
    is_verified: bool


@dataclass(frozen=True)
class Flags:
    """The toggles as evaluated for this tenant."""

    dual_write: bool = True
    read_table: bool = False
    shadow_compare: bool = False


@dataclass(frozen=True)
class Resolution:
    """What a request does for this tenant, and why, when a flag was refused."""

    stage: Stage
    read_path: ReadPath
    writes_jsonb: bool
    writes_table: bool
    shadow: bool
    refusal: str | None = None


def resolve(facts: TenantFacts, flags: Flags) -> Resolution:
    """The tenant's stage and paths; `read-table` is honoured only for a verified tenant."""
    if facts.is_contracted:
        # The column is gone: the table is the only representation, whatever the flags say.
        return Resolution(Stage.COMPLETE, ReadPath.TABLE, False, True, False)
    if not facts.has_table:
        return Resolution(Stage.LEGACY, ReadPath.JSONB, True, False, False)
    writes_table = flags.dual_write
    refusal = None
    if flags.read_table and not facts.is_verified:
        refusal = "read-table refused: the tenant is not verified (run backfill verify)"
    elif flags.read_table and not flags.dual_write:
        refusal = "read-table refused: dual-write is off, the table may be stale"
    if flags.read_table and refusal is None:
        return Resolution(Stage.LIVE, ReadPath.TABLE, True, True, flags.shadow_compare)
    # Shadow reads compare only where the table is kept in step by the dual-write.
    shadow = flags.shadow_compare and writes_table and facts.is_backfilled
    if shadow:
        stage = Stage.SHADOW
    elif facts.is_verified:
        stage = Stage.VERIFIED
    elif facts.is_backfilled:
        stage = Stage.BACKFILLED
    else:
        stage = Stage.DUAL_WRITE
    return Resolution(stage, ReadPath.JSONB, True, writes_table, shadow, refusal)

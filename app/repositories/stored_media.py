"""SQL of the stored objects' lifecycle, in the session's tenant schema: the per-object lock,
which objects something still references, and the tenant's media usage counter."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import text

from app.core.database import TenantSession

# Everything that can bring an image URL back, so keeps its object alive (table, text):
# the JSONB (gone once contracted), the rows, the backups a restore copies back into the
# JSONB, and the elements set aside by the rejection report (kept for a person to review).
_SOURCES = (
    ("products", "images::text"),
    ("product_images", "url"),
    ("image_backup_rows", "images::text"),
    ("rejected_image_elements", "raw::text"),
)
# Up to this many keys, each is looked for by PostgreSQL (one scan per key, nothing sent
# back); beyond, the texts are read once and searched here (one scan for all keys). At
# 20,000 products (100,000 images, 14 MB of JSONB) a key costs about 0.25 s in SQL (the
# JSONB's text is most of it) and the one pass about 1 s whatever the number of keys.
_KEYS_SEARCHED_IN_SQL = 4
_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9._/-]*")


def lock_objects(session: TenantSession, keys: Collection[str]) -> None:
    """Take the transaction-level advisory lock of each object (its key names the tenant),
    in hash order so that two holders of several locks cannot deadlock. The attach check
    and every removal take it: a URL is attached and an object removed one after the
    other, never interleaved."""
    if not keys:
        return
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock(lock_id) FROM (SELECT DISTINCT "
            "hashtextextended('media:' || key, 0) AS lock_id "
            "FROM unnest(CAST(:keys AS text[])) AS key ORDER BY lock_id) AS ordered"
        ),
        {"keys": sorted(keys)},
    ).all()


def referenced_keys(session: TenantSession, keys: Collection[str]) -> frozenset[str]:
    """The keys whose text appears in anything of the tenant that references images (a
    conservative match: any spelling that contains the key keeps it). Every key must be of
    the tenant's own objects (`t<id>/...`, key characters only)."""
    if not keys:
        return frozenset()
    schema = session.quoted_schema
    sources = _present_sources(session, schema)
    if len(keys) <= _KEYS_SEARCHED_IN_SQL:
        found = " OR ".join(
            f"EXISTS (SELECT 1 FROM {schema}.{table} WHERE strpos({column}, key) > 0)"
            for table, column in sources
        )
        return frozenset(
            session.execute(
                text(f"SELECT key FROM unnest(CAST(:keys AS text[])) AS key WHERE {found}"),
                {"keys": sorted(keys)},
            ).scalars()
        )
    union = " UNION ALL ".join(
        f"SELECT {column} FROM {schema}.{table} WHERE {column} IS NOT NULL"
        for table, column in sources
    )
    texts = session.execute(text(union), execution_options={"yield_per": 1000}).scalars()
    return KeyRuns.of(texts, _common_prefix(keys)).referenced(keys)


@dataclass(frozen=True)
class KeyRuns:
    """Every run of key characters that starts where `prefix` occurs in some text, sorted:
    a key (starting with `prefix`) occurs in a text exactly when it begins one of them."""

    runs: tuple[str, ...]

    @classmethod
    def of(cls, texts: Iterable[str], prefix: str) -> KeyRuns:
        """The runs of every text, each occurrence of `prefix` (overlapping ones too)."""
        runs: set[str] = set()
        for value in texts:
            at = value.find(prefix)
            while at != -1:
                end = _KEY_CHARACTERS.match(value, at + len(prefix))
                assert end is not None  # `*` matches the empty run too
                runs.add(value[at : end.end()])
                at = value.find(prefix, at + 1)
        return cls(tuple(sorted(runs)))

    def referenced(self, keys: Iterable[str]) -> frozenset[str]:
        """The keys that begin a run (runs beginning with a key sort right after it)."""
        found = set()
        for key in keys:
            at = bisect_left(self.runs, key)
            if at < len(self.runs) and self.runs[at].startswith(key):
                found.add(key)
        return frozenset(found)


def _common_prefix(keys: Collection[str]) -> str:
    """`t<id>/`, which every key of one tenant starts with."""
    prefixes = {key.split("/", 1)[0] + "/" for key in keys}
    if len(prefixes) != 1:
        raise ValueError(f"keys of more than one tenant prefix: {sorted(prefixes)}")
    return prefixes.pop()


def _present_sources(session: TenantSession, schema: str) -> list[tuple[str, str]]:
    """The reference sources this schema has (`products.images` is gone once contracted)."""
    present = session.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:products) "
            "AND attname = 'images' AND NOT attisdropped), to_regclass(:rows) IS NOT NULL, "
            "to_regclass(:backups) IS NOT NULL, to_regclass(:rejected) IS NOT NULL"
        ),
        {
            "products": f"{schema}.products",
            "rows": f"{schema}.product_images",
            "backups": f"{schema}.image_backup_rows",
            "rejected": f"{schema}.rejected_image_elements",
        },
    ).one()
    return [source for source, is_present in zip(_SOURCES, present, strict=True) if is_present]


# --- the usage counter ------------------------------------------------------------------


def has_usage(session: TenantSession) -> bool:
    """Whether the tenant's schema has its media usage counter (revision 0011)."""
    name = f"{session.quoted_schema}.media_usage"
    return bool(
        session.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar()
    )


def usage(session: TenantSession) -> int:
    """The bytes the tenant's stored objects take, as counted."""
    schema = session.quoted_schema
    return int(session.execute(text(f"SELECT bytes FROM {schema}.media_usage")).scalar() or 0)


def reserve(session: TenantSession, size: int, *, quota: int) -> bool:
    """Count `size` more bytes if the total stays within the quota; False (nothing counted)
    otherwise. One statement: concurrent reservations queue on the row, and each sees the
    total the one before it left, so together they never pass the quota."""
    schema = session.quoted_schema
    reserved = session.execute(
        text(
            f"INSERT INTO {schema}.media_usage AS counted (id, bytes) "
            "SELECT 1, :size WHERE :size <= :quota "
            "ON CONFLICT (id) DO UPDATE SET bytes = counted.bytes + :size "
            "WHERE counted.bytes + :size <= :quota RETURNING bytes"
        ),
        {"size": size, "quota": quota},
    ).scalar()
    return reserved is not None


def release(session: TenantSession, size: int) -> None:
    """Count `size` bytes fewer (never below zero: the sweep brings it back to the truth)."""
    schema = session.quoted_schema
    session.execute(
        text(f"UPDATE {schema}.media_usage SET bytes = GREATEST(bytes - :size, 0)"),
        {"size": size},
    )


def reconcile(session: TenantSession, *, counted_before: int, listed: int) -> int:
    """Correct the counter by what the storage listing found against what was counted when
    the listing began (reservations and releases made since are kept); the new count."""
    schema = session.quoted_schema
    return int(
        session.execute(
            text(
                f"UPDATE {schema}.media_usage SET bytes = GREATEST(bytes + :delta, 0), "
                "reconciled_at = now() RETURNING bytes"
            ),
            {"delta": listed - counted_before},
        ).scalar_one()
    )

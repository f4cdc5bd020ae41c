"""Which tenant a stored object belongs to, and which object an image URL names (pure).

Uploads are stored under `t<tenant>/p<product>/<random>.<ext>`: the first segment of a key
says whose object it is. Keys outside any `t<N>/` prefix (seeded and legacy objects) belong
to no tenant in particular: they are never removed by the lifecycle, and anyone may attach
them, as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.images.operations import stored_object
from app.storage.base import InvalidKey, check_key

_TENANT_SEGMENT = re.compile(r"t([1-9][0-9]{0,17})")


def tenant_prefix(tenant_id: int) -> str:
    """The key prefix under which every object of the tenant is stored: `t<id>/`."""
    if isinstance(tenant_id, bool) or not 0 < tenant_id < 10**18:
        raise ValueError(f"tenant id must be a positive integer below 10^18, got {tenant_id}")
    return f"t{tenant_id}/"


def upload_prefix(tenant_id: int, product_id: int) -> str:
    """Where an upload to the product is stored (FileService adds `/<random>.<ext>`)."""
    return f"{tenant_prefix(tenant_id)}p{product_id}"


def owner_of(key: str) -> int | None:
    """The tenant whose `t<N>/` prefix the key is under (empty segments skipped, as a
    fetcher may collapse them), or None for a key outside every tenant prefix."""
    segments = [segment for segment in key.split("/") if segment]
    if len(segments) < 2:  # `t5` alone is a name, not a folder
        return None
    found = _TENANT_SEGMENT.fullmatch(segments[0])
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class NamedObject:
    """The stored object an image URL fetches."""

    key: str  # as the storage would look it up: percent-decoded, without query or fragment
    owner: int | None  # see owner_of
    is_exact: bool  # the URL writes the key as stored: a valid key, no escapes, no `//`


def named_object(url: str, bases: Sequence[str]) -> NamedObject | None:
    """The object a URL under one of the bases names, whatever its spelling (scheme, host
    case, default port, escapes, query: `stored_object`'s rule), or None when the URL is
    under none of them. Every base counts as one of ours: a CDN in front of the bucket
    serves the same keys."""
    fetched = stored_object(url)
    for base in bases:
        prefix = stored_object(base.rstrip("/") + "/")
        if not fetched.startswith(prefix) or len(fetched) == len(prefix):
            continue
        key = fetched.removeprefix(prefix)
        return NamedObject(key, owner_of(key), _is_valid(key) and _spells(url, key))
    return None


def _is_valid(key: str) -> bool:
    try:
        check_key(key)
    except InvalidKey:
        return False
    return True


def _spells(url: str, key: str) -> bool:
    """Whether the URL's path ends with the (valid, so escape-free) key as stored:
    references are found by the key's text, so a spelling with escapes would hide one from
    the removal check."""
    try:
        path = urlsplit(url.strip()).path
    except ValueError:
        return False
    return path.endswith(f"/{key}")

"""Deterministic ids for images that arrive from legacy arrays without one."""

from __future__ import annotations

import uuid
from uuid import UUID

IMAGE_NAMESPACE = UUID("00751c30-29d4-5b71-ac55-1112b96d4b14")


def legacy_image_id(product_id: int, url: str, occurrence: int, attempt: int = 0) -> UUID:
    """Return the UUIDv3 (in IMAGE_NAMESPACE) of a legacy image.

    The name is the UTF-8 text ``<product_id>|<occurrence>|<url>`` (``attempt`` 0, every
    image of a legacy array) or ``<product_id>|<occurrence>#<attempt>|<url>`` (``attempt``
    >= 1, only when an earlier attempt is an id that another image of the product carries):
    ``product_id`` in decimal (no padding, ``-`` if negative), ``occurrence`` the 0-based
    decimal index of this URL among the product's accepted elements carrying exactly the
    same URL string, counted in normalised order, and ``url`` exactly as stored (not
    stripped). Two images of one product never share a name: (url, occurrence) is unique,
    and the ``#`` after the digits keeps the two forms apart. UUIDv3 (MD5) is deliberate so
    that PostgreSQL can recompute it with the built-in ``md5()`` and no extension.
    """
    # uuid3 rather than uuid5: PostgreSQL has md5() built in but no SHA-1 without pgcrypto.
    tried = f"#{attempt}" if attempt else ""
    return uuid.uuid3(IMAGE_NAMESPACE, f"{product_id}|{occurrence}{tried}|{url}")

"""Legacy image ids are UUIDv3 values that PostgreSQL can recompute with md5()."""

from __future__ import annotations

import hashlib
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from app.images.identity import IMAGE_NAMESPACE, legacy_image_id
from tests.images.strategies import product_ids, urls


def md5_uuid_as_sql_would(product_id: int, url: str, occurrence: int, attempt: int = 0) -> UUID:
    """Rebuild the id the way SQL will: md5(namespace bytes || name), then set version/variant."""
    tried = f"#{attempt}" if attempt else ""
    name = f"{product_id}|{occurrence}{tried}|{url}".encode()
    digest = bytearray(hashlib.md5(IMAGE_NAMESPACE.bytes + name, usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x30
    digest[8] = (digest[8] & 0x3F) | 0x80
    return UUID(bytes=bytes(digest))


def test_known_value_for_a_fixed_input() -> None:
    assert legacy_image_id(42, "https://cdn.example.com/p/1.jpg", 0) == UUID(
        "1b282bed-b7c0-3fc4-9ece-89bb1b661c7d"
    )
    assert legacy_image_id(42, "https://cdn.example.com/p/1.jpg", 1) == UUID(
        "89215723-6044-3471-8234-f021cf09ccd1"
    )


def test_is_a_version_3_uuid() -> None:
    assert legacy_image_id(1, "a.jpg", 0).version == 3


@given(product_ids, urls, st.integers(min_value=0, max_value=50))
def test_matches_the_md5_recipe_sql_will_use(product_id: int, url: str, occurrence: int) -> None:
    assert legacy_image_id(product_id, url, occurrence) == md5_uuid_as_sql_would(
        product_id, url, occurrence
    )


@given(product_ids, urls, st.integers(min_value=0, max_value=50), st.integers(1, 5))
def test_later_attempts_match_the_md5_recipe_too(
    product_id: int, url: str, occurrence: int, attempt: int
) -> None:
    assert legacy_image_id(product_id, url, occurrence, attempt) == md5_uuid_as_sql_would(
        product_id, url, occurrence, attempt
    )


def test_an_attempt_never_names_another_images_first_attempt() -> None:
    # "<p>|0#1|a" is no "<p>|<occurrence>|<url>" name: the '#' follows the digits.
    assert legacy_image_id(7, "a", 0, attempt=1) != legacy_image_id(7, "1|a", 0)
    assert legacy_image_id(7, "a", 0, attempt=1) != legacy_image_id(7, "a", 0)


@given(product_ids, urls, st.integers(min_value=0, max_value=50))
def test_every_part_of_the_name_matters(product_id: int, url: str, occurrence: int) -> None:
    image_id = legacy_image_id(product_id, url, occurrence)
    assert image_id != legacy_image_id(product_id + 1, url, occurrence)
    assert image_id != legacy_image_id(product_id, url, occurrence + 1)
    assert image_id != legacy_image_id(product_id, url + "x", occurrence)

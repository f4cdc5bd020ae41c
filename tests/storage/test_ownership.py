"""Whose stored object a key or an image URL names, whatever the URL's spelling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.storage.ownership import named_object, owner_of, tenant_prefix, upload_prefix

BASES = ("http://testserver/media", "https://cdn.example/img/")

tenants = st.integers(1, 10**12)
names = st.from_regex(r"[a-f0-9]{8}\.(jpg|png|webp)", fullmatch=True)


def test_uploads_are_stored_under_their_tenants_prefix() -> None:
    assert tenant_prefix(5) == "t5/"
    assert upload_prefix(5, 12) == "t5/p12"
    assert owner_of(f"{upload_prefix(5, 12)}/abc.jpg") == 5
    for bad in (0, -1, 10**18):
        with pytest.raises(ValueError, match="tenant id"):
            tenant_prefix(bad)


@pytest.mark.parametrize(
    ("key", "owner"),
    [
        ("t5/p1/a.jpg", 5),
        ("t5/a.jpg", 5),
        ("/t5//a.jpg", 5),  # empty segments, as a fetcher may collapse them
        ("t5", None),  # a name, not a folder
        ("t05/a.jpg", None),
        ("T5/a.jpg", None),
        ("t/p/a.jpg", None),
        ("seed42/t5/p1/0.jpg", None),  # seeded history: nobody's
        ("a.jpg", None),
    ],
)
def test_owner_of_a_key(key: str, owner: int | None) -> None:
    assert owner_of(key) == owner


@given(tenant=tenants, product=st.integers(1, 10**9), name=names)
def test_every_spelling_of_a_tenants_object_url_names_that_tenant(
    tenant: int, product: int, name: str
) -> None:
    key = f"t{tenant}/p{product}/{name}"
    exact = [
        f"http://testserver/media/{key}",
        f"HTTP://TestServer:80/media/{key}",
        f"https://testserver/media/{key}?v=2#top",
        f"https://cdn.example/img/{key}",
    ]
    for url in exact:
        assert named_object(url, BASES) is not None
        assert named_object(url, BASES) == named_object(exact[0], BASES), url
        assert named_object(url, BASES).is_exact, url  # type: ignore[union-attr]
    escaped = f"http://testserver/media/%74{tenant}/p{product}/{name}"
    doubled = f"http://testserver/media//t{tenant}/p{product}/{name}"
    for url in (escaped, doubled):
        named = named_object(url, BASES)
        assert named is not None and named.owner == tenant, url
        assert not named.is_exact, url


def test_urls_outside_every_base_name_no_object() -> None:
    assert named_object("http://elsewhere/media/t5/a.jpg", BASES) is None
    assert named_object("http://testserver/mediax/t5/a.jpg", BASES) is None
    assert named_object("http://testserver/media/", BASES) is None
    assert named_object("http://[::1", BASES) is None

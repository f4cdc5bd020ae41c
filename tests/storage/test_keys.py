"""Storage keys: only plain relative paths of safe characters, and URLs that map back to them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.storage.base import MAX_KEY_LENGTH, InvalidKey, check_key, key_for_url, url_for

BASE = "https://cdn.example/media"
# An independent statement of the rule: segments of safe characters, none starting with '.'.
VALID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")

segments = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,15}", fullmatch=True)
valid_keys = st.lists(segments, min_size=1, max_size=6).map("/".join)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../x",
        "a/../../x",
        "..",
        "/abs",
        "/",
        ".blobs/x",
        ".hidden",
        "a/.git/config",
        "a/./b",
        "a//b",
        "a/",
        "a b",
        "a\\b",
        "a?b",
        "caf\u00e9.jpg",
        "a\x00b",
        "x" * (MAX_KEY_LENGTH + 1),
    ],
)
def test_keys_that_could_escape_hide_or_break_a_url_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey) as refused:
        check_key(key)
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    "key", ["a", "t1/p2/0123abcd.jpg", "a-b_c.d/e..f", "x" * MAX_KEY_LENGTH, "v1.2/_x/-y"]
)
def test_plain_relative_keys_are_accepted_unchanged(key: str) -> None:
    assert check_key(key) == key


@given(st.text(alphabet="ab./-_\\ \x00\u00e9", max_size=20))
def test_a_key_is_accepted_exactly_when_it_is_a_plain_relative_path(key: str) -> None:
    expected = bool(VALID.fullmatch(key))
    try:
        accepted = check_key(key) == key
    except InvalidKey:
        accepted = False
    assert accepted is expected


@given(valid_keys)
def test_an_accepted_key_stays_inside_the_root(key: str) -> None:
    root = Path("/srv/media")
    assert (root / check_key(key)).resolve().is_relative_to(root)


@given(valid_keys, st.sampled_from([BASE, BASE + "/"]))
def test_url_for_and_key_for_url_round_trip(key: str, base: str) -> None:
    url = url_for(base, key)
    assert url == f"{BASE}/{key}"
    assert key_for_url(base, url) == key


@pytest.mark.parametrize(
    "url",
    [
        "https://elsewhere.example/media/a.jpg",
        "https://cdn.example/mediafoo/a.jpg",
        "https://cdn.example/media",
        "https://cdn.example/media/",
        "https://cdn.example/media/../secret",
        "https://cdn.example/media/.blobs/abc",
        "https://cdn.example/media/a.jpg?v=2",
        "http://cdn.example/media/a.jpg",
    ],
)
def test_urls_outside_the_base_or_without_a_valid_key_are_not_ours(url: str) -> None:
    assert key_for_url(BASE, url) is None

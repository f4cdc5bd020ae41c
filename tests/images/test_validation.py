"""Limits on alt text and tags, with messages that say what is allowed."""

from __future__ import annotations

import pytest
from hypothesis import given

from app.images.errors import InvalidImageField
from app.images.validation import (
    MAX_ALT_TEXT,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    validate_alt_text,
    validate_tags,
)
from tests.images.strategies import tag_tuples


def test_alt_text_may_be_none_or_up_to_the_limit() -> None:
    assert validate_alt_text(None) is None
    assert validate_alt_text("a" * MAX_ALT_TEXT) == "a" * MAX_ALT_TEXT


@pytest.mark.parametrize("alt_text", ["a" * (MAX_ALT_TEXT + 1), 5, ["x"]])
def test_bad_alt_text_is_rejected(alt_text: object) -> None:
    with pytest.raises(InvalidImageField) as raised:
        validate_alt_text(alt_text)
    assert raised.value.field == "alt_text"


def test_too_long_alt_text_message_states_the_limit() -> None:
    with pytest.raises(InvalidImageField, match=f"at most {MAX_ALT_TEXT}"):
        validate_alt_text("a" * (MAX_ALT_TEXT + 1))


@given(tag_tuples)
def test_valid_tags_pass_as_a_tuple(tags: tuple[str, ...]) -> None:
    assert validate_tags(list(tags)) == tags


@pytest.mark.parametrize(
    "tags",
    [
        "price-tag",
        ["Price-Tag"],
        ["price_tag"],
        ["-price"],
        ["price-"],
        ["price--tag"],
        ["price tag"],
        ["tag\n"],
        [""],
        ["a" * (MAX_TAG_LENGTH + 1)],
        [f"t{n}" for n in range(MAX_TAGS + 1)],
        ["dup", "dup"],
        [1],
    ],
)
def test_bad_tags_are_rejected(tags: object) -> None:
    with pytest.raises(InvalidImageField) as raised:
        validate_tags(tags)
    assert raised.value.field == "tags"


def test_limits_hold_at_the_boundary() -> None:
    assert validate_tags(["a" * MAX_TAG_LENGTH]) == ("a" * MAX_TAG_LENGTH,)
    assert len(validate_tags([f"t{n}" for n in range(MAX_TAGS)])) == MAX_TAGS

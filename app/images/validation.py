"""Limits on user-editable image fields, shared with the API layer."""

from __future__ import annotations

import re

from app.images.errors import InvalidImageField

MAX_ALT_TEXT = 500
MAX_TAGS = 20
MAX_TAG_LENGTH = 32
TAG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$", re.ASCII)


def validate_alt_text(alt_text: object) -> str | None:
    """Return the alt text if it is None or a string of at most MAX_ALT_TEXT characters."""
    if alt_text is None:
        return None
    if not isinstance(alt_text, str):
        raise InvalidImageField("alt_text", "must be a string or null")
    if len(alt_text) > MAX_ALT_TEXT:
        raise InvalidImageField(
            "alt_text",
            f"is {len(alt_text)} characters long; at most {MAX_ALT_TEXT} are allowed",
        )
    return alt_text


def validate_tags(tags: object) -> tuple[str, ...]:
    """Return the tags as a tuple if they are few, short, unique, lowercase-kebab strings."""
    if isinstance(tags, str) or not isinstance(tags, list | tuple):
        raise InvalidImageField("tags", "must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise InvalidImageField("tags", f"has {len(tags)} tags; at most {MAX_TAGS} are allowed")
    seen: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidImageField("tags", "must contain only strings")
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidImageField(
                "tags", f"tag {tag!r} is longer than {MAX_TAG_LENGTH} characters"
            )
        if not TAG_PATTERN.fullmatch(tag):
            raise InvalidImageField(
                "tags",
                f"tag {tag!r} is not allowed; use lowercase letters and digits in words "
                "joined by single hyphens, e.g. 'price-tag'",
            )
        if tag in seen:
            raise InvalidImageField("tags", f"tag {tag!r} appears more than once")
        seen.add(tag)
    return tuple(tags)

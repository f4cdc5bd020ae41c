"""Domain errors say which field was wrong and what is allowed."""

from __future__ import annotations

from uuid import UUID

from app.images.errors import (
    ImageError,
    ImageNotFound,
    InvalidImageField,
    NotAPermutation,
    TooManyImages,
)

A = UUID(int=1)
B = UUID(int=2)
C = UUID(int=3)


def test_all_errors_are_image_errors_with_field_and_message() -> None:
    errors: list[ImageError] = [
        ImageNotFound(A),
        NotAPermutation(missing=[A]),
        TooManyImages(12),
        InvalidImageField("alt_text", "is too long"),
    ]
    assert [error.field for error in errors] == ["image_id", "image_ids", "images", "alt_text"]
    assert all(isinstance(error, ImageError) and error.message for error in errors)


def test_not_a_permutation_names_each_problem_id() -> None:
    error = NotAPermutation(missing=[A], unknown=[B], duplicated=[C])
    assert f"missing: {A}" in error.message
    assert f"unknown: {B}" in error.message
    assert f"duplicated: {C}" in error.message
    assert (error.missing, error.unknown, error.duplicated) == (
        frozenset({A}),
        frozenset({B}),
        frozenset({C}),
    )


def test_too_many_images_states_the_limit() -> None:
    error = TooManyImages(12)
    assert error.limit == 12
    assert "at most 12" in error.message

"""Domain exceptions for product images, each naming the offending field."""

from __future__ import annotations

from collections.abc import Collection
from uuid import UUID

from app.core.errors import DomainError


class ImageError(DomainError):
    """Base of every image domain error: which field was wrong and why (a 422 whose type is
    the error's class name)."""

    validation = True

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.reason = type(self).__name__

    @property
    def detail(self) -> str:
        return self.message


class ImageNotFound(ImageError):
    """The product has no image with the given id."""

    status = 404
    validation = False

    def __init__(self, image_id: UUID) -> None:
        super().__init__("image_id", f"no image with id {image_id} on this product")
        self.image_id = image_id


def _listed(ids: Collection[UUID]) -> str:
    return ", ".join(sorted(str(i) for i in ids))


class NotAPermutation(ImageError):
    """A new order is not exactly the product's current image ids, each once."""

    def __init__(
        self,
        *,
        missing: Collection[UUID] = (),
        unknown: Collection[UUID] = (),
        duplicated: Collection[UUID] = (),
    ) -> None:
        problems = []
        if missing:
            problems.append(f"missing: {_listed(missing)}")
        if unknown:
            problems.append(f"unknown: {_listed(unknown)}")
        if duplicated:
            problems.append(f"duplicated: {_listed(duplicated)}")
        super().__init__(
            "image_ids",
            "must list every current image id exactly once; " + "; ".join(problems),
        )
        self.missing = frozenset(missing)
        self.unknown = frozenset(unknown)
        self.duplicated = frozenset(duplicated)


class TooManyImages(ImageError):
    """Adding an image would exceed the per-product limit."""

    def __init__(self, limit: int) -> None:
        super().__init__("images", f"a product may have at most {limit} images")
        self.limit = limit


class InvalidImageField(ImageError):
    """A field of an image has a value that is not allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)

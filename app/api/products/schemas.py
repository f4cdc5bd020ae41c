"""Request and response bodies of the products API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_BIGINT = 2**63 - 1


def _no_nul(value: str) -> str:
    # PostgreSQL text (and jsonb) cannot hold NUL: refuse it here as a 422, not a 500 later.
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    return value


NoNul = AfterValidator(_no_nul)

ProductIdPath = Annotated[int, Path(gt=0, le=MAX_BIGINT, description="The product's id")]
Title = Annotated[str, Field(min_length=1, max_length=200), NoNul]
Description = Annotated[str, Field(max_length=10_000), NoNul]
Brand = Annotated[str, Field(min_length=1, max_length=100), NoNul]
Price = Annotated[
    Decimal, Field(ge=0, le=Decimal("9999999999.99"), max_digits=12, decimal_places=2)
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
Status = Literal["draft", "active", "sold", "archived"]
Source = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class ProductCreate(BaseModel):
    """A new product (images are added through the images API)."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    brand: Brand | None = None
    price: Price
    currency: Currency = "EUR"
    status: Status = "draft"
    source: Source = "stoflow"


class ProductUpdate(BaseModel):
    """A partial update: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    brand: Brand | None = None
    price: Price | None = None
    currency: Currency | None = None
    status: Status | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> ProductUpdate:
        for name in ("title", "description", "price", "currency", "status"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null (omit it to leave it unchanged)")
        return self


class ProductOut(BaseModel):
    """A product as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str
    brand: str | None
    price: Decimal
    currency: str
    status: str
    source: str
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    """One keyset page: pass `next_after` as `after` to get the next one."""

    items: list[ProductOut]
    next_after: int | None


class ErrorOut(BaseModel):
    """Every 4xx/5xx body: what was wrong, and with which field when there is one."""

    detail: str
    field: str | None = None

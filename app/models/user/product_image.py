"""`user_<id>.product_images`: one row per image, the representation the migration moves to."""

from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class ProductImage(Base):
    """An image of a product; `is_label` marks an internal price-tag photo."""

    __tablename__ = "product_images"
    __table_args__ = (
        # Deferrable so a reorder can swap two orders inside one transaction.
        UniqueConstraint(
            "product_id", "order", name="uq_product_images_product_order", deferrable=True
        ),
        Index(
            "uq_product_images_one_label",
            "product_id",
            unique=True,
            postgresql_where=text("is_label"),
        ),
        Index("ix_product_images_tags", "tags", postgresql_using="gin"),
        CheckConstraint('"order" >= 0', name="order_not_negative"),
        CheckConstraint("file_size >= 0", name="file_size_not_negative"),
        CheckConstraint("width > 0 AND height > 0", name="dimensions_positive"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("products.id", ondelete="CASCADE")
    )
    url: Mapped[str] = mapped_column(Text)
    order: Mapped[int] = mapped_column(Integer)
    is_label: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    alt_text: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    mime_type: Mapped[str | None] = mapped_column(Text)
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RejectedImageElement(Base):
    """A legacy JSONB element that cannot be an image, kept with its reason ("0 loss" report)."""

    __tablename__ = "rejected_image_elements"
    __table_args__ = (
        # One row per element: two different elements rejected at the same position (a
        # write outside the dual-write put a new one there) are both kept.
        Index(
            "uq_rejected_image_elements_element",
            "product_id",
            "position",
            text("md5(coalesce(raw::text, ''))"),
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign key on purpose: the report outlives a deleted product.
    product_id: Mapped[int] = mapped_column(BigInteger)
    # Index in the raw array; -1 when the whole column is not an array.
    position: Mapped[int] = mapped_column(Integer)
    raw: Mapped[object] = mapped_column(JSONB, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    found_by: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ShadowMismatch(Base):
    """One difference a shadow read found between the JSONB and the table (bounded sample)."""

    __tablename__ = "shadow_mismatches"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # No foreign key: the sample outlives a deleted product, like the rejection report.
    product_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    read_path: Mapped[str] = mapped_column(Text)
    jsonb_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    table_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    jsonb_value: Mapped[object] = mapped_column(JSONB, nullable=True)
    table_value: Mapped[object] = mapped_column(JSONB)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

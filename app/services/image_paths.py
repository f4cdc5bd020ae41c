"""Which representations a tenant's image reads and writes use: the one seam the flags replace.

Until the feature flags land (issue 5), a tenant dual-writes as soon as its schema has the
table (expand migration applied) and reads from the JSONB.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session

from app.repositories import product_images


class ReadPath(StrEnum):
    """Where an image read was answered from (`X-Images-Read-Path`)."""

    JSONB = "jsonb"
    TABLE = "table"


class ImagePaths(Protocol):
    """Decides per tenant, inside the caller's transaction."""

    def writes_table(self, session: Session) -> bool:
        """Write the table as well as the JSONB."""

    def read_path(self, session: Session) -> ReadPath:
        """Where reads come from."""


class SchemaImagePaths:
    """Dual-write wherever the table exists; read the JSONB."""

    def writes_table(self, session: Session) -> bool:
        """True once the tenant's schema is expanded."""
        return product_images.table_exists(session)

    def read_path(self, session: Session) -> ReadPath:
        """Always the JSONB before the flags issue."""
        return ReadPath.JSONB

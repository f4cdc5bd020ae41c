"""Label overrides: a CSV (tenant, product_id, url, is_label) an operator writes to correct
the label rule, applied through the dual-write service so both representations agree."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from app.core.database import unit_of_work
from app.images import ImageError
from app.services.product_image_service import ProductImageService
from app.services.product_service import ProductNotFound

COLUMNS = ("tenant", "product_id", "url", "is_label")
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


class OverridesFileInvalid(ValueError):
    """The file cannot be read as overrides; nothing was applied."""


@dataclass(frozen=True)
class LabelOverride:
    """One line of the file."""

    line: int
    tenant_id: int
    product_id: int
    url: str
    is_label: bool


@dataclass(frozen=True)
class OverrideOutcome:
    """What happened to one line."""

    override: LabelOverride
    applied: bool
    reason: str = ""


def read_overrides(path: Path) -> list[LabelOverride]:
    """Parse and validate the whole file first: one bad line refuses the file."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise OverridesFileInvalid(
                    f"{path}: the header must be {','.join(COLUMNS)}, got "
                    f"{','.join(reader.fieldnames or ())}"
                )
            return [_parse(row, reader.line_num) for row in reader]
    except OSError as exc:
        raise OverridesFileInvalid(f"{path}: {exc.strerror}") from None


def _parse(row: dict[str, str], line: int) -> LabelOverride:
    try:
        tenant_id, product_id = int(row["tenant"]), int(row["product_id"])
    except ValueError:
        raise OverridesFileInvalid(f"line {line}: tenant and product_id must be integers") from None
    flag = row["is_label"].strip().lower()
    if flag not in TRUE | FALSE:
        raise OverridesFileInvalid(f"line {line}: is_label must be true or false, got {flag!r}")
    if tenant_id < 1 or product_id < 1 or not row["url"]:
        raise OverridesFileInvalid(f"line {line}: positive ids and a url are required")
    return LabelOverride(line, tenant_id, product_id, row["url"], flag in TRUE)


def apply_overrides(
    engine: Engine, overrides: Sequence[LabelOverride], service: ProductImageService
) -> list[OverrideOutcome]:
    """Apply each line in its own transaction, under the product's row lock."""
    outcomes = []
    for override in overrides:
        try:
            with unit_of_work(engine, override.tenant_id) as session:
                images = service.list_images(session, product_id=override.product_id).images
                matches = [image for image in images if image.url == override.url]
                if not matches:
                    outcomes.append(OverrideOutcome(override, False, "no image with this url"))
                    continue
                # A legacy product can list one url several times and the rule labels only
                # the last copy: "not a label" unmarks every copy, "label" marks the first.
                for match in matches if not override.is_label else matches[:1]:
                    service.set_label_flag(
                        session,
                        product_id=override.product_id,
                        image_id=match.id,
                        is_label=override.is_label,
                        now=datetime.now(UTC),
                    )
            outcomes.append(OverrideOutcome(override, True))
        except (ProductNotFound, ImageError) as exc:
            outcomes.append(OverrideOutcome(override, False, str(exc)))
    return outcomes

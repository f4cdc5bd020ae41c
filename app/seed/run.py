"""`python -m app seed`: create the planned tenants, store their pictures, insert products."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import JSON, Engine, func, insert, select

from app.core.database import make_engine, resolve_database_url, unit_of_work
from app.core.settings import Settings
from app.models import Product, User
from app.seed.pictures import Picture, picture_pool
from app.seed.plan import SeedPlan, build_plan
from app.services.tenant_service import create_tenant
from app.storage.base import Storage
from app.storage.factory import build_storage


class SeedRefused(RuntimeError):
    """The seed would duplicate data that is already there."""


@dataclass(frozen=True)
class SeedSummary:
    """What the seed created (or found, when it had nothing to do)."""

    tenant_ids: tuple[int, ...]
    first_tenant_id: int
    sample_product_id: int
    products: int = 0
    labelled_products: int = 0
    images: int = 0
    stored_objects: int = 0
    dirty: dict[str, int] = field(default_factory=dict)
    created: bool = True


def seed_database(
    settings: Settings,
    *,
    seed: int,
    tenants: int,
    products: int,
    labels: int,
    if_empty: bool,
    console: Console,
    engine: Engine | None = None,
    storage: Storage | None = None,
) -> SeedSummary:
    """Create the demo data (or, with `if_empty`, leave an existing database alone)."""
    own_engine = engine is None
    engine = engine or make_engine(resolve_database_url(settings), pool_size=2)
    storage = storage or build_storage(settings)
    try:
        existing = _existing(engine)
        if existing is not None and if_empty:
            console.print("tenants already exist: seed skipped")
            return existing
        photos, labels_pool = picture_pool(seed)
        plan = build_plan(
            seed=seed,
            tenants=tenants,
            products=products,
            labels=labels,
            url_for=storage.url_for,
            photo_extensions=[p.extension for p in photos],
            label_extensions=[p.extension for p in labels_pool],
        )
        _refuse_duplicates(engine, plan)
        tenant_ids, sample = _create(engine, storage, plan, photos, labels_pool, console)
    finally:
        if own_engine:
            engine.dispose()
    summary = SeedSummary(
        tenant_ids=tuple(tenant_ids),
        first_tenant_id=tenant_ids[0],
        sample_product_id=sample,
        products=plan.products,
        labelled_products=plan.labelled,
        images=plan.elements,
        stored_objects=plan.stored_objects,
        dirty=dict(plan.dirty),
    )
    _print(console, summary)
    return summary


def _existing(engine: Engine) -> SeedSummary | None:
    with unit_of_work(engine) as session:
        first = session.scalar(select(func.min(User.id)))
    if first is None:
        return None
    with unit_of_work(engine, int(first)) as session:
        sample = session.scalar(select(func.min(Product.id))) or 0
    return SeedSummary(
        tenant_ids=(int(first),),
        first_tenant_id=int(first),
        sample_product_id=int(sample),
        created=False,
    )


def _refuse_duplicates(engine: Engine, plan: SeedPlan) -> None:
    emails = [tenant.email for tenant in plan.tenants]
    with unit_of_work(engine) as session:
        taken = session.scalars(select(User.email).where(User.email.in_(emails))).all()
    if taken:
        raise SeedRefused(
            f"seed {plan.seed} was already applied ({taken[0]} exists): use another --seed"
        )


def _create(
    engine: Engine,
    storage: Storage,
    plan: SeedPlan,
    photos: tuple[Picture, ...],
    labels: tuple[Picture, ...],
    console: Console,
) -> tuple[list[int], int]:
    tenant_ids: list[int] = []
    sample = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        shops = progress.add_task("tenants", total=len(plan.tenants))
        objects = progress.add_task("objects", total=plan.stored_objects)
        for tenant in plan.tenants:
            user = create_tenant(engine, email=tenant.email, display_name=tenant.display_name)
            tenant_ids.append(user.id)
            for product in tenant.products:
                for stored in product.objects:
                    picture = (labels if stored.is_label else photos)[stored.picture]
                    if not storage.exists(stored.key):
                        storage.put(stored.key, picture.data, content_type=picture.mime_type)
                progress.update(objects, advance=len(product.objects))
            rows = [
                {
                    "title": p.title,
                    "description": p.description,
                    "brand": p.brand,
                    "price": p.price,
                    "currency": "EUR",
                    "status": p.status,
                    "source": p.source,
                    # JSON.NULL: a JSON null value, not SQL NULL (the column is NOT NULL).
                    "images": JSON.NULL if p.images is None else p.images,
                    "created_at": p.created_at,
                    "updated_at": p.created_at,
                }
                for p in tenant.products
            ]
            with unit_of_work(engine, user.id) as session:
                if rows:
                    session.execute(insert(Product), rows)
                if not sample:
                    sample = int(session.scalar(select(func.min(Product.id))) or 0)
            progress.update(shops, advance=1)
    return tenant_ids, sample


def _print(console: Console, summary: SeedSummary) -> None:
    table = Table(title="seeded", show_header=False)
    table.add_row(
        "tenants",
        f"{len(summary.tenant_ids)} (ids {summary.tenant_ids[0]}..{summary.tenant_ids[-1]})",
    )
    table.add_row("products", str(summary.products))
    table.add_row("pythonApiWOO products with a label last", str(summary.labelled_products))
    table.add_row("images (JSONB elements)", str(summary.images))
    table.add_row("stored objects", str(summary.stored_objects))
    for case, count in summary.dirty.items():
        table.add_row(f"dirty: {case}", str(count))
    console.print(table)

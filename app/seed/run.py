"""`python -m app seed`: create the planned tenants, store their pictures, insert products."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import JSON, Engine, func, insert, select, text

from app.core.database import make_engine, resolve_database_url, unit_of_work
from app.core.settings import Settings
from app.models import Product, User
from app.repositories import migration_state
from app.seed.pictures import Picture, pool_specs, render
from app.seed.plan import PlannedObject, PlannedProduct, PlannedTenant, SeedPlan, build_plan
from app.services.tenant_service import create_tenant
from app.storage.base import Storage
from app.storage.factory import build_storage

# Parallel puts: little gain on a local disk, most of the run time saved on S3/R2.
STORE_WORKERS = 8


class SeedRefused(RuntimeError):
    """The seed would duplicate data that is already there."""


@dataclass(frozen=True)
class SeedSummary:
    """What the seed created, or what it found when `if_empty` left the database alone."""

    tenant_ids: tuple[int, ...]
    first_tenant_id: int
    sample_product_id: int  # the first tenant's smallest product id (0 when it has none)
    created: bool = True
    tenants: int = 0
    products: int = 0
    labelled_products: int = 0  # pythonApiWOO products, each with a label last
    images: int = 0  # elements of the `images` arrays
    stored_objects: int = 0  # objects the plan stores (some were maybe already there)
    objects_already_present: int = 0
    dirty: dict[str, int] = field(default_factory=dict)  # products per dirty case


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
    """Create the demo data; refuse a seed already applied; with `if_empty`, skip if users exist."""
    own_engine = engine is None
    engine = engine or make_engine(resolve_database_url(settings), pool_size=2)
    try:
        _refuse_if_not_migrated(engine)
        if if_empty:
            existing = _existing(engine)
            if existing is not None:
                console.print(
                    f"tenants already exist (first: {existing.first_tenant_id}): nothing seeded"
                )
                return existing
        storage = storage or build_storage(settings)
        photo_specs, label_specs = pool_specs(seed)
        plan = build_plan(
            seed=seed,
            tenants=tenants,
            products=products,
            labels=labels,
            url_for=storage.url_for,
            photo_pool=photo_specs,
            label_pool=label_specs,
        )
        _refuse_if_applied(engine, plan)
        photos = tuple(render(spec) for spec in photo_specs)
        label_pictures = tuple(render(spec) for spec in label_specs)
        summary = _apply(engine, storage, plan, photos, label_pictures, console)
    finally:
        if own_engine:
            engine.dispose()
    _print(console, summary)
    return summary


def _existing(engine: Engine) -> SeedSummary | None:
    """The state when some user exists: the smallest user id and its smallest product id."""
    with unit_of_work(engine) as session:
        first = session.scalar(select(func.min(User.id)))
        users = int(session.scalar(select(func.count()).select_from(User)) or 0)
    if first is None:
        return None
    with unit_of_work(engine, int(first)) as session:
        sample = session.scalar(select(func.min(Product.id)))
    return SeedSummary(
        tenant_ids=(int(first),),
        first_tenant_id=int(first),
        sample_product_id=int(sample or 0),
        created=False,
        tenants=users,
    )


def _refuse_if_not_migrated(engine: Engine) -> None:
    with engine.connect() as connection:
        users = connection.execute(text("SELECT to_regclass('public.users')")).scalar()
    if users is None:
        raise SeedRefused(
            "the database is not migrated: run `python -m app migrate` (or "
            "`alembic upgrade head`) first"
        )


def _refuse_if_applied(engine: Engine, plan: SeedPlan) -> None:
    emails = [tenant.email for tenant in plan.tenants]
    with unit_of_work(engine) as session:
        taken = session.scalars(select(User.email).where(User.email.in_(emails))).all()
    if taken:
        raise SeedRefused(
            f"seed {plan.seed} was already applied: {len(taken)} of its tenants exist"
            f" (e.g. {sorted(taken)[0]}); run with another --seed, or --if-empty to skip"
        )


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    ) as progress:
        yield progress


def _apply(
    engine: Engine,
    storage: Storage,
    plan: SeedPlan,
    photos: Sequence[Picture],
    labels: Sequence[Picture],
    console: Console,
) -> SeedSummary:
    tenant_ids: list[int] = []
    sample = 0
    present = 0
    with _progress(console) as progress, ThreadPoolExecutor(STORE_WORKERS) as pool:
        shops = progress.add_task("tenants", total=len(plan.tenants))
        stored = progress.add_task("objects", total=plan.stored_objects)
        for tenant in plan.tenants:
            user = create_tenant(engine, email=tenant.email, display_name=tenant.display_name)
            tenant_ids.append(user.id)

            def store(planned: PlannedObject) -> bool:
                picture = (labels if planned.is_label else photos)[planned.picture]
                if storage.exists(planned.key):
                    return False
                storage.put(planned.key, picture.data, content_type=picture.spec.mime_type)
                return True

            # Objects first: a product row never points at an object meant to exist but absent.
            objects = [o for product in tenant.products for o in product.objects]
            for was_put in pool.map(store, objects):
                present += not was_put
                progress.advance(stored)
            first_product = _insert_products(engine, user.id, tenant)
            if len(tenant_ids) == 1:
                sample = first_product
            progress.advance(shops)
    return SeedSummary(
        tenant_ids=tuple(tenant_ids),
        first_tenant_id=tenant_ids[0],
        sample_product_id=sample,
        tenants=len(tenant_ids),
        products=plan.products,
        labelled_products=plan.labelled,
        images=plan.images,
        stored_objects=plan.stored_objects,
        objects_already_present=present,
        dirty=dict(plan.dirty),
    )


def _insert_products(engine: Engine, tenant_id: int, tenant: PlannedTenant) -> int:
    """Insert a tenant's products in one transaction (one bulk INSERT); its smallest id."""
    rows = [_row(product) for product in tenant.products]
    with unit_of_work(engine, tenant_id) as session:
        # The brief's history, as the old backend left it: not drift (the safety net skips).
        migration_state.declare_writer(session, "history")
        if rows:
            session.execute(insert(Product), rows)
        return int(session.scalar(select(func.min(Product.id))) or 0)


def _row(product: PlannedProduct) -> dict[str, Any]:
    return {
        "title": product.title,
        "description": product.description,
        "brand": product.brand,
        "price": product.price,
        "currency": "EUR",
        "status": product.status,
        "source": product.source,
        # JSON.NULL stores the JSON value null; plain None could become SQL NULL, which the
        # NOT NULL column refuses.
        "images": JSON.NULL if product.images is None else product.images,
        "created_at": product.created_at,
        "updated_at": product.updated_at,
    }


def _print(console: Console, summary: SeedSummary) -> None:
    table = Table(title=f"seeded {summary.tenants} tenants", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    ids = summary.tenant_ids
    table.add_row("tenants", f"{summary.tenants} (ids {ids[0]}..{ids[-1]})")
    table.add_row("products", f"{summary.products:,}")
    table.add_row("pythonApiWOO products with a label last", f"{summary.labelled_products:,}")
    table.add_row("images (JSONB array elements)", f"{summary.images:,}")
    table.add_row(
        "stored objects",
        f"{summary.stored_objects:,} ({summary.objects_already_present:,} already there)",
    )
    for case, count in summary.dirty.items():
        table.add_row(f"dirty: {case}", f"{count:,}")
    table.add_row(
        "sample product", f"tenant {summary.first_tenant_id}, product {summary.sample_product_id}"
    )
    console.print(table)

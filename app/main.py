"""The FastAPI application: wiring of settings, engine, storage, routers and error handlers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import structlog
from fastapi import FastAPI
from sqlalchemy import Engine

from app.api import health
from app.api.admin import migration as admin_migration
from app.api.admin import tenants as admin_tenants
from app.api.body_limits import BodyLimitMiddleware, BodyLimits, bearer_problem
from app.api.errors import install_error_handlers
from app.api.media import MediaFiles
from app.api.middleware import RequestContextMiddleware
from app.api.products import images as product_images
from app.api.products import marketplaces as product_marketplaces
from app.api.products import routes as products
from app.composition import build
from app.console import routes as console
from app.core.logging import configure_logging
from app.core.settings import Settings, get_settings
from app.storage.local import LocalStorage

log = structlog.get_logger("app")


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the app; tests pass their own settings and engine."""
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)
    services = build(settings, engine)

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        yield
        console_rows = getattr(application.state, "console_rows", None)
        # A console refresh in flight still uses the engine; bounded, so a refresh stuck
        # on a lock cannot hold the shutdown.
        if console_rows is not None and not await asyncio.to_thread(console_rows.wait, 10):
            log.warning("console.refresh_still_running_at_shutdown")
        services.close()

    app = FastAPI(
        title="Product images",
        summary="Products and their images, mid-migration from JSONB to product_images.",
        version="0.1.0",
        lifespan=lifespan,
        # SERVE_API_DOCS (default off with APP_ENV=production): the schema maps the attack
        # surface for anyone.
        openapi_url="/openapi.json" if settings.serve_api_docs else None,
        docs_url="/docs" if settings.serve_api_docs else None,
        redoc_url="/redoc" if settings.serve_api_docs else None,
    )
    # One Services (app/composition.py) per app, and nothing else of the app's parts on its
    # state: request handlers reach it through the typed dependencies of app/api/deps.py.
    app.state.services = services
    # Added first, so inside RequestContextMiddleware: a refused body is logged with its id.
    app.add_middleware(
        BodyLimitMiddleware,
        limits=BodyLimits.of(
            max_upload_bytes=settings.max_upload_bytes,
            max_json_bytes=settings.max_json_body_bytes,
            max_form_bytes=settings.max_form_body_bytes,
        ),
        check_token=partial(bearer_problem, settings.jwt_secret),
    )
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    if settings.serve_metrics:
        app.include_router(health.metrics_router)
    app.include_router(products.router)
    app.include_router(product_images.router)
    app.include_router(product_marketplaces.router)
    console.install(app)
    app.include_router(admin_tenants.router)
    app.include_router(admin_migration.router)
    storage = services.storage
    if isinstance(storage, LocalStorage):
        storage.root.mkdir(parents=True, exist_ok=True)
        app.mount("/media", MediaFiles(directory=storage.root), name="media")
    return app

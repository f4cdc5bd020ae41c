"""Domain errors to HTTP errors, in one place (routes never build error responses)."""

from __future__ import annotations

import json
import math
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.api.deps import Forbidden, NotAuthenticated
from app.api.products.schemas import ErrorOut
from app.images import ImageError, ImageNotFound
from app.marketplaces import NoPublishablePhoto
from app.services.file_service import UploadRejected
from app.services.media_gc import MediaQuotaExceeded
from app.services.product_image_service import LabelNotFound
from app.services.product_service import ProductNotFound
from app.services.tenant_service import EmailTaken, TenantNotFound
from app.storage.base import StorageUnavailable
from backfill.tenants import UnknownTenants

log = structlog.get_logger(__name__)

# Declared on every route so the OpenAPI schema lists the errors a client can meet.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not valid JSON"},
    401: {"model": ErrorOut, "description": "Missing, expired or forged token"},
    403: {"model": ErrorOut, "description": "Token without the needed role"},
    404: {"model": ErrorOut, "description": "Unknown tenant or resource"},
    503: {"model": ErrorOut, "description": "Database unavailable; retry later"},
}


# Every error body goes through `encodable`: a message may quote what the client sent (an
# upload's file name, decoded with the charset the client named, may hold a lone surrogate).
def _validation_error(status: int, field: str, message: str, kind: str) -> JSONResponse:
    # Same shape as FastAPI's own 422 (HTTPValidationError), so clients parse one format.
    return JSONResponse(
        status_code=status,
        content=encodable({"detail": [{"loc": ["body", field], "msg": message, "type": kind}]}),
    )


def _error(status: int, detail: str, field: str | None = None, **headers: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content=encodable({"detail": detail, "field": field}),
        headers=headers or None,
    )


def encodable(value: Any) -> Any:
    """`value` made encodable as strict JSON in UTF-8: a lone surrogate (valid in a JSON
    string, `"\\ud800"`) is written as its escape, `\\ud800`, and a non-finite number
    (`Infinity`, `NaN`, `1e400`) as a string, instead of failing the response."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)  # "Infinity", "-Infinity" or "NaN"
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encodable(item) for item in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping from domain exceptions to status codes."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 (same shape), made encodable: its echo of a lone surrogate or of
        # Infinity was a 500 while rendering the 422. Field and reason are kept.
        return JSONResponse(
            status_code=422, content={"detail": encodable(jsonable_encoder(exc.errors()))}
        )

    @app.exception_handler(NotAuthenticated)
    async def _unauthenticated(_: Request, exc: NotAuthenticated) -> JSONResponse:
        return _error(401, str(exc), **{"WWW-Authenticate": "Bearer"})

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return _error(403, str(exc))

    @app.exception_handler(TenantNotFound)
    async def _no_tenant(_: Request, exc: TenantNotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(ProductNotFound)
    async def _no_product(_: Request, exc: ProductNotFound) -> JSONResponse:
        return _error(404, str(exc), field="product_id")

    @app.exception_handler(ImageError)
    async def _image_error(_: Request, exc: ImageError) -> JSONResponse:
        if isinstance(exc, ImageNotFound):
            return _error(404, exc.message, field=exc.field)
        return _validation_error(422, exc.field, exc.message, type(exc).__name__)

    @app.exception_handler(LabelNotFound)
    async def _no_label(_: Request, exc: LabelNotFound) -> JSONResponse:
        return _error(404, str(exc), field="label")

    @app.exception_handler(NoPublishablePhoto)
    async def _nothing_to_publish(_: Request, exc: NoPublishablePhoto) -> JSONResponse:
        return JSONResponse(
            status_code=409,
            content=encodable(
                {
                    "detail": str(exc),
                    "field": exc.field,
                    "excluded": [vars(e) for e in exc.excluded],
                }
            ),
        )

    @app.exception_handler(UploadRejected)
    async def _upload_rejected(_: Request, exc: UploadRejected) -> JSONResponse:
        status = 413 if exc.reason == "too_large" else 422
        return _validation_error(status, exc.field, str(exc), exc.reason)

    @app.exception_handler(StorageUnavailable)
    async def _storage_down(_: Request, exc: StorageUnavailable) -> JSONResponse:
        log.error("storage.unavailable", error=str(exc))
        return _error(503, f"image storage unavailable: {exc}", **{"Retry-After": "5"})

    @app.exception_handler(UnknownTenants)
    async def _unknown_tenants(_: Request, exc: UnknownTenants) -> JSONResponse:
        return _validation_error(422, exc.field, str(exc), "unknown_tenant")

    @app.exception_handler(EmailTaken)
    async def _email_taken(_: Request, exc: EmailTaken) -> JSONResponse:
        return _error(409, str(exc), field="email")

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # A connection that cannot be made or was lost: the client may retry.
        if isinstance(exc, DBAPIError) and not _is_connection_problem(exc):
            raise exc
        log.error("database.unavailable", error=str(exc).splitlines()[0])
        return _error(503, "database unavailable, retry later", **{"Retry-After": "2"})

    @app.exception_handler(MediaQuotaExceeded)
    async def _quota_exceeded(_: Request, exc: MediaQuotaExceeded) -> JSONResponse:
        return _validation_error(exc.status_code, exc.field, str(exc), exc.reason)


def _is_connection_problem(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    # No SQLSTATE: the connection itself failed; class 08 = connection exception;
    # 57P01-57P03 = admin shutdown, crash shutdown, cannot connect now.
    return (
        exc.connection_invalidated
        or sqlstate is None
        or sqlstate.startswith("08")
        or sqlstate in {"57P01", "57P02", "57P03"}
    )

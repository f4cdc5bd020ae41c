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

from app.api.products.schemas import ErrorOut
from app.core.errors import DomainError

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
    """Register the mapping to status codes: FastAPI's validation errors, every domain error
    (one handler: each says its status and field, app/core/errors.py), and the database
    being out of reach."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 (same shape), made encodable: its echo of a lone surrogate or of
        # Infinity was a 500 while rendering the 422. Field and reason are kept.
        return JSONResponse(
            status_code=422, content={"detail": encodable(jsonable_encoder(exc.errors()))}
        )

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return domain_error_response(exc)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # A connection that cannot be made or was lost: the client may retry.
        if isinstance(exc, DBAPIError) and not _is_connection_problem(exc):
            raise exc
        log.error("database.unavailable", error=str(exc).splitlines()[0])
        return _error(503, "database unavailable, retry later", **{"Retry-After": "2"})


def domain_error_response(exc: DomainError) -> JSONResponse:
    """The answer to a domain error: its status, its field and why, in the validation shape
    when it is one; Retry-After and WWW-Authenticate when it names them."""
    if exc.status >= 500:
        log.error(exc.log_event, error=str(exc), kind=type(exc).__name__)
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.challenge is not None:
        headers["WWW-Authenticate"] = exc.challenge
    if exc.validation:
        response = _validation_error(exc.status, exc.field or "body", exc.detail, exc.reason)
        response.headers.update(headers)
        return response
    if exc.extra():
        return JSONResponse(
            status_code=exc.status,
            content=encodable({"detail": exc.detail, "field": exc.field, **exc.extra()}),
            headers=headers or None,
        )
    return _error(exc.status, exc.detail, exc.field, **headers)


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

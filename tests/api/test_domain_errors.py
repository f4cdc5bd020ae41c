"""One handler answers every domain error (app/core/errors.py): each error class the API can
meet says its status and field, and the answer has the shape its kind promises, encodable
whatever the message quotes."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

import app
import backfill
from app.api.errors import domain_error_response, install_error_handlers
from app.core.errors import DomainError


def _every_domain_error() -> set[type[DomainError]]:
    for package in (app, backfill):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            # Not the entry points: app.asgi builds an app (and its engine) when imported.
            if not module.name.endswith((".__main__", ".asgi")):
                importlib.import_module(module.name)
    found: set[type[DomainError]] = set()
    pending = [DomainError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub)
            pending.append(sub)
    return found


def test_the_app_has_one_handler_for_every_domain_error() -> None:
    application = FastAPI()
    install_error_handlers(application)
    defaults = set(FastAPI().exception_handlers)  # HTTPException and the validation errors
    added = {RequestValidationError, DomainError, OperationalError, PoolTimeout}
    assert set(application.exception_handlers) == defaults | added


def test_every_domain_error_class_names_a_status_a_caller_can_act_on() -> None:
    classes = _every_domain_error()
    names = {c.__name__ for c in classes}
    # The errors the routes used to map one by one, each now a DomainError.
    assert {
        "NotAuthenticated",
        "Forbidden",
        "TenantNotFound",
        "ProductNotFound",
        "ImageError",
        "ImageNotFound",
        "LabelNotFound",
        "NoPublishablePhoto",
        "UploadRejected",
        "StorageUnavailable",
        "UnknownTenants",
        "EmailTaken",
        "MediaQuotaExceeded",
    } <= names
    for error in classes:
        assert 400 <= error.status < 600, error
        assert not error.validation or error.status in (413, 422), error


class _Plain(DomainError):
    status = 409
    field = "thing"


class _Shaped(DomainError):
    status = 422
    field = "thing"
    reason = "bad_thing"
    validation = True


class _Unavailable(DomainError):
    status = 503
    retry_after = 7


class _Extra(DomainError):
    status = 409

    def extra(self) -> dict[str, Any]:
        return {"excluded": [str(self)]}


@given(message=st.text())
def test_each_kind_renders_its_shape_and_any_message_is_encodable(message: str) -> None:
    plain = domain_error_response(_Plain(message))
    assert plain.status_code == 409
    body = json.loads(plain.body)
    assert body["field"] == "thing" and isinstance(body["detail"], str)

    shaped = json.loads(domain_error_response(_Shaped(message)).body)
    ((entry,),) = [shaped["detail"]]
    assert entry["loc"] == ["body", "thing"] and entry["type"] == "bad_thing"

    unavailable = domain_error_response(_Unavailable(message))
    assert (unavailable.status_code, unavailable.headers["retry-after"]) == (503, "7")

    extra = json.loads(domain_error_response(_Extra(message)).body)
    assert set(extra) == {"detail", "field", "excluded"}

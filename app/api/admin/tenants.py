"""`/api/admin/tenants`: create a tenant (user + migrated schema), list them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import select

from app.api.deps import AdminPrincipal, AdminSession, EngineDep, services_of
from app.api.errors import ERROR_RESPONSES
from app.api.products.schemas import NoNul
from app.models import User
from app.services.tenant_service import create_tenant

router = APIRouter(prefix="/api/admin/tenants", tags=["admin"], responses=ERROR_RESPONSES)


class TenantCreate(BaseModel):
    """A new tenant's user."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    display_name: Annotated[str, Field(max_length=200), NoNul] | None = None


class TenantOut(BaseModel):
    """A tenant: its user and schema."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    display_name: str | None
    created_at: datetime
    schema_name: str


def _out(user: User) -> TenantOut:
    return TenantOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        created_at=user.created_at,
        schema_name=f"user_{user.id}",
    )


@router.get("", response_model=list[TenantOut])
def list_tenants(session: AdminSession) -> list[TenantOut]:
    """Every tenant, by id."""
    return [_out(user) for user in session.scalars(select(User).order_by(User.id))]


@router.post(
    "",
    response_model=TenantOut,
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Email already taken"}},
)
async def create(
    body: TenantCreate, engine: EngineDep, _admin: AdminPrincipal, request: Request
) -> TenantOut:
    """Create the user and migrate its schema to head (contracted too when
    CONTRACT_NEW_TENANTS is on)."""
    user = await run_in_threadpool(
        create_tenant,
        engine,
        email=str(body.email),
        display_name=body.display_name,
        contract=services_of(request).settings.contract_new_tenants,
    )
    return _out(user)

"""The tenant unit of work (issue 20, item 1): the edge opens one object that knows its tenant,
its schema and, once resolved, its transaction's stage; no layer below decodes them again."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from app.core.database import InvalidTenantId, TenantSession, unit_of_work
from app.models import Product
from app.services.image_paths import ImagePaths
from flags.stages import Resolution
from tests.images_db import insert_legacy_product


def test_a_tenant_unit_of_work_knows_its_tenant_and_schema(engine: Engine, tenant: int) -> None:
    with unit_of_work(engine, tenant) as session:
        assert isinstance(session, TenantSession)
        assert (session.tenant_id, session.schema) == (tenant, f"user_{tenant}")
        assert session.quoted_schema == f'"user_{tenant}"'
        # The ORM's unqualified tables resolve to the tenant's schema: id and binding agree.
        insert_legacy_product(engine, tenant, [])
        assert session.scalar(select(func.count()).select_from(Product)) == 1
    with unit_of_work(engine) as shared:
        assert not isinstance(shared, TenantSession)  # the shared schema: no tenant, no stage


def test_a_bad_tenant_id_opens_nothing(engine: Engine) -> None:
    for bad in (0, -3, True, 10**18):
        with pytest.raises(InvalidTenantId), unit_of_work(engine, bad):
            pytest.fail("a unit of work opened for an invalid tenant id")


def test_the_stage_is_resolved_once_per_transaction_and_forgotten_at_its_end(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.services.image_paths as image_paths

    reads: list[int] = []
    facts = image_paths.tenant_facts

    def counted(session: TenantSession) -> object:
        reads.append(session.tenant_id)
        return facts(session)

    monkeypatch.setattr(image_paths, "tenant_facts", counted)
    paths = ImagePaths()
    with unit_of_work(engine, tenant) as session:
        first = paths.resolution(session)
        assert isinstance(session.stage, Resolution)
        assert paths.resolution(session) is first
        paths.writes_table(session), paths.read_path(session)
        assert reads == [tenant]
        session.commit()  # the stage may move on between transactions (a verify, a flag)
        assert session.stage is None
        paths.resolution(session)
        assert reads == [tenant, tenant]
        session.rollback()
        assert session.stage is None


def test_a_savepoint_keeps_the_stage(engine: Engine, tenant: int) -> None:
    paths = ImagePaths()
    with unit_of_work(engine, tenant) as session:
        resolved = paths.resolution(session)
        with session.begin_nested():
            pass
        assert session.stage is resolved

"""The console's road past read-table, server side: contract and uncontract behind a typed
confirmation and the migration's own guards (a refusal shown with its reason, in the request
or in the job's run), restoring a backup, a label-overrides CSV refused whole when one line
is bad, a tenant's backfill knobs, and each run's pause, resume and cancel."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from backfill import job_runs, knobs
from backfill.contract import list_backups
from backfill.enqueue import enqueue_runs
from backfill.jobs import build_app, register_tasks
from backfill.tenants import is_contracted
from backfill.verify import verified_at
from tests.api.test_read_switch import BASE, migrated_tenant
from tests.backfill.test_contract import ready_tenant
from tests.backfill.test_jobs import job_statuses, real_worker, wait_for_run
from tests.console.test_console import actor, refusal, run_of, sign_in


def label_of(engine: Engine, tenant: int, product: int) -> list[tuple[str, bool]]:
    with engine.connect() as connection:
        return [
            (row.url, row.is_label)
            for row in connection.execute(
                text(
                    f"SELECT url, is_label FROM user_{tenant}.product_images "
                    'WHERE product_id = :p ORDER BY "order"'
                ),
                {"p": product},
            )
        ]


def test_contract_and_uncontract_need_the_tenant_typed_and_pass_the_guards(
    console: TestClient,
    engine: Engine,
    make_tenant: Callable[[], int],
    database_url: str,
    tmp_path: Path,
) -> None:
    ready = ready_tenant(engine, make_tenant, copies=1)
    unverified, _ = migrated_tenant(engine, make_tenant, verify=False)
    csrf = sign_in(console)
    act = actor(console, csrf, referer=f"http://testserver/admin/tenants/{ready}")

    confirm = console.get(f"/admin/tenants/{ready}/confirm/contract").text
    assert 'id="confirm-tenant"' in confirm and "Drop products.images" in confirm
    assert "type the tenant's id" in refusal(console, csrf, "actions/contract", tenant=str(ready))
    wrong = refusal(console, csrf, "actions/contract", tenant=str(ready), confirm=str(ready + 1))
    assert "type the tenant's id" in wrong
    not_contracted = refusal(
        console, csrf, "actions/uncontract", tenant=str(unverified), confirm=str(unverified)
    )
    assert "not contracted" in not_contracted
    assert job_runs.recent(engine, [ready, unverified]) == [], "nothing was queued"

    contract = run_of(act("contract", tenant=str(ready), confirm=str(ready)))
    refused = run_of(act("contract", tenant=str(unverified), confirm=str(unverified)))
    with real_worker(database_url, tmp_path):
        assert wait_for_run(engine, contract).state == "done"
        refused_run = wait_for_run(engine, refused)
        assert is_contracted(engine, ready)
        assert "already contracted" in refusal(
            console, csrf, "actions/contract", tenant=str(ready), confirm=str(ready)
        )
        assert "is contracted" in refusal(console, csrf, "actions/verify", tenant=str(ready))
        uncontract = run_of(act("uncontract", tenant=str(ready), confirm=str(ready)))
        assert wait_for_run(engine, uncontract).state == "done"

    assert not is_contracted(engine, ready)
    assert refused_run.state == "refused"
    assert refused_run.error is not None and "not verified" in refused_run.error
    runs = console.get(f"/admin/fragments/runs?tenant={unverified}").text
    assert "not verified" in runs, "the guard's reason is in the runs list"
    assert not is_contracted(engine, unverified)


def test_a_backup_is_restored_from_the_page_after_the_tenant_id_is_typed(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=1)  # canonicalize took a backup
    (backup,) = list_backups(engine, tenant)
    csrf = sign_in(console)
    page = console.get(f"/admin/tenants/{tenant}").text
    assert f'id="restore-{backup.id}"' in page and "before canonicalize" in page
    confirm = console.get(f"/admin/tenants/{tenant}/confirm/restore?backup={backup.id}").text
    assert f'name="backup" value="{backup.id}"' in confirm
    unconfirmed = refusal(console, csrf, "actions/restore", tenant=str(tenant), backup="1")
    assert "type the tenant's id" in unconfirmed
    missing = refusal(
        console, csrf, "actions/restore", tenant=str(tenant), backup="999", confirm=str(tenant)
    )
    assert "has no backup 999" in missing
    assert verified_at(engine, tenant) is not None, "a refusal changes nothing"

    act = actor(console, csrf, referer=f"http://testserver/admin/tenants/{tenant}")
    done = act("restore", tenant=str(tenant), backup=str(backup.id), confirm=str(tenant))
    assert f"restored from backup {backup.id}" in done and "no longer verified" in done
    assert verified_at(engine, tenant) is None


def test_a_label_overrides_csv_is_applied_or_refused_whole_naming_the_line(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    other = make_tenant()
    csrf = sign_in(console)
    header = "tenant,product_id,url,is_label\n"

    def upload(content: str) -> tuple[int, str]:
        response = console.post(
            "/admin/actions/overrides",
            data={"csrf": csrf, "tenant": str(tenant)},
            files={"file": ("labels.csv", content.encode(), "text/csv")},
            headers={"referer": f"http://testserver/admin/tenants/{tenant}"},
        )
        found = re.search(r'id="(?:msg|reason)">([^<]*)<', response.text)
        assert found, response.text
        return response.status_code, html.unescape(found.group(1))

    before = label_of(engine, tenant, product)
    assert before[-1] == (f"{BASE}/label.jpg", True)
    status, reason = upload(
        header + f"{tenant},{product},{BASE}/a.jpg,true\n{tenant},{product},{BASE}/b.jpg,maybe\n"
    )
    assert status == 400 and "labels.csv: line 3: is_label must be true or false" in reason
    assert "nothing applied" in reason
    status, reason = upload(header + f"{other},{product},{BASE}/a.jpg,true\n")
    assert status == 400 and "line 2 is for another tenant" in reason
    status, reason = upload("product,url\n1,x\n")
    assert status == 400 and "the header must be" in reason
    assert label_of(engine, tenant, product) == before, "a refused file changes nothing"

    status, message = upload(
        header + f"{tenant},{product},{BASE}/a.jpg,true\n{tenant},{product},{BASE}/nope.jpg,true\n"
    )
    assert status == 200
    assert (
        "1 override(s) applied, 1 refused; line 3" in message
        and "no image with this url" in message
    )
    assert (f"{BASE}/a.jpg", True) in label_of(engine, tenant, product)

    too_big = console.post(
        "/admin/actions/overrides",
        data={"csrf": csrf, "tenant": str(tenant)},
        files={"file": ("big.csv", b"x" * (200 * 1024), "text/csv")},
    )
    assert too_big.status_code == 413, "the console's form body limit bounds the file"


def test_a_tenants_backfill_knobs_are_set_checked_and_cleared_from_the_page(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, _ = migrated_tenant(engine, make_tenant, verify=False)
    csrf = sign_in(console)
    act = actor(console, csrf, referer=f"http://testserver/admin/tenants/{tenant}")
    assert "taken at the next batch" in act(
        "knobs", tenant=str(tenant), max_rate="50", batch_size="200"
    )
    with engine.connect() as connection:
        assert knobs.in_force(connection, tenant) == knobs.Knobs(max_rate=50.0, batch_size=200)
    assert "max_rate" in refusal(console, csrf, "actions/knobs", tenant=str(tenant), max_rate="-1")
    assert "batch_size" in refusal(
        console, csrf, "actions/knobs", tenant=str(tenant), batch_size="0"
    )
    page = console.get(f"/admin/tenants/{tenant}").text
    assert 'id="knob-max-rate" size="8" value="50.0"' in page
    assert "knobs cleared" in act("knobs", tenant=str(tenant), clear="yes")
    with engine.connect() as connection:
        assert knobs.in_force(connection, tenant) == knobs.Knobs()


def test_a_run_is_paused_resumed_and_cancelled_from_the_page_within_what_its_kind_allows(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int], database_url: str
) -> None:
    tenant, _ = migrated_tenant(engine, make_tenant, verify=False)
    csrf = sign_in(console)
    act = actor(console, csrf, referer=f"http://testserver/admin/tenants/{tenant}")
    verify = run_of(act("verify", tenant=str(tenant)))
    queue = build_app(database_url)
    register_tasks(queue)
    backfill = enqueue_runs("backfill", [tenant], procrastinate_app=queue, engine=engine)[tenant]
    assert backfill is not None

    fragment = console.get(f"/admin/fragments/runs?tenant={tenant}").text
    assert (
        f'id="pause-run-{backfill[0]}"' in fragment and f'id="pause-run-{verify}"' not in fragment
    )
    assert "does not pause" in refusal(console, csrf, f"runs/{verify}/pause")
    assert "is not paused" in refusal(console, csrf, f"runs/{backfill[0]}/resume")
    assert "pauses at its next batch" in act_on(console, csrf, backfill[0], "pause")
    assert "goes on" in act_on(console, csrf, backfill[0], "resume")
    assert ": cancelled" in act_on(console, csrf, verify, "cancel")
    assert "has ended" in refusal(console, csrf, f"runs/{verify}/cancel")
    run = job_runs.get(engine, verify)
    assert run is not None and run.state == "cancelled"
    job_id = run.job_id
    assert job_id is not None and job_statuses(engine, [job_id]) == ["cancelled"]
    with engine.begin() as connection:  # leave nothing queued for another test's worker
        connection.execute(text("SET LOCAL search_path TO procrastinate"))  # its triggers
        connection.execute(
            text("DELETE FROM procrastinate.procrastinate_jobs WHERE id = :id"),
            {"id": backfill[1]},
        )


def act_on(console: TestClient, csrf: str, run_id: int, control: str) -> str:
    response = console.post(
        f"/admin/runs/{run_id}/{control}",
        data={"csrf": csrf},
        headers={"referer": "http://testserver/admin/runs"},
    )
    assert response.status_code == 200, response.text
    found = re.search(r'id="msg">([^<]*)<', response.text)
    assert found
    return found.group(1)

"""Every `alembic` command written in README.md and docs/RUNBOOK.md runs as written (a
tenant id put in for `N` or `42`) and exits 0, against a database of its own: an operator
copies them, so a wrong word order (`-x` after the command: "unrecognized arguments") must
fail here first."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.core import migrate
from app.core.database import make_engine
from app.core.settings import PROJECT_ROOT
from app.services.tenant_service import create_tenant
from backfill import contract as steps
from backfill.runner import RunOptions, run_tenant
from backfill.tenants import is_contracted
from backfill.verify import verify_tenant
from tests.backfill.test_runner import seed

DOCUMENTS = ("README.md", "docs/RUNBOOK.md")
ALEMBIC = Path(sys.executable).parent / "alembic"
VERBS = ("upgrade", "downgrade", "current", "history", "heads", "stamp", "check", "show")


@dataclass(frozen=True)
class Documented:
    """One alembic command as a document writes it."""

    document: str
    text: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)

    @property
    def history(self) -> str:
        words = self.words
        return words[words.index("-n") + 1] if "-n" in words else "alembic"

    @property
    def verb(self) -> str:
        return next((word for word in self.words if word in VERBS), "")

    def for_tenant(self, tenant: int) -> list[str]:
        """The argv to run, with the placeholder tenant replaced by a real one."""
        words = [re.sub(r"^tenant=(N|42)$", f"tenant={tenant}", word) for word in self.words]
        return [str(ALEMBIC), *words[1:]]


def documented_commands() -> list[Documented]:
    """Every alembic command in the documents' code: fenced lines (comment dropped) and
    inline code spans (which may wrap over two lines), in order, without repeats."""
    found: list[Documented] = []
    for document in DOCUMENTS:
        source = (PROJECT_ROOT / document).read_text()
        fenced = re.findall(r"^```[a-z]*\n(.*?)^```", source, flags=re.S | re.M)
        candidates = [line.split("  #")[0] for block in fenced for line in block.splitlines()]
        prose = re.sub(r"^```[a-z]*\n.*?^```", "", source, flags=re.S | re.M)
        candidates += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
        for candidate in candidates:
            command = candidate.strip()
            if re.match(r"^(\.venv/bin/)?alembic\s", command):
                entry = Documented(document, command)
                if entry not in found:
                    found.append(entry)
    return found


COMMANDS = documented_commands()


@pytest.fixture(scope="module")
def docs_database(database_url: str) -> Iterator[str]:
    """A database of this module's own: `alembic upgrade head` moves every tenant in it."""
    server = make_url(database_url)
    name = f"pim_docs_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def docs_engine(docs_database: str) -> Iterator[Engine]:
    engine = make_engine(docs_database, pool_size=2)
    migrate.upgrade(engine, lock_retries=0)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def docs_tenant(docs_engine: Engine) -> int:
    """A tenant with dirty legacy history, so that every step has something to move."""
    tenant = create_tenant(docs_engine, email=f"docs-{uuid.uuid4().hex}@example.com").id
    seed(docs_engine, tenant)
    return tenant


def ready_to_contract(engine: Engine, tenant: int) -> None:
    """At routine head, backfilled, verified and canonical (the contract's guards)."""
    if is_contracted(engine, tenant):
        return
    migrate.upgrade(engine, tenant_ids=[tenant], lock_retries=0)
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    steps.canonicalize_tenant(engine, tenant)


def prepare(engine: Engine, tenant: int, command: Documented) -> None:
    """Put the tenant where the document says the command is run."""
    if command.history == "contract" and command.verb == "downgrade":
        ready_to_contract(engine, tenant)
        if not is_contracted(engine, tenant):
            migrate.contract(engine, tenant_ids=[tenant], lock_retries=0)
    elif command.history == "contract":
        if is_contracted(engine, tenant):
            migrate.uncontract(engine, tenant_ids=[tenant], lock_retries=0)
        ready_to_contract(engine, tenant)
    else:
        if is_contracted(engine, tenant):
            migrate.uncontract(engine, tenant_ids=[tenant], lock_retries=0)
        migrate.upgrade(engine, tenant_ids=[tenant], lock_retries=0)
        if command.verb == "downgrade" and "discard_backups" not in command.text:
            # Where the runbook shows it (step 1, back): before any backup was taken; a
            # tenant's backups are dropped only on purpose (tests/migrations/
            # test_downgrade_guards.py).
            for backup in steps.list_backups(engine, tenant):
                steps.delete_backup(engine, tenant, backup.id)


def test_the_documents_write_alembic_commands() -> None:
    verbs = {(c.history, c.verb) for c in COMMANDS}
    assert {("alembic", "upgrade"), ("alembic", "downgrade"), ("alembic", "current")} <= verbs
    assert ("contract", "upgrade") in verbs and ("contract", "downgrade") in verbs
    assert any("tenant=" in c.text for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.document}: {c.text}")
def test_each_documented_alembic_command_runs_as_written(
    command: Documented, docs_database: str, docs_engine: Engine, docs_tenant: int
) -> None:
    prepare(docs_engine, docs_tenant, command)

    ran = subprocess.run(
        command.for_tenant(docs_tenant),
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": docs_database},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert ran.returncode == 0, f"{command.text}\n{ran.stderr[-3000:]}"
    if command.verb == "current":  # each revision names its schema (it was a bare list)
        assert re.search(rf"^user_{docs_tenant}: \w+", ran.stdout, flags=re.M), ran.stdout
    if command.history == "contract":
        assert is_contracted(docs_engine, docs_tenant) == (command.verb == "upgrade")

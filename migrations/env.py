"""Multi-tenant Alembic environment.

Every online run migrates `public` first, then each tenant schema `user_<id>` (from
`public.users`, or `-x tenant=<id>`), each in its own transaction with its own
`alembic_version` table, so one bad tenant cannot leave another half-migrated and a rerun
resumes where it stopped. Lock timeouts are short and retried with exponential backoff
(pgroll's defaults: 500 ms, backoff from 1 s up to a minute); a tenant that still cannot get
its locks is reported with the sessions that block it, and the run goes on with the others.
"""

from __future__ import annotations

import structlog
from alembic import context

from app.core.logging import configure_logging
from app.core.settings import get_settings
from app.models import Base
from migrations.tenancy import MigrationRun, run_offline, run_online

config = context.config
if not structlog.is_configured():
    configure_logging(get_settings().log_format, get_settings().log_level)
run = MigrationRun.from_alembic(config, context.get_x_argument(as_dictionary=True))

if context.is_offline_mode():
    run_offline(context, run, Base.metadata)
else:
    run_online(context, run, Base.metadata)

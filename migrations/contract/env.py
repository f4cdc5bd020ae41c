"""The contract history's Alembic environment (alembic.ini [contract]): the same
per-tenant loop as the routine history (migrations/env.py), tenant schemas only, with its own
version table, so `alembic upgrade head` never drops a column by surprise."""

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

"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Decorate upgrade/downgrade with @tenant_schema (runs in every user_<id> schema) or
@public_schema (runs once in public). env.py already sets a short lock_timeout and
retries lock timeouts with backoff; never rewrite a big table here.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
from migrations.scope import public_schema, tenant_schema

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


@tenant_schema
def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


@tenant_schema
def downgrade() -> None:
    ${downgrades if downgrades else "pass"}

#!/usr/bin/env bash
# The demo data with a tenant at every stage, for the console screenshots (README):
# seeds an EMPTY database (it stages tenants 1-12 of a fresh seed, so it refuses a database
# that already has tenants; `python -m app seed` alone only refuses a seed already applied),
# then
#   tenant 1 dual-write · 2 backfilled · 3-5 verified · 6-7 shadow · 8-11 live · 12 complete.
# The flags are written to FLAGS_FILE: point it at a scratch copy, not flags/toggles.json.
#
#   DATABASE_URL=postgresql://.../empty_db FLAGS_FILE=/tmp/toggles.json DATA_DIR=/tmp/demo \
#     scripts/stage_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?DATABASE_URL: an empty database}"
: "${FLAGS_FILE:?FLAGS_FILE: a scratch file for the toggles (copied from flags/toggles.json)}"
[ -e "$FLAGS_FILE" ] || cp flags/toggles.json "$FLAGS_FILE"
PY=.venv/bin/python
tenants() { for i in "$@"; do printf -- '--tenant %s ' "$i"; done; }
$PY -m app migrate
users=$($PY -c 'from sqlalchemy import create_engine, text
from app.core.database import resolve_database_url
from app.core.settings import get_settings
with create_engine(resolve_database_url(get_settings())).connect() as c:
    print(c.execute(text("SELECT count(*) FROM public.users")).scalar_one())')
if [ "$users" != 0 ]; then
  echo "DATABASE_URL: $users tenant(s) already exist; this script needs an empty database" >&2
  exit 2
fi
$PY -m app seed
$PY -m backfill run $(tenants 2 3 4 5 6 7 8 9 10 11 12)
$PY -m backfill verify $(tenants 3 4 5 6 7 8 9 10 11 12)
$PY -m flags enable shadow-compare $(tenants 6 7)
$PY -m flags enable read-table $(tenants 8 9 10 11 12)
$PY -m backfill canonicalize $(tenants 12)
$PY -m backfill contract $(tenants 12)
$PY -m backfill status

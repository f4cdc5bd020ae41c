"""How long the console's tenants rows take to compute with many tenants (they back the
overview, the tenants table and the progress fragment, refreshed at most once a second).

    .venv/bin/python bench/console_tenants.py --tenants 1000
"""

from __future__ import annotations

import argparse
import time

from scratch import create_users, scratch_database  # bench/scratch.py, beside this script

from app.console.state import tenant_rows
from app.core import migrate
from flags.client import FlagClient


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=1000)
    args = parser.parse_args()
    with scratch_database() as engine:
        migrate.upgrade(engine)
        ids = create_users(engine, args.tenants)
        started = time.perf_counter()
        migrate.upgrade(engine, tenant_ids=ids)
        print(f"{args.tenants} tenant schemas migrated in {time.perf_counter() - started:.1f} s")
        flags = FlagClient()
        for _ in range(3):
            started = time.perf_counter()
            rows = tenant_rows(engine, flags.flags_for)
            print(f"tenant_rows, {len(rows)} tenants: {time.perf_counter() - started:.2f} s")
        flags.close()


if __name__ == "__main__":
    main()

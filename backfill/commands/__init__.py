"""The `backfill` commands, one module per part of the road (registered by backfill/cli.py)."""

"""The history backfill: set-based, resumable, verified (issue 6)."""

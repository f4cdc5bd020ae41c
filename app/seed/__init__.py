"""Seed-shaped demo data: `python -m app seed`."""

"""Alembic migrations: one history applied to `public` and to every tenant schema."""

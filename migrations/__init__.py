"""Alembic migrations: the schema's history, applied by ``searchstats migrate`` and at start."""

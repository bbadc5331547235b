"""Persistence: SQLModel tables, the engine and session factory, the SQL for writes and stats."""

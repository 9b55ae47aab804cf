"""Persistence: SQLModel models, the async engine, migrations, Redis state, the audit chain."""

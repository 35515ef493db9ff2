"""Start-up skips alembic when the database is at SCHEMA_REVISION: it must be the head."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from aichat_backend.store.database import MIGRATIONS_DIR, SCHEMA_REVISION


def test_schema_revision_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [SCHEMA_REVISION]

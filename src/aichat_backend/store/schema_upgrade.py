"""The schema's migrations: where they live and how a connection is brought to the head."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
REVISION_QUERY = text("SELECT version_num FROM alembic_version")


def upgrade_to_head(connection: Connection) -> None:
    # Imported here: alembic (with mako) is ~10 MB of a process that needs it once.
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")

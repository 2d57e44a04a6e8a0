"""Alembic environment: runs migrations on the engine Clarion hands it (no alembic.ini needed),
or on the connection it hands it (holding the migration lock, on PostgreSQL)."""

from alembic import context
from sqlalchemy import Connection, create_engine

from clarion.store.schema import metadata

config = context.config


def run(connection: Connection) -> None:
    raw = connection.connection.driver_connection if connection.dialect.name == "sqlite" else None
    if raw is not None:
        # A table rebuild (batch mode) drops the old table: with foreign keys on, SQLite would
        # refuse (rows of other tables reference it). Off for the migration, outside any
        # transaction (where SQLite ignores the pragma), back on after.
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        _migrate(connection)
    finally:
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=ON")


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    engine = config.attributes.get("engine")
    if engine is None:  # `alembic` run by hand: take the URL from -x url=…
        engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.connect() as connection:
        run(connection)

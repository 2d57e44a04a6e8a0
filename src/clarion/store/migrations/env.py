"""Alembic environment: runs migrations on the engine Clarion hands it (no alembic.ini needed),
or on the connection it hands it (holding the migration lock, on PostgreSQL)."""

from alembic import context
from sqlalchemy import Connection, create_engine

from clarion.store.schema import metadata

config = context.config


def run(connection: Connection) -> None:
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

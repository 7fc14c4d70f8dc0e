"""Alembic environment shared by every service: the connection and schema come from the caller
(``orderflow.runtime.db.migrate``); each service's revisions sit in its own package."""

from alembic import context

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]

context.configure(
    connection=connection,
    version_table_schema=schema,
    target_metadata=None,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()

"""Re-creates the views, keys, indexes and comments after each load, on any SQL destination."""

from typing import Any

from .ddl import extras
from .dialects import sql_dialect
from .views import view_statements


def refresh_views(sql_client: Any) -> None:
    """(Re)creates every view of the client's dataset, then keys, indexes and comments.

    Args:
        sql_client: an open dlt sql client of the pipeline's destination and dataset.
    """
    dialect = sql_dialect(sql_client)
    existing = existing_tables(sql_client, sql_client.dataset_name)
    staging = None
    if dialect == "mysql":
        name = sql_client.staging_dataset_name
        staging = (name, existing_tables(sql_client, name))
    statements = view_statements(sql_client.dataset_name, existing, dialect)
    statements += extras(dialect, sql_client.dataset_name, existing, staging)
    if sql_client.capabilities.supports_multiple_statements:
        sql_client.execute_many(statements)  # one round trip, one transaction
    else:
        with sql_client.begin_transaction():
            for statement in statements:
                sql_client.execute_sql(statement)


def existing_tables(sql_client: Any, dataset: str) -> set[str]:
    """Base tables of `dataset` (`information_schema`, which every engine tested live has;
    on MySQL/MariaDB a dataset is a database, its `table_schema`)."""
    rows = sql_client.execute_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_type = 'BASE TABLE'",
        dataset,
    )
    return {row[0] for row in rows or []}

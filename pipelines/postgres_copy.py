"""dlt's `postgres` destination with a csv COPY that keeps an empty string apart from NULL.

dlt 1.31's csv COPY job (`PostgresCsvCopyJob`) adds `FORCE_NULL(...)` for every nullable
column, so even a quoted `""` is stored as NULL: every empty subject, body or recipient name
lost its value. The emails tables reach PostgreSQL as csv written by pyarrow from arrow
tables (`loading.py`), and pyarrow's csv writer encloses every string in quotes and writes a
null as an unquoted empty field; with `NULL ''` and no `FORCE_NULL`, COPY then loads `""` as
'' and the bare empty field as NULL, which is exactly what was written.

dlt's own tables (`_dlt_pipeline_state`, ...) keep dlt's job: their rows are dicts, written by
Python's csv module, which quotes None as `""` too (`QUOTE_NONNUMERIC`), so only FORCE_NULL
turns those back into NULL.

The factory keeps the name (`postgres`, so its config stays `DESTINATION__POSTGRES__...`)
and the type (`dlt.destinations.postgres`, as stored in the pipeline's state) of dlt's.
"""

from typing import Any

from dlt.common.destination.client import LoadJob, PreparedTableSchema
from dlt.common.destination.configuration import CsvFormatConfiguration
from dlt.common.destination.reference import DestinationReference
from dlt.common.schema.utils import get_dlt_prefix_by_naming_convetion
from dlt.common.storages.file_storage import FileStorage
from dlt.destinations import postgres as dlt_postgres
from dlt.destinations.impl.postgres.postgres import PostgresClient, PostgresCsvCopyJob


class ArrowCsvCopyJob(PostgresCsvCopyJob):
    """COPY of a csv file with a header line, written by pyarrow: no FORCE_NULL."""

    def run(self) -> None:
        client = self._job_client
        csv_format = client.config.csv_format or CsvFormatConfiguration()
        if not csv_format.include_header:
            super().run()  # dlt's job reads the columns from the schema then
            return
        sql_client = client.sql_client
        sep = csv_format.delimiter
        with FileStorage.open_zipsafe_ro(self._file_path, "rb") as f:
            header = f.readline().decode(csv_format.encoding).strip()
            columns = ",".join(
                sql_client.escape_column_name(name.strip('"'), quote=True)
                for name in header.split(sep)
            )
            table = sql_client.make_qualified_table_name(self.load_table_name)
            copy_sql = (
                f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT CSV, DELIMITER '{sep}',"
                f" NULL '', ENCODING '{csv_format.encoding}')"
            )
            with sql_client.begin_transaction(), sql_client.native_connection.cursor() as cur:
                cur.copy_expert(copy_sql, f, size=8192)  # from the line after the header


class ExactPostgresClient(PostgresClient):
    """dlt's PostgreSQL client; csv files of the data tables load through ArrowCsvCopyJob."""

    def create_load_job(
        self, table: PreparedTableSchema, file_path: str, load_id: str, restore: bool = False
    ) -> LoadJob:
        job = super().create_load_job(table, file_path, load_id, restore)
        dlt_table = str(table["name"]).startswith(
            get_dlt_prefix_by_naming_convetion(self.schema.naming)
        )
        if type(job) is PostgresCsvCopyJob and not dlt_table:
            job = ArrowCsvCopyJob(file_path)
        return job


class postgres(dlt_postgres):  # noqa: N801  (dlt names a destination by its factory class)
    """The `postgres` destination of every pipeline this project makes."""

    @property
    def client_class(self) -> type[PostgresClient]:
        return ExactPostgresClient

    @property
    def destination_type(self) -> str:
        return DestinationReference.normalize_type("postgres")


def destination_for(name: str) -> Any:
    """What `dlt.pipeline(destination=...)` gets for the destination `name`."""
    return postgres() if name == "postgres" else name

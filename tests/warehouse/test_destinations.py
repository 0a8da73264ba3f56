"""`--destination` takes any dlt destination name; an unknown one is a usage error."""

import contextlib
import io

import pytest

from pipelines.close_emails import build_parser, main


@pytest.mark.parametrize(
    "name", ["duckdb", "postgres", "sqlalchemy", "motherduck", "bigquery", "snowflake", "mssql"]
)
def test_any_dlt_destination_name_is_accepted(name: str) -> None:
    before = build_parser().parse_args(["--destination", name, "status"])
    after = build_parser().parse_args(["status", "--destination", name])
    assert before.destination == after.destination == name


def test_an_unknown_destination_is_one_line_and_exit_2() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        main(["status", "--destination", "warehouse_that_is_not"])
    assert exit_.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert lines[0].startswith("usage:")
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and "unknown destination 'warehouse_that_is_not'" in errors[0]
    assert "Traceback" not in err.getvalue()

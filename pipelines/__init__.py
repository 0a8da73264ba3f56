"""The command line and the dlt pipeline around the Close source."""

from .memory import tune_memory

tune_memory()  # before anything imports pyarrow

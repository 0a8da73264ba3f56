"""Airflow DAGs of the Close email sync (`close_emails.py`) and what their tasks run."""

"""Pipelines (command lines) built on the sources of this project."""

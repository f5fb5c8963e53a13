"""Prefect tasks: thin wrappers around the pure functions of the other subpackages."""

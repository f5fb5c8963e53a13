"""Prefect flows: the study's stages, each also callable as a plain function and from the CLI."""

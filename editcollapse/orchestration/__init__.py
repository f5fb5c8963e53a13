"""Prefect at the edges: tasks, flows, task runners and server operations around the pure stages."""

"""Where everything lives under a warehouse root, as keys: ``/``-separated paths relative to the root.

Pure functions, no I/O: a :class:`~editcollapse.warehouse.backends.Backend` turns a key into a
local path or a URL. The tree::

    <table>/model=<m>/method=<x>/run=<id>/part-<shard>.parquet     a part of a table
    <table>/model=_schema/method=_schema/run=_schema/part-schema.parquet   its zero-row schema anchor
    _claims/model=<m>/method=<x>/run=<id>/shard-<shard>.claim      who computes a shard
    _quarantine/<stamp>/<table>/model=<m>/…/part-<shard>.parquet   a bad part, moved out of its table

A part's name is a deterministic function of (run, shard), so writing it again replaces it.
"""

from __future__ import annotations

import re

from editcollapse.warehouse.schemas import PARTITION_COLUMNS, schema_for

ANCHOR = "_schema"
CLAIMS = "_claims"
QUARANTINE = "_quarantine"
PART_SUFFIX = ".parquet"
CLAIM_SUFFIX = ".claim"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_PART_NAME = re.compile(r"^part-[A-Za-z0-9._-]+\.parquet$")


def partition_value(value: str) -> str:
    """``value`` made safe as a hive partition value (path separators, ``=`` … become ``_``)."""
    if not value:
        raise ValueError("a partition value (model, method or run id) must be non-empty")
    return _UNSAFE.sub("_", value)


def part_name(shard: int | str) -> str:
    """The file name of a part: ``part-00012.parquet`` for shard 12, ``part-<name>.parquet`` otherwise."""
    label = f"{shard:05d}" if isinstance(shard, int) else partition_value(shard)
    return f"part-{label}{PART_SUFFIX}"


def table_key(table: str) -> str:
    """The folder of ``table``; an unknown table is a KeyError listing the known ones."""
    schema_for(table)
    return table


def partition_segments(model: str, method: str, run_id: str) -> list[str]:
    """``["model=<m>", "method=<x>", "run=<id>"]`` with the values made path-safe."""
    values = (partition_value(model), partition_value(method), partition_value(run_id))
    return [f"{column}={value}" for column, value in zip(PARTITION_COLUMNS, values)]


def partition_key(table: str, model: str, method: str, run_id: str) -> str:
    """The folder of one run's parts of ``table``."""
    return "/".join([table_key(table), *partition_segments(model, method, run_id)])


def part_key(table: str, model: str, method: str, run_id: str, shard: int | str) -> str:
    """The key of one part of ``table``."""
    return f"{partition_key(table, model, method, run_id)}/{part_name(shard)}"


def anchor_key(table: str) -> str:
    """The key of ``table``'s zero-row schema anchor."""
    return part_key(table, ANCHOR, ANCHOR, ANCHOR, "schema")


def is_anchor(key: str) -> bool:
    return f"model={ANCHOR}" in key.split("/")


def partition_values(key: str) -> dict[str, str]:
    """The hive values (``model``, ``method``, ``run``) in a part's key."""
    return dict(segment.split("=", 1) for segment in key.split("/")[1:-1])


def claim_key(model: str, method: str, run_id: str, shard: int) -> str:
    """The key of the claim on one shard of a run."""
    return "/".join([CLAIMS, *partition_segments(model, method, run_id), f"shard-{shard:05d}{CLAIM_SUFFIX}"])


def layout_problem(table: str, key: str) -> str | None:
    """Why ``key`` is not where a part of ``table`` belongs (None when it is):
    ``<table>/model=<m>/method=<x>/run=<id>/part-<shard>.parquet`` with path-safe values."""
    segments = key.split("/")
    expected = f"{table}/model=<m>/method=<x>/run=<id>/part-<shard>{PART_SUFFIX}"
    if len(segments) != 2 + len(PARTITION_COLUMNS) or segments[0] != table or not _PART_NAME.match(segments[-1]):
        return f"not at {expected}"
    for column, segment in zip(PARTITION_COLUMNS, segments[1:-1]):
        name, _, value = segment.partition("=")
        if name != column or not value or _UNSAFE.search(value):
            return f"folder {segment!r} is not {column}=<value> (expected {expected})"
    return None


def quarantine_key(key: str, stamp: str) -> str:
    """Where a bad part goes: under ``_quarantine/<stamp>/``, outside every table's folder (and glob)."""
    return f"{QUARANTINE}/{stamp}/{key}"

"""The only code that reads and writes stage Parquet; DuckDB views over it.

``Warehouse`` (``store``) is the handle the stages use; it composes ``layout`` (pure paths of the
hive-partitioned tree), ``backends`` (a local directory or any fsspec URL), ``parts`` (atomic,
idempotent Parquet parts), ``claims`` (the shard claim protocol) and ``integrity`` (sound parts,
the quarantine). ``schemas`` holds every table's contract; ``catalog`` gives read-only DuckDB
sessions and polars scans; ``runs`` keeps one provenance row per run.
"""

from editcollapse.warehouse.catalog import build_catalog, connect, scan
from editcollapse.warehouse.schemas import SCHEMAS, schema_for
from editcollapse.warehouse.store import Warehouse

__all__ = ["SCHEMAS", "Warehouse", "build_catalog", "connect", "scan", "schema_for"]

"""Parquet parts on both backends: replaced by name, read back by partition, anchored by a schema part."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from editcollapse.warehouse import layout
from editcollapse.warehouse.parts import PartStore, parquet_bytes, to_arrow
from editcollapse.warehouse.schemas import schema_for
from tests.warehouse_backends import BACKEND_KINDS, fresh_backend


@pytest.fixture(params=BACKEND_KINDS)
def parts(request, tmp_path):
    with fresh_backend(request.param, tmp_path) as backend:
        yield PartStore(backend)


def _edits(*case_ids: str) -> list[dict]:
    return [{"run_id": "r1", "case_id": c, "status": "ok"} for c in case_ids]


def test_a_part_is_replaced_by_name_and_read_by_partition(parts) -> None:
    key = parts.write("edits", _edits("a", "b"), model="m", method="rome", run_id="r1", shard=0)
    assert parts.write("edits", _edits("a"), model="m", method="rome", run_id="r1", shard=0) == key
    parts.write("edits", _edits("c"), model="m", method="memit", run_id="r2", shard=0)
    assert parts.keys("edits") == [
        layout.part_key("edits", "m", "memit", "r2", 0),
        layout.part_key("edits", "m", "rome", "r1", 0),
    ]
    assert parts.read("edits", method="rome").column("case_id").to_pylist() == ["a"]
    assert parts.read("edits", run_id="r2").select(["case_id", "model", "method", "run"]).to_pylist() == [
        {"case_id": "c", "model": "m", "method": "memit", "run": "r2"}
    ]
    assert parts.has("edits", "m", "rome", "r1", 0) and not parts.has("edits", "m", "rome", "r1", 1)
    assert parts.read_one("edits", "m", "rome", "r1", 0, columns=["case_id"]).to_pylist() == [{"case_id": "a"}]
    with pytest.raises(FileNotFoundError):
        parts.read_one("edits", "m", "rome", "r1", 1)


def test_an_empty_table_reads_as_its_schema_with_partition_columns(parts) -> None:
    empty = parts.read("ppl")
    assert empty.num_rows == 0 and empty.schema.names == [*schema_for("ppl").names, "model", "method", "run"]


def test_an_unreadable_anchor_is_rewritten(parts) -> None:
    key = parts.ensure_anchor("edits")
    parts.backend.write(key, b"not parquet")
    assert PartStore(parts.backend).ensure_anchor("edits") == key  # a new store checks the anchor again
    with parts.backend.open(key) as handle:
        assert pq.read_schema(handle).equals(schema_for("edits"), check_metadata=False)


def test_rows_must_fit_the_schema() -> None:
    table = to_arrow("edits", _edits("a"))
    assert table.schema.equals(schema_for("edits")) and to_arrow("edits", table).equals(table)
    with pytest.raises(ValueError, match=r"has no column\(s\) \['colour'\]"):
        to_arrow("edits", table.append_column("colour", table.column("case_id")))
    assert pq.read_table(pa.BufferReader(parquet_bytes(table))).equals(table)

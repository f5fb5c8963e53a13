"""Warehouse layout: the keys of parts, anchors and claims, and the partition values read back from a key."""

from __future__ import annotations

import pytest

from editcollapse.warehouse import layout


def test_part_keys_are_hive_partitioned_and_deterministic() -> None:
    assert layout.part_key("edits", "tiny/gpt2", "rome", "r1", 3) == (
        "edits/model=tiny_gpt2/method=rome/run=r1/part-00003.parquet"
    )
    assert layout.part_key("runs", "m", "x", "r", "run") == "runs/model=m/method=x/run=r/part-run.parquet"
    assert layout.part_key("edits", "m", "x", "r", 3) == layout.part_key("edits", "m", "x", "r", 3)


def test_partition_values_are_made_path_safe() -> None:
    assert layout.partition_key("edits", "/models/my model", "rome", "run=1") == (
        "edits/model=_models_my_model/method=rome/run=run_1"
    )
    assert layout.part_name("a/b=c") == "part-a_b_c.parquet"
    with pytest.raises(ValueError, match="must be non-empty"):
        layout.partition_value("")


def test_unknown_table_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown warehouse table 'nope'; known: runs"):
        layout.part_key("nope", "m", "x", "r", 0)


def test_partition_values_are_read_back_from_a_key() -> None:
    key = layout.part_key("ppl", "m", "rome", "20261123", 0)
    assert layout.partition_values(key) == {"model": "m", "method": "rome", "run": "20261123"}


def test_anchor_and_claim_keys() -> None:
    anchor = layout.anchor_key("edits")
    assert anchor == "edits/model=_schema/method=_schema/run=_schema/part-schema.parquet"
    assert layout.is_anchor(anchor) and not layout.is_anchor(layout.part_key("edits", "m", "x", "r", 0))
    assert layout.claim_key("m", "rome", "run-1", 7) == "_claims/model=m/method=rome/run=run-1/shard-00007.claim"

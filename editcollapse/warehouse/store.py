"""``Warehouse``: the one handle the stages use to write, find and read tables and to claim shards.

It composes the parts of the warehouse, each with one job: :mod:`.layout` (where things live),
:mod:`.backends` (a local directory or an fsspec URL, chosen once from the root), :mod:`.parts`
(atomic, idempotent Parquet parts) and :mod:`.claims` (who computes a shard). Side files that are
not tables (sequential delta checkpoints, figures, lm-eval suites, JSON exports) go to
:attr:`Warehouse.local_dir`: the root itself when it is local, a local folder per URL otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from editcollapse.warehouse import claims, integrity, layout
from editcollapse.warehouse.backends import Backend, open_backend
from editcollapse.warehouse.claims import STALE_CLAIM_S
from editcollapse.warehouse.integrity import TableReport
from editcollapse.warehouse.parts import PartStore
from editcollapse.warehouse.schemas import SCHEMAS


class Warehouse:
    """A warehouse root: where each table's parts live, and how they are written and found.

    ``root`` is a local directory or an fsspec URL (``s3://bucket/wh``, ``memory://wh`` …; see
    :mod:`.backends`), another ``Warehouse`` (the same root), a :class:`~.backends.Backend`, or
    None for ``$EDITCOLLAPSE_WAREHOUSE`` (default ``warehouse``).
    """

    def __init__(self, root: str | os.PathLike[str] | Warehouse | Backend | None = None) -> None:
        if isinstance(root, Warehouse):
            root = root.backend
        if root is None:
            root = os.environ.get("EDITCOLLAPSE_WAREHOUSE", "warehouse")
        self.backend = root if isinstance(root, Backend) else open_backend(root)
        self._parts = PartStore(self.backend)

    def __repr__(self) -> str:
        return f"Warehouse({self.location!r})"

    @property
    def root(self) -> Path | str:
        """A local root as a :class:`~pathlib.Path`, a URL root as its URL text."""
        return self.backend.root

    @property
    def location(self) -> str:
        """The text to hand to another process or machine: ``Warehouse(location)`` opens the same tables."""
        return self.backend.location

    @property
    def fs(self) -> Any:
        """The fsspec filesystem of a URL root; None for a local root."""
        return self.backend.fs

    @property
    def is_url(self) -> bool:
        return self.backend.is_url

    @property
    def protocol(self) -> str:
        return self.backend.protocol

    @property
    def local_dir(self) -> Path:
        """Where side files (delta checkpoints, figures, exports) go: the root when it is local;
        for a URL root a local folder of this machine named after the URL
        (``<cache>/warehouse-local/<protocol>-<digest>``)."""
        return self.backend.local_dir

    def exists(self) -> bool:
        """Whether the root holds a warehouse: at least one table's folder."""
        return any(self.backend.is_folder(layout.table_key(table)) for table in SCHEMAS)

    def require_existing(self) -> Warehouse:
        """This warehouse, or a ValueError naming the root and how to make one (for commands that only read)."""
        if not self.exists():
            raise ValueError(
                f"{self.location} is not a warehouse (no table folder such as runs/ or edits/ in it) — "
                "point --warehouse/-w or $EDITCOLLAPSE_WAREHOUSE at one, or make one with `editcollapse sweep -w PATH`"
            )
        return self

    # --- paths ----------------------------------------------------------------------------------

    def table_dir(self, table: str) -> Path | str:
        """``table``'s folder: a Path, or an fsspec path (no protocol) under a URL root."""
        return self.backend.path(layout.table_key(table))

    def partition_dir(self, table: str, model: str, method: str, run_id: str) -> Path:
        """``<root>/<table>/model=<m>/method=<x>/run=<id>`` — a local folder. For a URL root it is
        the same layout under :attr:`local_dir`, for the stage's side files (the parts themselves
        are at :meth:`part_path`)."""
        return self.local_dir.joinpath(*layout.partition_key(table, model, method, run_id).split("/"))

    def part_path(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> Path | str:
        """Where a part lives: a Path under a local root, the full URL under a URL root."""
        return self.backend.url(layout.part_key(table, model, method, run_id, shard))

    def glob(self, table: str) -> str:
        """The glob that matches every finished part of ``table`` (never temp files): an absolute
        path, or a URL (DuckDB needs the filesystem registered: see :mod:`.catalog`)."""
        return self.backend.glob_url(layout.table_key(table), f"**/*{layout.PART_SUFFIX}")

    # --- parts ----------------------------------------------------------------------------------

    def write_part(
        self,
        table: str,
        rows: Iterable[Mapping[str, Any]] | pa.Table,
        *,
        model: str,
        method: str,
        run_id: str,
        shard: int | str,
    ) -> Path | str:
        """Atomically write one part (replacing an earlier one of the same name); return where."""
        return self.backend.url(self._parts.write(table, rows, model=model, method=method, run_id=run_id, shard=shard))

    def ensure_anchor(self, table: str) -> Path | str:
        """Write ``table``'s zero-row schema part unless an identical one exists; return its path
        (a Path, or an fsspec path without protocol)."""
        return self.backend.path(self._parts.ensure_anchor(table))

    def ensure_anchors(self) -> None:
        """Anchor every known table (so every catalog view binds, even before any data)."""
        self._parts.ensure_anchors()

    def has_part(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> bool:
        return self._parts.has(table, model, method, run_id, shard)

    def remove_part(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> None:
        """Delete one part (nothing happens when it is not there): a stage unmarks a finished shard
        before it rewrites it, so a writer killed half-way leaves a shard that is recomputed."""
        self.backend.remove(layout.part_key(table, model, method, run_id, shard))

    def read_part(
        self, table: str, model: str, method: str, run_id: str, shard: int | str, columns: list[str] | None = None
    ) -> pa.Table:
        """One part's rows (without partition columns); FileNotFoundError if it is not there."""
        return self._parts.read_one(table, model, method, run_id, shard, columns)

    def parts(self, table: str) -> list[Path] | list[str]:
        """Every finished data part of ``table`` (anchors and temp files excluded), sorted: Paths
        under a local root, fsspec paths (no protocol) under a URL root."""
        return [self.backend.path(key) for key in self._parts.keys(table)]

    def read(
        self, table: str, *, model: str | None = None, method: str | None = None, run_id: str | None = None
    ) -> pa.Table:
        """All rows of ``table`` (optionally one model/method/run) with the partition columns added."""
        return self._parts.read(table, model=model, method=method, run_id=run_id)

    def sound_parts(self, tables: Iterable[str], model: str, method: str, run_id: str, shard: int | str) -> bool:
        """Whether each of ``tables`` holds a sound part of this shard (see :mod:`.integrity`). A
        bad one is moved to quarantine, so the stage that owns it recomputes the shard."""
        sound = True
        for table in tables:
            key = layout.part_key(table, model, method, run_id, shard)
            if not self.backend.exists(key):
                sound = False
            elif integrity.part_problem(self.backend, table, key) is not None:
                sound = False
                with contextlib.suppress(FileNotFoundError):  # another worker quarantined it first
                    integrity.quarantine(self.backend, key)
        return sound

    def check(self, tables: Iterable[str] | None = None) -> list[TableReport]:
        """Verify every part of ``tables`` (default all); nothing is changed."""
        return [integrity.check_table(self.backend, table) for table in tables or SCHEMAS]

    def quarantine(self, reports: Iterable[TableReport]) -> list[str]:
        """Move the bad parts of ``reports`` to ``_quarantine/<stamp>/`` and re-anchor the tables
        whose anchor went with them; return the new keys."""
        stamp = integrity.quarantine_stamp()
        bad = [problem for report in reports for problem in report.bad]
        moved = [integrity.quarantine(self.backend, problem.key, stamp) for problem in bad]
        for table in {problem.table for problem in bad if layout.is_anchor(problem.key)}:
            self._parts.ensure_anchor(table, recheck=True)
        return moved

    def remove_stray_temps(self, table: str, model: str, method: str, run_id: str, older_than_s: float = 600.0) -> int:
        """Delete temp files of killed writers in one run's folder (only ones older than
        ``older_than_s``, so a live writer is never disturbed); return how many were removed.
        A URL root writes no temp files: nothing to remove."""
        return self._parts.remove_stray_temps(table, model, method, run_id, older_than_s)

    # --- claiming shards (several workers on one run): the protocol is in :mod:`.claims` --------

    def claim_path(self, model: str, method: str, run_id: str, shard: int) -> Path | str:
        """Where a shard's claim lives: a Path, or an fsspec path (no protocol) under a URL root."""
        return self.backend.path(layout.claim_key(model, method, run_id, shard))

    def claim(self, model: str, method: str, run_id: str, shard: int, *, stale_after_s: float = STALE_CLAIM_S) -> bool:
        """Take the claim on one shard (True), or find it held by a live worker (False). A claim
        not refreshed for ``stale_after_s`` (or held by a killed process of this host) is taken
        over. Exactly one winner where the backend creates exclusively: see :mod:`.claims`."""
        return claims.claim(self.backend, layout.claim_key(model, method, run_id, shard), stale_after_s=stale_after_s)

    def touch_claim(self, model: str, method: str, run_id: str, shard: int) -> None:
        """Show the claim's holder is alive (its age is what makes a claim stale)."""
        claims.touch(self.backend, layout.claim_key(model, method, run_id, shard))

    def release(self, model: str, method: str, run_id: str, shard: int) -> None:
        claims.release(self.backend, layout.claim_key(model, method, run_id, shard))

    def clear_dead_claim(self, model: str, method: str, run_id: str, shard: int) -> bool:
        """Delete a finished shard's claim left by a killed holder (see :func:`.claims.clear_if_dead`)."""
        return claims.clear_if_dead(self.backend, layout.claim_key(model, method, run_id, shard))

    def claims(self) -> list[str]:
        """Every claim held now (paths relative to ``_claims``)."""
        return claims.held(self.backend)

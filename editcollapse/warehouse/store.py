"""Atomic, idempotent Parquet parts in a hive-partitioned tree, on a local path or an fsspec URL.

Layout: ``<root>/<table>/model=<m>/method=<x>/run=<id>/part-<name>.parquet``. A part's name is a
deterministic function of (run, shard): writing it again replaces it, never duplicates it.
Readers glob ``*.parquet`` only, so stray temp files of killed writers are invisible to them.

The root is either a local (or shared, e.g. NFS) directory or an fsspec URL (``s3://bucket/wh``,
``gs://…``, ``memory://wh`` …), so workers on several machines can write to the same tables.
``file://`` URLs are local directories. How each backend makes a part appear atomically:

* **local / shared filesystem**: written to a hidden ``.part-<name>.<random>.parquet.tmp`` beside
  its final name, fsynced, then ``os.replace``d into place (atomic rename);
* **URL (object store)**: the finished Parquet file is built in memory and stored with one
  ``pipe_file`` call — one PUT (or one multipart upload, completed at once) of the whole object,
  which an object store makes visible all at once; there are no temp files. A URL whose
  filesystem is not an object store (``sftp://``, ``webdav://`` …) is not atomic: a reader may
  briefly see a half-written part.

Every table also holds one zero-row *schema anchor* part under ``model=_schema/method=_schema/
run=_schema``: it gives readers the table's columns before any data exists (DuckDB cannot bind a
view over a glob that matches nothing) and contributes no rows.

Shard claims (several workers on one run id): see :meth:`Warehouse.claim` for the guarantee of
each backend. Side files that are not tables (sequential delta checkpoints, figures, lm-eval
suites, JSON exports) go to :attr:`Warehouse.local_dir`: the root itself when it is local, a
local folder per URL otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from editcollapse.core.paths import cache_dir
from editcollapse.warehouse.schemas import PARTITION_COLUMNS, schema_for

ANCHOR = "_schema"
TEMP_SUFFIX = ".parquet.tmp"
CLAIMS = "_claims"  # <root>/_claims/model=…/method=…/run=…/shard-00007.claim: who computes a shard
STALE_CLAIM_S = 1800.0  # a claim not refreshed for this long belongs to a dead worker
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_MANGLED_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")  # pathlib made "memory://x" "memory:/x"
LOCAL_PROTOCOLS = ("file", "local")


def partition_value(value: str) -> str:
    """``value`` made safe as a hive partition value (path separators, ``=`` … become ``_``)."""
    if not value:
        raise ValueError("a partition value (model, method or run id) must be non-empty")
    return _UNSAFE.sub("_", value)


def part_name(shard: int | str) -> str:
    """The file name of a part: ``part-00012.parquet`` for shard 12, ``part-<name>.parquet`` otherwise."""
    label = f"{shard:05d}" if isinstance(shard, int) else partition_value(shard)
    return f"part-{label}.parquet"


def is_url(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is an fsspec URL (``protocol://…``) rather than a local path."""
    return bool(_URL.match(os.fspath(root)))


def normalise_root(root: str | os.PathLike[str]) -> str:
    """``root`` as text; a URL that went through ``pathlib.Path`` (``s3:/bucket``) gets its ``//`` back."""
    text = os.fspath(root)
    mangled = _MANGLED_URL.match(text)
    if mangled and not _URL.match(text) and len(mangled.group(1)) > 1:
        text = f"{mangled.group(1)}://{text[mangled.end() :]}"
    return text


def to_arrow(table: str, rows: Iterable[Mapping[str, Any]] | pa.Table) -> pa.Table:
    """Rows (dicts) as an Arrow table of ``table``'s schema; unknown keys are an error naming them."""
    schema = schema_for(table)
    if isinstance(rows, pa.Table):
        unknown = set(rows.column_names) - set(schema.names)
        if unknown:
            raise ValueError(f"table {table!r} has no column(s) {sorted(unknown)}")
        for field in schema:
            if field.name not in rows.column_names:
                rows = rows.append_column(field.name, pa.nulls(rows.num_rows, field.type))
        return rows.select(schema.names).cast(schema)
    records = list(rows)
    for index, record in enumerate(records):
        unknown = set(record) - set(schema.names)
        if unknown:
            raise ValueError(f"row {index} for table {table!r} has unknown column(s) {sorted(unknown)}")
    try:
        return pa.Table.from_pylist(records, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"rows for table {table!r} do not fit its schema: {error}") from error


def _parquet_bytes(data: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(data, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class Warehouse:
    """A warehouse root: where each table's parts live, and how they are written and found.

    ``root`` is a local directory (kept as a :class:`~pathlib.Path`, as before) or an fsspec URL
    (kept as the URL text); ``location`` is the text to hand to another process or machine
    (``Warehouse(store.location)`` opens the same tables); ``fs`` is the fsspec filesystem of a
    URL root (None for a local root).
    """

    def __init__(self, root: str | os.PathLike[str] | Warehouse | None = None) -> None:
        if isinstance(root, Warehouse):
            root = root.location
        if root is None:
            root = os.environ.get("EDITCOLLAPSE_WAREHOUSE", "warehouse")
        text = normalise_root(root)
        self.fs: Any = None
        self._base = ""
        self._anchored: set[str] = set()
        if is_url(text):
            import fsspec

            fs, path = fsspec.core.url_to_fs(text)
            if set(_protocols(fs)) & set(LOCAL_PROTOCOLS):
                text = path  # file:// is a local directory: the local code path, its guarantees
            else:
                self.fs = fs
                self._base = path.rstrip("/") or "/"
                self.root: Path | str = fs.unstrip_protocol(self._base)
                self.location = str(self.root)
                return
        self.root = Path(text)
        self.location = str(self.root)

    def __repr__(self) -> str:
        return f"Warehouse({self.location!r})"

    @property
    def is_url(self) -> bool:
        return self.fs is not None

    @property
    def protocol(self) -> str:
        return _protocols(self.fs)[0] if self.fs is not None else "file"

    @property
    def local_dir(self) -> Path:
        """Where side files (delta checkpoints, figures, exports) go: the root when it is local;
        for a URL root a local folder of this machine named after the URL
        (``<cache>/warehouse-local/<protocol>-<digest>``)."""
        if self.fs is None:
            return Path(self.root)
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:12]
        return cache_dir() / "warehouse-local" / f"{self.protocol}-{digest}"

    # --- paths ----------------------------------------------------------------------------------

    def _join(self, *parts: str) -> Path | str:
        """A location under the root: a Path (local root) or an fsspec path without protocol."""
        if self.fs is None:
            return Path(self.root).joinpath(*parts)
        return "/".join([self._base.rstrip("/"), *parts])

    def _partition_parts(self, model: str, method: str, run_id: str) -> list[str]:
        values = (partition_value(model), partition_value(method), partition_value(run_id))
        return [f"{k}={v}" for k, v in zip(PARTITION_COLUMNS, values)]

    def table_dir(self, table: str) -> Path | str:
        schema_for(table)
        return self._join(table)

    def partition_dir(self, table: str, model: str, method: str, run_id: str) -> Path:
        """``<root>/<table>/model=<m>/method=<x>/run=<id>`` — a local folder. For a URL root it is
        the same layout under :attr:`local_dir`, for the stage's side files (the parts themselves
        are at :meth:`part_path`)."""
        schema_for(table)
        base = Path(self.root) if self.fs is None else self.local_dir
        return base.joinpath(table, *self._partition_parts(model, method, run_id))

    def _part(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> Path | str:
        schema_for(table)
        return self._join(table, *self._partition_parts(model, method, run_id), part_name(shard))

    def part_path(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> Path | str:
        """Where a part lives: a Path under a local root, the full URL under a URL root."""
        path = self._part(table, model, method, run_id, shard)
        return path if self.fs is None else self.fs.unstrip_protocol(path)

    def glob(self, table: str) -> str:
        """The glob that matches every finished part of ``table`` (never temp files): an absolute
        path, or a URL (DuckDB needs the filesystem registered: see :mod:`.catalog`)."""
        if self.fs is None:
            return str(Path(self.table_dir(table)).resolve() / "**" / "*.parquet")
        return self.fs.unstrip_protocol(f"{self.table_dir(table)}/**/*.parquet")

    # --- writing --------------------------------------------------------------------------------

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
        data = to_arrow(table, rows)
        self.ensure_anchor(table)
        path = self._part(table, model, method, run_id, shard)
        self._atomic_write(data, path)
        return path if self.fs is None else self.fs.unstrip_protocol(path)

    def _atomic_write(self, data: pa.Table, path: Path | str) -> None:
        if self.fs is None:
            _atomic_write(data, Path(path))
            return
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        self.fs.pipe_file(path, _parquet_bytes(data))  # one PUT of the finished object

    def ensure_anchor(self, table: str) -> Path | str:
        """Write ``table``'s zero-row schema part unless an identical one exists."""
        schema = schema_for(table)
        path = self._part(table, ANCHOR, ANCHOR, ANCHOR, "schema")
        if table in self._anchored:  # a URL root: checked once per handle (each check is a round trip)
            return path
        if self._exists(path):
            try:
                if self._read_schema(path).equals(schema, check_metadata=False):
                    self._remember_anchor(table)
                    return path
            except (OSError, pa.ArrowInvalid):
                pass  # unreadable anchor: rewrite it below
        self._atomic_write(schema.empty_table(), path)
        self._remember_anchor(table)
        return path

    def _remember_anchor(self, table: str) -> None:
        if self.fs is not None:
            self._anchored.add(table)

    def ensure_anchors(self) -> None:
        """Anchor every known table (so every catalog view binds, even before any data)."""
        from editcollapse.warehouse.schemas import SCHEMAS

        for table in SCHEMAS:
            self.ensure_anchor(table)

    # --- claiming shards (several workers on one run) -------------------------------------------

    def claim_path(self, model: str, method: str, run_id: str, shard: int) -> Path | str:
        return self._join(CLAIMS, *self._partition_parts(model, method, run_id), f"shard-{shard:05d}.claim")

    def claim(self, model: str, method: str, run_id: str, shard: int, *, stale_after_s: float = STALE_CLAIM_S) -> bool:
        """Take the claim on one shard (True), or find it held by a live worker (False).

        The claim (``host pid time``) is created only if absent, so of several workers one wins:

        * local / shared filesystem: a temp file with the content is hard-linked to the claim's
          name (``link`` fails if it exists: exactly one winner, never an empty claim);
        * a URL: fsspec's write-if-absent, ``pipe_file(mode="create")``, then the claim is read
          back. Where the filesystem makes that a conditional write (GCS ``ifGenerationMatch=0``,
          S3 ``If-None-Match`` in s3fs versions that implement it, ``memory://``) exactly one
          worker wins. Elsewhere fsspec checks then writes: the last writer's content wins the
          read-back and the others step back, but two workers racing within the same instant
          may both compute a shard — wasted work only: its parts have the same names and rows,
          so the tables never hold it twice.

        A claim older than ``stale_after_s`` (its holder stopped refreshing it), or held by a
        process of this host that no longer exists (killed), is broken and claimed afresh. The
        holder refreshes it with :meth:`touch_claim` and removes it with :meth:`release`.
        """
        if self.fs is not None:
            return self._claim_url(model, method, run_id, shard, stale_after_s)
        path = Path(self.claim_path(model, method, run_id, shard))
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            if _create_claim(path):
                return True
            try:
                if time.time() - path.stat().st_mtime < stale_after_s and not _holder_dead(path):
                    return False
                broken = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:12]}")
                os.rename(path, broken)
                if time.time() - broken.stat().st_mtime < stale_after_s and not _holder_dead(broken):
                    # a live claim, taken meanwhile by another worker: put it back
                    with contextlib.suppress(FileExistsError):
                        os.link(broken, path)
                    broken.unlink()
                    return False
                broken.unlink()
            except FileNotFoundError:
                pass  # released or broken by another worker meanwhile: try again
        return False

    def _claim_url(self, model: str, method: str, run_id: str, shard: int, stale_after_s: float) -> bool:
        """A claim on a URL root: conditional create; the heartbeat time lives in the content
        (object stores have no cheap, writable mtime). Breaking a stale claim deletes it and
        creates afresh: two workers breaking the same dead claim at once may both win (see
        :meth:`claim`)."""
        path = str(self.claim_path(model, method, run_id, shard))
        self.fs.makedirs(self.fs._parent(path), exist_ok=True)
        for _ in range(2):
            content = _claim_content()
            try:
                self.fs.pipe_file(path, content, mode="create")
            except FileExistsError:
                pass
            else:
                # read back: exact where the create was conditional; where a backend ignored the
                # condition, the last writer's content wins and the others step back
                return self._read_claim(path) == content
            held = self._read_claim(path)
            if held is None:
                continue  # released meanwhile: try again
            if not _claim_stale(held.decode(errors="replace"), stale_after_s):
                return False
            with contextlib.suppress(FileNotFoundError):
                if self._read_claim(path) == held:  # still the dead holder's: break it
                    self.fs.rm_file(path)
        return False

    def _read_claim(self, path: str) -> bytes | None:
        self.fs.invalidate_cache(path)
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def touch_claim(self, model: str, method: str, run_id: str, shard: int) -> None:
        """Show the claim's holder is alive (its age is what makes a claim stale)."""
        path = self.claim_path(model, method, run_id, shard)
        if self.fs is None:
            Path(path).touch()
        else:
            self.fs.pipe_file(path, _claim_content())

    def release(self, model: str, method: str, run_id: str, shard: int) -> None:
        path = self.claim_path(model, method, run_id, shard)
        if self.fs is None:
            Path(path).unlink(missing_ok=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)

    def claims(self) -> list[str]:
        """Every claim held now (paths relative to ``_claims``)."""
        if self.fs is None:
            folder = Path(self.root) / CLAIMS
            return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.claim")) if folder.is_dir() else []
        folder = str(self._join(CLAIMS)).strip("/")
        self.fs.invalidate_cache()
        return sorted(p.strip("/")[len(folder) + 1 :] for p in self.fs.glob(f"{self._join(CLAIMS)}/**/*.claim"))

    # --- finding and reading --------------------------------------------------------------------

    def _exists(self, path: Path | str) -> bool:
        if self.fs is None:
            return Path(path).is_file()
        self.fs.invalidate_cache(self.fs._parent(path))  # another worker may have written it
        return bool(self.fs.isfile(path))

    def _read_schema(self, path: Path | str) -> pa.Schema:
        if self.fs is None:
            return pq.read_schema(path)
        with self.fs.open(path, "rb") as handle:
            return pq.read_schema(handle)

    def _read_file(
        self, path: Path | str, schema: pa.Schema | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        if self.fs is None:
            return pq.read_table(path, schema=schema, columns=columns)
        with self.fs.open(path, "rb") as handle:
            return pq.read_table(handle, schema=schema, columns=columns)

    def has_part(self, table: str, model: str, method: str, run_id: str, shard: int | str) -> bool:
        return self._exists(self._part(table, model, method, run_id, shard))

    def read_part(
        self, table: str, model: str, method: str, run_id: str, shard: int | str, columns: list[str] | None = None
    ) -> pa.Table:
        """One part's rows (without partition columns); FileNotFoundError if it is not there."""
        return self._read_file(self._part(table, model, method, run_id, shard), schema_for(table), columns)

    def parts(self, table: str) -> list[Path] | list[str]:
        """Every finished data part of ``table`` (anchors and temp files excluded), sorted: Paths
        under a local root, fsspec paths (no protocol) under a URL root."""
        folder = self.table_dir(table)
        if self.fs is None:
            folder = Path(folder)
            if not folder.is_dir():
                return []
            return sorted(p for p in folder.rglob("*.parquet") if f"model={ANCHOR}" not in p.parts)
        self.fs.invalidate_cache()
        if not self.fs.isdir(folder):
            return []
        return sorted(p for p in self.fs.glob(f"{folder}/**/*.parquet") if f"model={ANCHOR}" not in p.split("/"))

    def _partition_values(self, table: str, path: Path | str) -> dict[str, str]:
        if self.fs is None:
            segments = Path(path).parent.relative_to(Path(self.table_dir(table))).parts
        else:
            folder = str(self.table_dir(table)).strip("/")
            segments = self.fs._parent(path).strip("/")[len(folder) + 1 :].split("/")
        return dict(segment.split("=", 1) for segment in segments)

    def read(
        self, table: str, *, model: str | None = None, method: str | None = None, run_id: str | None = None
    ) -> pa.Table:
        """All rows of ``table`` (optionally one model/method/run) with the partition columns added."""
        wanted = {"model": model, "method": method, "run": run_id}
        pieces = []
        for path in self.parts(table):
            values = self._partition_values(table, path)
            if any(v is not None and values.get(k) != partition_value(v) for k, v in wanted.items()):
                continue
            piece = self._read_file(path, schema=schema_for(table))
            for column in PARTITION_COLUMNS:
                piece = piece.append_column(column, pa.array([values[column]] * piece.num_rows, pa.string()))
            pieces.append(piece)
        if not pieces:
            schema = schema_for(table)
            for column in PARTITION_COLUMNS:
                schema = schema.append(pa.field(column, pa.string()))
            return schema.empty_table()
        return pa.concat_tables(pieces)

    def remove_stray_temps(self, table: str, model: str, method: str, run_id: str, older_than_s: float = 600.0) -> int:
        """Delete temp files of killed writers in one run's folder (only ones older than
        ``older_than_s``, so a live writer is never disturbed); return how many were removed.
        A URL root writes no temp files: nothing to remove."""
        if self.fs is not None:
            return 0
        folder = self.partition_dir(table, model, method, run_id)
        removed = 0
        if folder.is_dir():
            cutoff = time.time() - older_than_s
            for temp in folder.glob(f"*{TEMP_SUFFIX}"):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink(missing_ok=True)
                    removed += 1
        return removed


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _claim_content() -> bytes:
    return f"{socket.gethostname()} {os.getpid()} {time.time():.3f} {uuid.uuid4().hex[:8]}\n".encode()


def _claim_stale(content: str, stale_after_s: float) -> bool:
    """Whether a URL claim's heartbeat (third field) is older than ``stale_after_s``, or it names a
    dead process of this host. Unreadable content counts as live (until it is rewritten)."""
    try:
        host, pid, stamp = content.split()[:3]
        if time.time() - float(stamp) >= stale_after_s:
            return True
        if host == socket.gethostname():
            os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False
    return False


def _create_claim(path: Path) -> bool:
    """Create the claim file with its content in one step (a hard link fails if it exists), so a
    worker killed at any moment never leaves an empty claim that no one can judge."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    temp.write_text(f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n")
    try:
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    finally:
        temp.unlink()


def _holder_dead(claim: Path) -> bool:
    """Whether ``claim`` names a process of this host that is gone (a killed worker)."""
    try:
        host, pid, _ = claim.read_text().split()
        if host != socket.gethostname():
            return False  # another machine's worker: only its age tells
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False  # unreadable, half-written or not ours to signal: treat as alive
    return False


def _atomic_write(data: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name.removesuffix(".parquet")
    temp = path.with_name(f".{stem}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as handle:
            pq.write_table(data, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)

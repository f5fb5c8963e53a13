"""The options every stage command shares, defined once: the same name, type, default and help
everywhere (``editcollapse sweep --limit`` means what ``editcollapse study --limit`` means).

Each function returns a fresh ``typer.Option`` to use as a parameter's default, e.g.
``warehouse: str = options.warehouse()``. The warehouse is a ``str``, not a ``Path``: a ``Path``
turns an fsspec URL such as ``s3://bucket/wh`` into ``s3:/bucket/wh``.
"""

from __future__ import annotations

from typing import Any

import typer

from editcollapse.core.collapse import COLLAPSE_THRESHOLD, DEFAULT_PPL_CORPUS
from editcollapse.core.defaults import EMBEDDED_MODEL
from editcollapse.stages.sweep.plan import DEFAULT_BATCH

WAREHOUSE_HELP = (
    "warehouse root: a directory or an fsspec URL such as s3://bucket/wh "
    "(default: $EDITCOLLAPSE_WAREHOUSE or ./warehouse)"
)
METHODS_HELP = "editing method: rome, r-rome, memit, alphaedit, ft, ft-l-inf, mend"


def warehouse() -> Any:
    return typer.Option(None, "--warehouse", "-w", help=WAREHOUSE_HELP)


def model(default: str | None = EMBEDDED_MODEL, help: str = "model name, local folder or hub id") -> Any:
    return typer.Option(default, help=f"{help} (`editcollapse models` lists the known ones)")


def method(help: str = METHODS_HELP) -> Any:
    return typer.Option("rome", help=help)


def limit(what: str, default: int | None = None) -> Any:
    """``--limit N``: at least 1; omitted, every one (or ``default``). 0 is refused, never "all"."""
    unset = "omit for all" if default is None else f"default {default}"
    return typer.Option(default, "--limit", min=1, help=f"first N {what} (at least 1; {unset})")


def run_id() -> Any:
    return typer.Option(
        None, help="run id (default: a digest of the parameters; the same command resumes the same run)"
    )


def device() -> Any:
    return typer.Option(None, help="cpu, cuda … (default: cuda when available)")


def seed(help: str = "seed of everything sampled (cases, orderings, generated data)") -> Any:
    return typer.Option(0, help=help)


def threshold(help: str = "collapse threshold on ME-PPL") -> Any:
    return typer.Option(COLLAPSE_THRESHOLD, help=help)


def ppl_corpus(default: str = DEFAULT_PPL_CORPUS) -> Any:
    return typer.Option(
        default,
        help="perplexity corpus: me-ppl-50|1k|10k, embedded-50|1k|5k or a file "
        "(me-ppl-50 falls back to embedded-50 when its file is not here)",
    )


def prefect() -> Any:
    return typer.Option(True, help="run as a Prefect flow (--no-prefect: plain Python, same tables)")


def hparams() -> Any:
    """``--hparams FILE``, on every command that edits."""
    return typer.Option(
        None,
        "--hparams",
        exists=True,
        dir_okay=False,
        help="hyperparameters YAML of your own (default: the packaged file for the model; "
        "`editcollapse hparams show METHOD MODEL` prints it)",
    )


def batch() -> Any:
    """``--batch N``: the sweep's batched engine."""
    return typer.Option(
        DEFAULT_BATCH,
        min=1,
        help="edits computed together by the batched engine (ROME, r-ROME); "
        "1 = the one-at-a-time reference loop; other methods always run one at a time",
    )


def task_runner() -> Any:
    """``--task-runner``: where the sweep's shards run."""
    return typer.Option(
        "local",
        help="where sweep shards run: local, threads:N, dask (local cluster), "
        "dask:N (N workers), dask:N:MEMORY, dask:tcp://HOST:8786 (a running scheduler)",
    )

"""Where a flow's mapped tasks run, chosen by a string (a flow parameter, a CLI option).

``local``             one task at a time in the flow's process (the default: on a CPU machine
                      parallel shards only compete for cores);
``threads:N``         N threads in the flow's process;
``dask``              a temporary Dask local cluster, one single-threaded worker process per core;
``dask:N``            a temporary Dask local cluster of N worker processes;
``dask:N:MEMORY``     the same, each worker limited to MEMORY (``4GiB``, ``8GB`` …: Dask pauses a
                      worker at 80 % of it and restarts it at 95 %, and the shard is retried
                      elsewhere); without it Dask gives each worker an equal share of the machine
                      (``memory_limit="auto"``), so memory is always bounded per worker;
``dask:ADDRESS``      an existing Dask scheduler (``tcp://host:8786``): workers on other machines,
                      which need this package installed and the same warehouse root (a shared
                      directory or an fsspec URL); their memory limit is set where they start
                      (``dask worker ADDRESS --memory-limit 8GiB``).
"""

from __future__ import annotations

import re

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

LOCAL = "local"
_LOCAL_CLUSTER = re.compile(r"^(\d+)?(?::(\d+(?:\.\d+)?\s*[KMGT]i?B))?$", re.IGNORECASE)


def make_task_runner(spec: str) -> TaskRunner:
    """The task runner named by ``spec`` (see the module docstring); a bad spec is a ValueError."""
    kind, _, argument = spec.partition(":")
    if kind == LOCAL and not argument:
        return ThreadPoolTaskRunner(max_workers=1)
    if kind == "threads" and argument.isdigit() and int(argument) > 0:
        return ThreadPoolTaskRunner(max_workers=int(argument))
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        local = _LOCAL_CLUSTER.match(argument)
        if local and (not local.group(1) or int(local.group(1)) > 0):
            workers, memory = local.groups()
            options = {"threads_per_worker": 1, "processes": True, "memory_limit": memory or "auto"}
            if workers:
                options["n_workers"] = int(workers)
            return DaskTaskRunner(cluster_kwargs=options)
        if "://" in argument:
            return DaskTaskRunner(address=argument)
    raise ValueError(
        f"task runner {spec!r}: expected 'local', 'threads:N', 'dask', 'dask:N', 'dask:N:MEMORY' "
        "(e.g. dask:2:4GiB) or 'dask:ADDRESS' (tcp://host:8786)"
    )

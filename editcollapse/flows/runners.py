"""Where a flow's mapped tasks run, chosen by a string (a flow parameter, a CLI option).

``local``        one task at a time in the flow's process (the default: on a CPU machine
                 parallel shards only compete for cores);
``threads:N``    N threads in the flow's process;
``dask``         a temporary Dask local cluster, one single-threaded worker process per core;
``dask:N``       a temporary Dask local cluster of N worker processes;
``dask:ADDRESS`` an existing Dask scheduler (``tcp://host:8786``): workers on other machines,
                 which need this package installed and the same warehouse root.
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

LOCAL = "local"


def make_task_runner(spec: str) -> TaskRunner:
    """The task runner named by ``spec`` (see the module docstring); a bad spec is a ValueError."""
    kind, _, argument = spec.partition(":")
    if kind == LOCAL and not argument:
        return ThreadPoolTaskRunner(max_workers=1)
    if kind == "threads" and argument.isdigit() and int(argument) > 0:
        return ThreadPoolTaskRunner(max_workers=int(argument))
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if not argument or argument.isdigit():
            workers = {"n_workers": int(argument)} if argument else {}
            return DaskTaskRunner(cluster_kwargs={**workers, "threads_per_worker": 1, "processes": True})
        return DaskTaskRunner(address=argument)
    raise ValueError(f"task runner {spec!r}: expected 'local', 'threads:N', 'dask', 'dask:N' or 'dask:ADDRESS'")

"""Processes racing for the shard claims of one run, each alive until every racer has reported.

A racer that exited while holding claims would be a dead holder, and a slower racer would rightly
take its shards over; the race tests are about exclusive creation, so every racer holds its claims
(blocks on stdin) until the parent has read all results and closes the pipes.
"""

from __future__ import annotations

import json
import subprocess
import sys

RACER = (
    "import json, sys\nsys.path.extend(sys.argv[2:])\nfrom editcollapse.warehouse import Warehouse\n"
    "store = Warehouse(sys.argv[1])\n"
    "print(json.dumps([s for s in range(20) if store.claim('m', 'rome', 'race', s)]), flush=True)\n"
    "sys.stdin.read()\n"
)


def race_for_claims(root: str, racers: int = 4, env: dict[str, str] | None = None) -> list[list[int]]:
    """The shards (of 20) each of ``racers`` processes won on the warehouse at ``root``."""
    path = [p for p in sys.path if p]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, root, *path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(racers)
    ]
    try:
        won = [json.loads(process.stdout.readline()) for process in processes]
    finally:
        for process in processes:
            process.stdin.close()
            process.wait(timeout=120)
    return won

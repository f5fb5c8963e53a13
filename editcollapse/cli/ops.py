"""`editcollapse setup-prefect`: the work pool and the GPU concurrency limit on a Prefect server."""

from __future__ import annotations

import typer


def setup_prefect(
    pool: str = typer.Option("editcollapse", help="process work pool to create (prefect.yaml's pool)"),
    gpu_limit: int = typer.Option(1, help="how many task runs tagged gpu may run at once"),
) -> None:
    """Create the process work pool (unless it exists) and the `gpu` tag limit; PREFECT_API_URL
    names the server."""
    from editcollapse.ops.setup import setup_server

    done = setup_server(pool, gpu_limit)
    typer.echo(f"work pool {done['pool']!r} {'created' if done['pool_created'] else 'already there'}; "
               f"tag {done['tag']!r} limited to {done['limit']} concurrent task run(s)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("setup-prefect")(setup_prefect)

"""Operating the study: a local Prefect server, work pools, workers, concurrency limits."""

"""The study's stages as pure functions over the warehouse: sweep, HardCF, sequential, HardEdit, downstream,
MEND training, analysis.

Nothing here imports Prefect; :mod:`editcollapse.orchestration` wraps these in flows.
"""

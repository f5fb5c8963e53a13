"""Sequential editing (paper §6.2): edit one case after another, watch perplexity and weights move.

``groups`` picks the hard and normal cases, ``trajectory`` runs one resumable trajectory,
``run`` ties trajectories to a run id and the warehouse, ``plots`` draws the figures. Prefect
lives in ``editcollapse.orchestration.flows.sequential`` only.
"""

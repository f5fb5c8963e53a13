"""The study's analysis (stage 6): read every stage's table, write figures, CSVs and a report.

``tables`` reads the warehouse (DuckDB) and derives the tables, ``plots`` draws the figures,
``report`` writes the CSVs and ``report.md``, ``page`` the self-contained ``report.html``, ``run``
ties them together in
:func:`~editcollapse.stages.analysis.run.run_analysis`. Prefect lives in
``editcollapse.orchestration.flows.analysis`` only.
"""

"""Tiny edit cases and a tiny perplexity corpus for the sweep tests (tiny models have 256 positions)."""

from __future__ import annotations

import json
from pathlib import Path

from editcollapse.core.case import EditCase, NeighborhoodPrompt
from editcollapse.warehouse import Warehouse, connect

SUBJECTS = ["Eiffel", "Louvre", "Seine", "Lyon", "Nice", "Metz", "Brest", "Arles", "Dijon", "Reims", "Tours", "Nancy"]
SENTENCES = [
    "The river runs through the old town and past the mill.",
    "She walked to the market early in the morning to buy bread.",
    "Scientists measured the temperature of the lake every day.",
    "The committee will meet again next week to discuss the budget.",
]


def tiny_cases(n: int) -> list[EditCase]:
    return [
        EditCase(
            case_id=f"test:{i}",
            dataset="test",
            prompt="{} is located in",
            subject=subject,
            target_new=" Rome",
            target_true=" Paris",
            paraphrase_prompts=(f"Where is {subject}? In",),
            neighborhood=(NeighborhoodPrompt("Berlin is in", " Germany"),),
        )
        for i, subject in enumerate(SUBJECTS[:n])
    ]


def write_files(folder: Path, n: int) -> tuple[Path, Path]:
    """A HardEdit-form case file (with one invalid record) and a tiny perplexity corpus."""
    records = [
        {
            "prompt": c.filled_prompt,
            "subject": c.subject,
            "target_new": c.target_new.strip(),
            "ground_truth": c.target_true.strip(),
        }
        for c in tiny_cases(n)
    ]
    records.append({"prompt": "Nothing here", "subject": "Zzz", "target_new": "Rome", "ground_truth": "Paris"})
    cases, corpus = folder / "cases.json", folder / "ppl.json"
    cases.write_text(json.dumps(records))
    corpus.write_text(json.dumps([{"Corpus": "test", "Text": t} for t in SENTENCES]))
    return cases, corpus


COMPARED = {
    "edits": "case_id, shard, status, error, denominator, right_norm, delta_fro, hparams_hash, diagnostics",
    "ppl": "case_id, shard, ppl_mean, ppl_corpus, ppl_per_text, collapsed",
    "edit_metrics": "case_id, phase, metric, value",
    "cases": "case_id, shard, prompt, subject, target_new",
}
"""The columns of each swept table that two runs of one computation must hold equal (not times)."""


def table_rows(store: Warehouse, table: str) -> list[tuple]:
    """``table``'s :data:`COMPARED` columns, every row, sorted: equal lists = nothing lost or duplicated."""
    return connect(store).execute(f"SELECT {COMPARED[table]} FROM {table} ORDER BY ALL").fetchall()

"""Evaluate one model of a downstream comparison: rebuild its edit, apply it, score, restore.

The model is loaded once; each edit is applied in place inside ``Delta.applied`` (restored bit for
bit afterwards), perplexity and the lm-eval tasks are measured on the edited weights, and the
result is a list of ``downstream`` table rows.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from editcollapse.core.delta import Delta
from editcollapse.stages.downstream.runner import LoadedTasks, evaluate_model
from editcollapse.stages.downstream.selection import EditRef


@dataclass
class DownstreamContext:
    """What every model of one comparison shares (loaded once)."""

    loaded: Any  # editcollapse.models.LoadedModel
    tasks: LoadedTasks
    ppl_texts: list[str]
    method: str
    run_id: str
    limit: int | None = None
    batch_size: int = 8
    bootstrap_iters: int = 1000
    hparams_file: str | None = None  # the editor's hyperparameters (default: the packaged file)
    _editor: tuple[Any, Any] | None = field(default=None, repr=False)  # (Editor, its Hparams)

    def editor(self) -> tuple[Any, Any]:
        """The editor and hyperparameters for re-running edits, set up as the sweep sets them up."""
        if self._editor is None:
            from editcollapse.editors.api import get_editor, hparams_for

            self._editor = (get_editor(self.method), hparams_for(self.loaded, self.method, self.hparams_file))
        return self._editor


def delta_for(ref: EditRef, context: DownstreamContext) -> Delta | None:
    """The weight change of ``ref``: its stored Deltas summed, or its case re-edited (None for baseline)."""
    if ref.is_baseline:
        return None
    if ref.delta_paths:
        deltas = [Delta.load(path) for path in ref.delta_paths]
        total = deltas[0]
        for delta in deltas[1:]:
            total = total + delta
        return total
    if ref.case is None:
        raise ValueError(f"edit {ref.ref}: neither stored Deltas nor a case to re-edit")
    import torch

    from editcollapse.stages.sweep.single import case_seed

    editor, hparams = context.editor()
    loaded = context.loaded
    torch.manual_seed(case_seed(ref.seed, ref.case.case_id))  # the sweep's per-case seed
    return editor.edit(loaded.model, loaded.tokenizer, loaded.arch, [ref.case], hparams)


def evaluate_ref(ref: EditRef, context: DownstreamContext) -> list[dict[str, Any]]:
    """``downstream`` rows for the model ``ref`` names (perplexity in every row's ``ppl_mean``)."""
    from editcollapse.evaluation.perplexity import perplexity

    loaded = context.loaded
    delta = delta_for(ref, context)
    with delta.applied(loaded.model) if delta is not None else nullcontext():
        ppl = perplexity(loaded.model, loaded.tokenizer, context.ppl_texts).mean_per_text
        scores = evaluate_model(
            loaded.model,
            loaded.tokenizer,
            context.tasks,
            limit=context.limit,
            batch_size=context.batch_size,
            device=str(loaded.device),
            bootstrap_iters=context.bootstrap_iters,
        )
    return [
        {
            "run_id": context.run_id,
            "edit_ref": ref.ref,
            "source_table": ref.source_table,
            "task": score.task,
            "metric": score.metric if score.filter == "none" else f"{score.metric},{score.filter}",
            "value": score.value,
            "stderr": None if math.isnan(score.stderr) else score.stderr,
            "n": score.n,
            "ppl_mean": float(ppl),
        }
        for score in scores
    ]

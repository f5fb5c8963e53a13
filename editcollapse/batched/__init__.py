"""The batched single-edit engine: many independent edits per forward pass (issue #11).

* :mod:`.layers` — hidden states below the edited layer, computed once and fed back in while the
  layers below are skipped;
* :mod:`.lowrank` — B rank-one-edited models in one forward pass: every batch row carries its own
  low-rank change of the edited module, through a hook (no weight copies, no restore);
* :mod:`.rome` — ROME/r-ROME updates of B cases at once (k*, left vectors, v* with per-case early
  stopping), built from the one-case editor's pieces;
* :mod:`.evaluate` — edit metrics and ME-PPL of B edited models, batched.

The one-at-a-time path (``editcollapse.sweep.engine``, ``--batch 1``) is the reference; the tests
check that this engine's deltas, metrics and perplexities equal it within float tolerance.
"""

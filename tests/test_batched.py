"""The batched single-edit engine equals the one-at-a-time path (ROME / r-ROME) within float tolerance.

Tolerances (float32 models; batching changes matrix shapes, hence rounding): ROME's right vector
within 1e-3 relative (observed ≤ 6e-5 on the tiny models), left vector 1e-5, v* step counts equal;
ME-PPL within 1e-6 relative (observed ~1e-9: its log-softmax is float64), edit metrics within 1e-6
absolute. SmolLM2: right vector 1e-3 relative, ME-PPL 1e-4 relative, metrics 1e-4 absolute.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from editcollapse.core.case import EditCase
from editcollapse.editors.api import hparams_for
from editcollapse.editors.rome import batched as batched_rome
from editcollapse.editors.rome import target_vector
from editcollapse.editors.rome.batched import BatchedROME
from editcollapse.editors.rome.editor import compute_rome_update, editor
from editcollapse.evaluation.batched import CaseScores, EditedForward, PerplexityCorpus, locality_references
from editcollapse.evaluation.edit_metrics import locality_reference, measure_cases
from editcollapse.evaluation.perplexity import perplexity
from editcollapse.models import load_model
from editcollapse.models.layers import blocks_of, hidden_below, skipping_below
from editcollapse.stages.sweep.batched import groups_of
from editcollapse.stages.sweep.plan import SweepConfig
from editcollapse.stages.sweep.run import run_sweep
from editcollapse.warehouse import Warehouse, connect
from tests.sweep_cases import SENTENCES, tiny_cases, write_files
from tests.test_editors_rome import CORPUS, corpus_file  # noqa: F401 — the fixture

RIGHT_RTOL, LEFT_ATOL, PPL_RTOL, METRIC_ATOL = 1e-3, 1e-5, 1e-6, 1e-6


@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-llama"])
def tiny(request):
    return load_model(request.param, device="cpu")


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


def _assert_same_updates(loaded, hparams, cases, method="rome", right_rtol=RIGHT_RTOL):
    engine = BatchedROME(loaded.model, loaded.tokenizer, loaded.arch, hparams, method=method)
    updates = engine.updates(cases)
    one = editor(method)
    for index, (case, update) in enumerate(zip(cases, updates, strict=True)):
        reference = compute_rome_update(
            loaded.model, loaded.tokenizer, loaded.arch, case, hparams, consistent_keys=method == "r-rome"
        )
        assert update.target.steps == reference.target.steps, case.case_id
        # relative to the update's scale (a case that stops at step 0 has a right vector of rounding noise)
        scale = float(reference.target.target.norm() / torch.dot(reference.key, reference.u).abs())
        assert float((update.right - reference.right).norm()) <= right_rtol * max(
            float(reference.right.norm()), 1e-3 * scale
        ), case.case_id
        assert float((update.u - reference.u).abs().max()) < LEFT_ATOL, case.case_id
        assert math.isclose(update.target.nll, reference.target.nll, rel_tol=1e-4, abs_tol=1e-6)
        if index > 0:  # the editor's Delta is compute_rome_update's; compare it once
            continue
        delta = engine.delta(case, update)
        expected = one.edit(loaded.model, loaded.tokenizer, loaded.arch, [case], hparams)
        assert delta.method == expected.method and delta.case_ids == expected.case_ids
        assert delta.hparams_hash == expected.hparams_hash and sorted(delta.params) == sorted(expected.params)
        assert sorted(delta.diagnostics) == sorted(expected.diagnostics)
        name = next(iter(delta.params))
        change, expected_change = delta.params[name].materialize(), expected.params[name].materialize()
        assert float((change - expected_change).norm()) <= right_rtol * max(float(expected_change.norm()), 1e-3 * scale)
    return updates


@pytest.mark.parametrize("method", ["rome", "r-rome"])
def test_batched_updates_equal_one_case_updates(tiny, method) -> None:
    _assert_same_updates(tiny, hparams_for(tiny, "rome"), tiny_cases(4), method=method)


def test_batched_updates_with_covariance(tiny, corpus_file) -> None:  # noqa: F811
    hparams = replace(
        hparams_for(tiny, "rome"), mom2_adjustment=True, mom2_dataset=str(corpus_file), mom2_n_samples=len(CORPUS)
    )
    _assert_same_updates(tiny, hparams, tiny_cases(3))


def test_converged_cases_leave_the_batch_at_their_own_step(tiny, monkeypatch) -> None:
    """With a stop threshold some cases reach early, each case stops where it stops alone."""
    hparams = replace(hparams_for(tiny, "rome"), v_num_grad_steps=10)
    cases = tiny_cases(5)
    engine = BatchedROME(tiny.model, tiny.tokenizer, tiny.arch, hparams)
    first = [update.target.nll for update in engine.updates(cases)]
    threshold = sorted(first)[len(first) // 2] + 1e-3  # about half the cases get below it at some step
    monkeypatch.setattr(target_vector, "EARLY_STOP_LOSS", threshold)
    monkeypatch.setattr(batched_rome, "EARLY_STOP_LOSS", threshold)
    updates = _assert_same_updates(tiny, hparams, cases)
    assert len({update.target.steps for update in updates}) > 1  # the batch really shrank


def test_a_bad_case_is_reported_and_the_others_go_on(tiny) -> None:
    broken = EditCase(
        case_id="test:broken", dataset="test", prompt="The capital is", subject="Atlantis", target_new=" Rome"
    )
    cases = [tiny_cases(1)[0], broken, tiny_cases(2)[1]]
    engine = BatchedROME(tiny.model, tiny.tokenizer, tiny.arch, hparams_for(tiny, "rome"))
    updates = engine.updates(cases)
    assert isinstance(updates[1], ValueError) and not isinstance(updates[0], Exception)
    reference = compute_rome_update(tiny.model, tiny.tokenizer, tiny.arch, cases[2], hparams_for(tiny, "rome"))
    assert _relative(updates[2].right, reference.right) < RIGHT_RTOL


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gptj", "tiny-neox"])
def test_skipping_the_blocks_below_gives_the_full_forward(name) -> None:
    loaded = load_model(name, device="cpu")
    model = loaded.model
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]])
    blocks = list(blocks_of(model, loaded.arch))
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        hidden = hidden_below(model, loaded.arch, 2, lambda: model(input_ids=ids, attention_mask=mask))
        with skipping_below(model, loaded.arch, 2, hidden):
            skipped = model(input_ids=ids, attention_mask=mask).logits
    assert list(blocks_of(model, loaded.arch)) == blocks  # put back
    real = mask.bool()
    assert torch.allclose(skipped[real], full[real], atol=1e-5, rtol=1e-5)


def _batched_evaluation(loaded, cases, updates, texts):
    engine_layer = int(hparams_for(loaded, "rome").layers[0])
    module = loaded.model.get_submodule(loaded.arch.name("rewrite_module_tmp", engine_layer))
    forward = EditedForward(loaded.model, loaded.tokenizer, loaded.arch, engine_layer, module)
    scorer = CaseScores(forward, cases)
    pre_scores = scorer.scores()
    references = locality_references(pre_scores)
    edits = [(update.u, update.right) for update in updates]
    post = scorer.metrics(edits, [references[i] for i in range(len(cases))])
    pre = scorer.metrics()
    corpus = PerplexityCorpus(forward, texts, batch_size=3)
    return pre, references, post, corpus.perplexities(edits), corpus.perplexities([None])[0]


def _assert_same_evaluation(loaded, cases, hparams, texts, ppl_rtol=PPL_RTOL, metric_atol=METRIC_ATOL, updates=None):
    engine = BatchedROME(loaded.model, loaded.tokenizer, loaded.arch, hparams)
    updates = updates or engine.updates(cases)
    pre, references, post, ppls, unedited = _batched_evaluation(loaded, cases, updates, texts)
    model, tokenizer = loaded.model, loaded.tokenizer
    assert math.isclose(unedited.mean_per_text, perplexity(model, tokenizer, texts).mean_per_text, rel_tol=ppl_rtol)
    one_pre = measure_cases(model, tokenizer, cases)
    one_references = locality_reference(model, tokenizer, cases)
    for index, case in enumerate(cases):
        assert references[index] == one_references[index]
        with engine.delta(case, updates[index]).applied(model):
            one_post = measure_cases(model, tokenizer, [case], reference=[one_references[index]])[0]
            one_ppl = perplexity(model, tokenizer, texts)
        for mine, theirs in ((pre[index], one_pre[index]), (post[index], one_post)):
            assert sorted(mine) == sorted(theirs)
            assert all(abs(mine[k] - theirs[k]) <= metric_atol for k in theirs), (mine, theirs)
        assert ppls[index].n_tokens == one_ppl.n_tokens
        for mine, theirs in zip(ppls[index].per_text, one_ppl.per_text, strict=True):
            assert math.isclose(mine, theirs, rel_tol=ppl_rtol)
        assert math.isclose(ppls[index].mean_per_text, one_ppl.mean_per_text, rel_tol=ppl_rtol)


def test_batched_evaluation_equals_one_model_at_a_time(tiny) -> None:
    _assert_same_evaluation(tiny, tiny_cases(3), hparams_for(tiny, "rome"), SENTENCES + ["Hi"])


def test_groups_are_balanced() -> None:
    assert [len(g) for g in groups_of(list(range(10)), 4)] == [4, 3, 3]
    assert [len(g) for g in groups_of(list(range(10)), 10)] == [10]
    assert [len(g) for g in groups_of(list(range(3)), 1)] == [1, 1, 1]
    assert groups_of([], 4) == []


def _table(store: Warehouse, query: str) -> dict:
    return {row[0]: row[1:] for row in connect(store).execute(query).fetchall()}


def test_sweep_with_batches_writes_the_rows_of_the_one_at_a_time_sweep(tmp_path) -> None:
    _, corpus = write_files(tmp_path, 1)
    broken = EditCase(
        case_id="test:broken",
        dataset="test",
        prompt="The capital is",
        subject="Atlantis",
        target_new=" Rome",
        target_true=" Paris",
    )
    cases = tiny_cases(3) + [broken] + tiny_cases(5)[3:]
    stores = {}
    for batch in (1, 3):
        store = Warehouse(tmp_path / f"wh{batch}")
        spec = SweepConfig(
            model="tiny-gpt2", method="rome", dataset="test", shard_size=4, ppl_corpus=str(corpus), batch=batch
        )
        summary = run_sweep(spec, store, cases=cases)
        assert (summary.n_cases, summary.n_errors, summary.n_measured) == (6, 1, 5)
        stores[batch] = store
    one, batched = stores[1], stores[3]
    runs = "SELECT run, count(*) FROM edits GROUP BY 1"
    assert _table(one, runs) == _table(batched, runs)
    query = "SELECT case_id, status, error_type, delta_fro, denominator FROM edits"
    expected, got = _table(one, query), _table(batched, query)
    assert sorted(expected) == sorted(got)
    for case_id, row in expected.items():
        assert got[case_id][:2] == row[:2]
        if row[0] == "ok":
            assert math.isclose(got[case_id][2], row[2], rel_tol=RIGHT_RTOL)
            assert math.isclose(got[case_id][3], row[3], rel_tol=1e-5, abs_tol=1e-7)
    ppl = "SELECT case_id, ppl_mean, collapsed FROM ppl"
    expected, got = _table(one, ppl), _table(batched, ppl)
    assert sorted(expected) == sorted(got)
    assert all(
        math.isclose(got[c][0], expected[c][0], rel_tol=PPL_RTOL) and got[c][1] == expected[c][1] for c in expected
    )
    metrics = "SELECT case_id || phase || metric, value FROM edit_metrics"
    expected, got = _table(one, metrics), _table(batched, metrics)
    assert sorted(expected) == sorted(got)
    assert all(abs(got[k][0] - expected[k][0]) <= METRIC_ATOL for k in expected)
    sizes = (
        connect(batched)
        .execute("SELECT DISTINCT json_extract(diagnostics, '$.batch_size')::INT FROM edits WHERE status = 'ok'")
        .fetchall()
    )
    assert [s[0] for s in sizes] == [2]  # shards of 4 and 2 cases: groups of 2 (the bad case counts)
    assert "batch" not in json.loads(connect(batched).execute("SELECT parameters FROM runs").fetchone()[0])


def test_batched_engine_on_smollm2(smollm2) -> None:
    """Two geofacts cases: batched updates, metrics and ME-PPL equal the one-at-a-time path."""
    from editcollapse.datasets import load_cases

    cases = list(load_cases("geofacts", limit=2, seed=0).cases)
    hparams = replace(
        hparams_for(smollm2, "rome"), v_num_grad_steps=4
    )  # a short optimisation: the comparison, not the edit, is tested
    updates = _assert_same_updates(smollm2, hparams, cases)
    _assert_same_evaluation(smollm2, cases, hparams, SENTENCES, ppl_rtol=1e-4, metric_atol=1e-4, updates=updates)


def test_a_group_that_fails_as_a_whole_is_redone_case_by_case(tmp_path, monkeypatch) -> None:
    """An unforeseen error of one case inside the batched optimisation fails its group; the group is
    redone one case per group, so only that case is an error row."""
    _, corpus = write_files(tmp_path, 1)
    original = batched_rome.optimise_target_vectors

    def failing(model, arch, layer, module, items, settings, pad):
        if any(item.case.subject == "Louvre" for item in items):
            raise RuntimeError("the optimisation broke on Louvre")
        return original(model, arch, layer, module, items, settings, pad)

    monkeypatch.setattr(batched_rome, "optimise_target_vectors", failing)
    store = Warehouse(tmp_path / "wh")
    spec = SweepConfig(model="tiny-gpt2", method="rome", dataset="test", shard_size=4, ppl_corpus=str(corpus), batch=4)
    summary = run_sweep(spec, store, cases=tiny_cases(4))
    assert (summary.n_cases, summary.n_errors, summary.n_measured) == (4, 1, 3)
    status = _table(store, "SELECT case_id, status, error FROM edits")
    assert status["test:1"][0] == "error" and "broke on Louvre" in status["test:1"][1]
    assert all(status[f"test:{i}"][0] == "ok" for i in (0, 2, 3))


@pytest.mark.parametrize("broken", ["updater", "corpus"])
def test_a_set_up_that_cannot_be_prepared_makes_error_rows_not_a_dead_shard(tmp_path, monkeypatch, broken) -> None:
    """The batched engine's set-up (the method's batched class, the perplexity corpus) failing is an
    error row for each case, and the shard completes."""
    from editcollapse.stages.sweep import batched as batched_engine

    def failing(*args, **kwargs):
        raise RuntimeError(f"no {broken} here")

    if broken == "corpus":
        monkeypatch.setattr(batched_engine, "PerplexityCorpus", failing)
    else:
        monkeypatch.setattr(BatchedROME, "__init__", failing)
        monkeypatch.setattr(batched_engine, "EditedForward", failing)  # never reached: the updater failed first
    _, corpus = write_files(tmp_path, 1)
    store = Warehouse(tmp_path / "wh")
    spec = SweepConfig(model="tiny-gpt2", method="rome", dataset="test", shard_size=3, ppl_corpus=str(corpus), batch=3)
    summary = run_sweep(spec, store, cases=tiny_cases(3))
    assert (summary.n_cases, summary.n_errors, summary.n_measured) == (3, 3, 0)
    errors = _table(store, "SELECT case_id, status, error FROM edits")
    assert all(status == "error" and f"no {broken} here" in error for status, error in errors.values())

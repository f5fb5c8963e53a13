"""Golden numbers: ROME single edits on SmolLM2 with the packaged hyperparameters, pinned.

The values were computed before the architecture move (commit 5dd7504, one torch thread) and must
not move under any refactor: the key/value geometry of the update (k·u, ‖k*‖, ‖v_init‖, ‖v_delta‖),
the size of the change (‖r‖ = ‖ΔW‖_F, since ‖u‖ = 1) and the edited model's perplexity on the
embedded 50-sentence corpus. ``geofacts:capital:AU`` is the subject-first case whose tiny k·u
collapses the model (perplexity just above 1000); the other three are ordinary edits.
Tolerance: float32 results differ by summation order between thread counts (≈ 1e-6 relative);
1e-4 relative leaves room for that and nothing else.
"""

from __future__ import annotations

import pytest
import torch
from conftest import requires_smollm2

GOLDEN = {
    "geofacts:capital:AU": {
        "k_dot_u": 0.031156834214925766,
        "right_norm": 639.799072265625,
        "k_star_norm": 3.7176735401153564,
        "v_init_norm": 4.9835286140441895,
        "v_delta_norm": 19.934112548828125,
        "right_sum": -406.33817633986473,
        "post_ppl_embedded_50": 1020.9943949270428,
    },
    "geofacts:capital-of:IQ": {
        "k_dot_u": 3.1206469535827637,
        "right_norm": 24.55949592590332,
        "k_star_norm": 4.210168838500977,
        "v_init_norm": 19.160377502441406,
        "v_delta_norm": 76.64151000976562,
        "right_sum": 13.633355573365407,
        "post_ppl_embedded_50": 106.78991146373329,
    },
    "geofacts:city-country:1581130": {
        "k_dot_u": 7.575956344604492,
        "right_norm": 11.278021812438965,
        "k_star_norm": 9.409531593322754,
        "v_init_norm": 45.16144561767578,
        "v_delta_norm": 85.44180297851562,
        "right_sum": 4.358703216072172,
        "post_ppl_embedded_50": 107.49071194801665,
    },
    "geofacts:currency:MD": {
        "k_dot_u": 3.213876247406006,
        "right_norm": 30.430999755859375,
        "k_star_norm": 6.204861164093018,
        "v_init_norm": 29.79570770263672,
        "v_delta_norm": 97.80146789550781,
        "right_sum": -18.12315900810063,
        "post_ppl_embedded_50": 106.90992990031738,
    },
}


def _measure(loaded, case, hparams, texts) -> dict[str, float]:
    from editcollapse.editors.api import get_editor
    from editcollapse.evaluation.perplexity import perplexity

    torch.manual_seed(0)
    delta = get_editor("rome").edit(loaded.model, loaded.tokenizer, loaded.arch, [case], hparams)
    ((name, change),) = delta.params.items()
    assert name == "model.layers.4.mlp.down_proj.weight"
    # In the parameter's layout ΔW = right ⊗ u: ParamDelta.u holds the right vector, .v the unit left vector.
    assert float(change.v.double().norm()) == pytest.approx(1.0, abs=1e-6)
    with delta.applied(loaded.model):
        ppl = perplexity(loaded.model, loaded.tokenizer, texts, batch_size=16).mean_per_text
    diagnostics = delta.diagnostics
    return {
        "k_dot_u": diagnostics["denominator"],
        "right_norm": diagnostics["right_norm"],
        "k_star_norm": diagnostics["k_star_norm"],
        "v_init_norm": diagnostics["v_init_norm"],
        "v_delta_norm": diagnostics["v_delta_norm"],
        "right_sum": float(change.u.double().sum()),
        "post_ppl_embedded_50": float(ppl),
    }


@pytest.mark.slow
@pytest.mark.smollm2
@requires_smollm2
def test_rome_on_smollm2_matches_the_golden_numbers(smollm2) -> None:
    from editcollapse.datasets import load_cases, load_ppl_corpus
    from editcollapse.editors.api import hparams_for

    cases = {case.case_id: case for case in load_cases("geofacts").cases}
    hparams = hparams_for(smollm2, "rome")
    texts = list(load_ppl_corpus("embedded-50").texts)
    measured = {case_id: _measure(smollm2, cases[case_id], hparams, texts) for case_id in GOLDEN}
    for case_id, expected in GOLDEN.items():
        assert measured[case_id] == pytest.approx(expected, rel=1e-4), case_id

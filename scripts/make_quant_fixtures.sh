#!/usr/bin/env bash
# Makes the quantization fixtures tests/fixtures/quants/*.json with the
# `gguf` Python package (gguf-py, llama.cpp's own numpy dequantizers), an
# implementation independent of ours.
#
# Creates (or reuses) the venv .venv-quants/ (git-ignored; gguf and numpy
# only, a few MB) and runs scripts/make_quant_fixtures.py in it.
#
# Usage: scripts/make_quant_fixtures.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-quants"
py="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$py" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import gguf, numpy" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "gguf>=0.17" numpy
fi

"$venv/bin/python" "$root/scripts/make_quant_fixtures.py" --out "$root/tests/fixtures/quants"

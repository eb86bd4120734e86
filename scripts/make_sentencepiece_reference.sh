#!/usr/bin/env bash
# Makes tests/fixtures/gemma3_tokenizer.json: Hugging Face transformers'
# token ids and decodes of Gemma 3's SentencePiece vocabulary, read from the
# same GGUF that wgserve reads (scripts/setup.sh --test fetches it).
#
# Runs in the venv of scripts/make_reference.sh (.venv-reference/, made by
# it when missing): transformers' GGUF reader imports torch even to read
# only the tokenizer. Adds sentencepiece and protobuf, which transformers'
# Gemma tokenizer classes import.
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
CUDA_VISIBLE_DEVICES="" "$venv/bin/python" "$root/scripts/make_sentencepiece_reference.py" \
    --gguf "$gguf" --out "$root/tests/fixtures/gemma3_tokenizer.json"

#!/usr/bin/env bash
# Makes tests/fixtures/families/<family>/ for qwen2, qwen3, llama3, mistral,
# phi3 and gemma3: a tokenizer of the family's configuration trained offline
# on a small multilingual corpus, a tiny random model (hf/ with float16
# safetensors, model-f16.gguf, a wider model-q4_k.gguf; gemma3: only
# model-f16.gguf, 6 layers with linear RoPE scaling on the global one) and
# reference.json with transformers' token ids, chat renderings, greedy ids
# and logits. See scripts/make_family_fixtures.py for every decision.
#
# Runs in the venv of scripts/make_reference.sh (.venv-reference/, made by
# it when missing), adding sentencepiece and protobuf. The GGUFs come from
# llama.cpp's convert_hf_to_gguf.py in the llama-cpp-python 0.3.36 sdist:
# scripts/bench-llamacpp.sh unpacks it under .llamacpp/; when it is missing
# the Python script fetches the sdist with `pip download --no-binary`.
# Deterministic: a second run writes byte-identical files.
#
# Usage: scripts/make_family_fixtures.sh [--families qwen2,gemma3] [--tokenizers-only]
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-reference"

"$root/scripts/make_reference.sh" --setup-only --sentencepiece

mkdir -p "$root/tests/fixtures/families"
CUDA_VISIBLE_DEVICES="" PYTHONHASHSEED=0 "$venv/bin/python" "$root/scripts/make_family_fixtures.py" \
    --out-dir "$root/tests/fixtures/families" \
    "$@"

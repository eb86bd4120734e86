#!/usr/bin/env python3
"""Tiny random models of six LLM families, with references from HF transformers.

Run through scripts/make_family_fixtures.sh (it makes the venv). Everything is
built offline and from fixed seeds; a second run writes byte-identical files.
This file holds the families' specs and main(); the work is in
family_tokenizers.py (tokenizers, tokenizer and chat sections),
family_models.py (the Llama-layout models and their references),
family_gemma3.py (the tiny Gemma 3) and family_gguf.py (conversion, Q4_K,
reading GGUF tensors back).

For each family in qwen2, qwen3, llama3, mistral, phi3 it writes
tests/fixtures/families/<family>/ as below; gemma3 differs (see its own
section further down: GGUF only, no hf/ and no model-q4_k.gguf):
  hf/               what save_pretrained writes (config.json, float16
                    model.safetensors, generation_config.json, tokenizer.json,
                    tokenizer_config.json with the chat template); the
                    SentencePiece families also get tokenizer.model (copied:
                    transformers 5 no longer writes it, llama.cpp's converter
                    reads it).
  model-f16.gguf    the hf/ model converted by llama.cpp's own
                    convert_hf_to_gguf.py (vendored in the llama-cpp-python
                    sdist, see find_llama_cpp), --outtype f16: matrices F16,
                    norms/biases/rope factors F32. The converter names the
                    byte-level pre-tokenizer by hashing the tokens of a test
                    string, which no tiny vocabulary matches; the wrapper
                    (CONVERT_WRAPPER) pins tokenizer.ggml.pre to the family's
                    name instead ("qwen2", "llama-bpe"). Nothing else is
                    changed, so tensor names, the llama Q/K row permutation,
                    rope_freqs, the Phi-3 fused tensors and rope factors, and
                    every metadata key are exactly what llama.cpp writes.
  model-q4_k.gguf   a separate, wider random model (hidden 256, ffn 256,
                    1 layer, 4 heads x 64, 2 KV heads), converted the same way at f32 and then
                    requantized here: every 2-D weight Q4_K (our encoder,
                    encode_q4_k; gguf-py cannot quantize K-quants),
                    token_embd Q8_0 (gguf-py), 1-D tensors F32, all metadata
                    copied (general.file_type says MOSTLY_Q4_K_M). Its
                    reference runs on the gguf-py-dequantized values.
  reference.json    tokenizer cases, chat renderings, per model greedy ids
                    and full-vocab logits (see make_models).

Random weights (randomize): matrices N(0, gain^2/fan_in), embeddings
N(0, 9/hidden) so logits spread over +-10, norms 1 + N(0, 0.04), biases
N(0, 0.25). The seed of each model is the first one (from a fixed base) whose
greedy steps on all prompts have a top-2 logit gap >= MIN_TOP2_GAP, measured
on the weights the reference uses (f16-rounded, or Q4_K/Q8_0 round-tripped),
so a correct implementation cannot flip a greedy token on a near tie; the
JSON records the seed and every step's gap. Greedy decoding uses the KV
cache and is checked against one uncached forward (same argmax, logits
within 1e-4) and against generate() without EOS.

Decisions and what each side does (transformers 5.24, llama.cpp of the
llama-cpp-python 0.3.36 sdist):
  - Tokenizers are trained here on CORPUS (byte-level BPE with the
    `tokenizers` trainer; SentencePiece BPE with the `sentencepiece` trainer)
    and laid out as the real families' tokenizer.json files are: Qwen2's and
    Llama 3's Split regex + ByteLevel(use_regex=False), added tokens after
    the 640 trained ones. For Mistral and Phi-3 we build the Llama-2-style
    legacy tokenizer.json (normalizer Prepend("▁") + Replace(" ", "▁"), BPE
    with byte_fallback), whose encodings equal sentencepiece's (asserted),
    but transformers 5's LlamaTokenizer rebuilds it on load as
    Metaspace(prepend_scheme="always") and save_pretrained writes that: hf/
    holds what transformers 5 writes, the "ids" are what it computes, and the
    SPM families' JSON adds "*_sentencepiece" ids (the legacy file: a "▁"
    prefix on every text segment, also after a special token), which is
    what llama.cpp computes from the GGUF. They differ only where a segment
    starts with a space or follows a special token.
  - Mistral: the sdist has no Mistral-7B-Instruct-v0.3 template (only Nemo /
    Small 3.x ones), so MISTRAL_TEMPLATE is the well-known [INST] template of
    mistralai/Mistral-7B-Instruct-v0.1. It writes "[INST]" as plain text, so
    [INST]/[/INST] are not control tokens of this vocabulary (as in v0.1).
    It refuses a system message: that chat case records the error.
  - llama3 rope scaling: rope_type llama3, factor 8, low 1, high 4,
    original_max_position_embeddings 64 (not 32: at head_dim 16 and theta
    5e5, 64 puts one frequency in each of the three bands: unscaled,
    smoothed, divided by 8). transformers scales inv_freq; llama.cpp's
    converter writes the same as the tensor rope_freqs.weight (it divides
    each frequency by it) and no rope.scaling.* keys.
  - mistral sliding_window 8: transformers masks keys with q - k >= 8
    (a query sees itself and the 7 tokens before it). llama.cpp's converter
    does not write a window for MistralForCausalLM (and llama.cpp's llama
    architecture applies none), so this script adds
    llama.attention.sliding_window = 8 (UINT32) to both mistral GGUFs
    (copy_gguf); it is the only key not written by the converter. llama.cpp
    itself would ignore it: its logits differ from these references once a
    prompt is longer than 8 tokens.
  - phi3 longrope: transformers picks short_factor while the sequence length
    is <= original_max_position_embeddings (64) and long_factor beyond, and
    multiplies cos/sin by attention_factor = sqrt(1 + ln(256/64)/ln(64)).
    Every reference sequence here stays <= 64 tokens, so short_factor applies
    throughout. The GGUF carries rope_factors_short/long.weight,
    phi3.rope.scaling.attn_factor, original_context_length 64 and
    phi3.attention.sliding_window 12, as the converter writes them.
  - Where llama.cpp (0.3.36's llama-server) disagrees with transformers, all
    checked once by hand (not part of this script): it picks Phi-3's long
    factors when its context n_ctx exceeds 64, by context size, not by
    sequence length, and pads n_ctx to 256, so it always uses the long
    factors here; it disables Phi-3's sliding window ("Phi SWA is currently
    disabled") and applies none to the llama architecture (Mistral). With
    transformers set up the same way (no window, long factors), its greedy
    tokens from model-f16.gguf equal transformers' for every prompt of
    mistral and phi3; for qwen2, qwen3 and llama3 (rope_freqs) they equal
    the references as they are, and its tokenizer gives the reference ids
    for every case (the *_sentencepiece ids for mistral and phi3). On the
    Q4_K files it quantizes activations to Q8_K, so late greedy steps with
    gaps below ~0.1 may flip.

gemma3 (wgserve loads Gemma 3 from GGUF only) writes model-f16.gguf and
reference.json; the float16 checkpoint it converts lives in a scratch hf/.
It proves two things against transformers' Gemma3ForCausalLM:
  - Linear RoPE scaling on the global layers only: rope_parameters
    full_attention = linear, factor 8, theta 1e6 (as Gemma 3 4B+),
    sliding_attention = default, theta 1e4, unscaled. llama.cpp's converter
    writes gemma3.rope.scaling.type = "linear", rope.scaling.factor = 8,
    rope.freq_base = 1e6 and rope.freq_base_swa = 1e4 from config.json
    (TextModel.set_gguf_parameters reads rope_parameters["full_attention"];
    asserted, nothing added), and llama.cpp applies the scale to non-SWA
    layers only (rope_freq_scale_train_swa = 1), as transformers does.
  - The layer pattern: 6 layers, layer 5 global (transformers' default
    sliding_window_pattern 6; config.json holds layer_types). The converter
    writes no gemma3.attention.sliding_window_pattern; llama.cpp too then
    assumes every 6th layer global. sliding_window 8: the two long prompts
    (36 and 48 tokens) cross it.
  Shape: hidden 64, ffn 128, 4 heads x 32 (wider than 64 / 4), 2 KV heads,
  query_pre_attn_scalar = head_dim (llama.cpp scales by 1/sqrt(head_dim)),
  no soft-capping, gelu_pytorch_tanh, tied output, vocabulary = tokenizer.
  The converter stores each RMSNorm weight as 1 + w, adding the 1 in
  float16; round_gemma3_to_f16 picks w so that this is exact, and the
  reference runs on the GGUF's tensors (norms minus 1), asserted equal to
  the checkpoint's bit for bit. Random weights as above, except that the
  embedding is N(0, 0.0625/hidden) and the final norm's 1 + w about 7:
  Gemma scales the input embedding by sqrt(hidden) and ties the head to it,
  and a large embedding makes greedy decoding repeat the last token.
  "variant_logit_diffs" records, per prompt, how far the reference's logits
  move (teacher-forced, at the recorded positions) without the RoPE
  scaling, with it on every layer, without the window and with every layer
  sliding; each must exceed 0.05. Tokenizer: SentencePiece BPE as Gemma's
  (no dummy prefix, byte fallback, <pad> <eos> <bos> <unk> = 0-3, then the
  control pieces <mask> <start_of_turn> <end_of_turn>), tokenizer.json as
  google/gemma-3-*'s; its ids equal sentencepiece's on each text segment
  between special pieces (asserted). The chat template is wgserve's
  src/text/chat_templates/gemma3.jinja, also written into the GGUF
  (tokenizer.chat_template), as an -it model's. No model-q4_k.gguf: Q4_K
  needs rows of 256, and 6 layers that wide (the fewest with a global
  layer) do not fit the fixture's 1.5 MB; the Gemma 3 270M Q4_K_M golden
  test covers Q4_K. transformers' own GGUF loader (recorded in gguf_check)
  reads neither the rope.scaling keys nor a query_pre_attn_scalar.
"""

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from fixture_json import write_fixture  # noqa: E402
from family_gemma3 import make_gemma3_models  # noqa: E402
from family_models import FAMILIES, make_models  # noqa: E402
from family_tokenizers import REPO_ROOT, chat_section, make_tokenizer, tokenizer_section  # noqa: E402

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


# Per family: tokenizer kind, template, special tokens, and model config.
SPECS = {
    "qwen2": {
        "tokenizer": "bpe",
        "pattern": QWEN2_PATTERN,
        "nfc": True,
        "template_file": "Qwen-Qwen2.5-7B-Instruct.jinja",
        # (content, special): special ones are CONTROL, the others USER_DEFINED
        "added_tokens": [
            ("<|endoftext|>", True),
            ("<|im_start|>", True),
            ("<|im_end|>", True),
            ("<tool_call>", False),
            ("</tool_call>", False),
        ],
        "tokenizer_class": "Qwen2Tokenizer",
        "bos": None,
        "eos": "<|im_end|>",
        "pad": "<|endoftext|>",
        "unk": None,
        "add_bos": False,
        "config_bos": "<|endoftext|>",
        "generation_eos": ["<|im_end|>", "<|endoftext|>"],
        "vocab_multiple": 64,
        "architecture": "Qwen2ForCausalLM",
        "gguf_pre": "qwen2",
    },
    "llama3": {
        "tokenizer": "bpe",
        "pattern": LLAMA3_PATTERN,
        "nfc": False,
        "template_file": "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "added_tokens": [
            ("<|begin_of_text|>", True),
            ("<|end_of_text|>", True),
            ("<|start_header_id|>", True),
            ("<|end_header_id|>", True),
            ("<|eot_id|>", True),
        ],
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "pad": None,
        "unk": None,
        "add_bos": True,
        "config_bos": "<|begin_of_text|>",
        "generation_eos": ["<|end_of_text|>", "<|eot_id|>"],
        "vocab_multiple": 1,
        "architecture": "LlamaForCausalLM",
        "gguf_pre": "llama-bpe",
    },
    "mistral": {
        "tokenizer": "spm",
        "template_file": None,
        "added_tokens": [],
        "tokenizer_class": "LlamaTokenizer",
        "bos": "<s>",
        "eos": "</s>",
        "pad": None,
        "unk": "<unk>",
        "add_bos": True,
        "config_bos": "<s>",
        "generation_eos": ["</s>"],
        "vocab_multiple": 1,
        "architecture": "MistralForCausalLM",
    },
    "phi3": {
        "tokenizer": "spm",
        "template_file": "microsoft-Phi-3.5-mini-instruct.jinja",
        "added_tokens": [
            ("<|endoftext|>", True),
            ("<|assistant|>", True),
            ("<|system|>", True),
            ("<|end|>", True),
            ("<|user|>", True),
        ],
        "tokenizer_class": "LlamaTokenizer",
        "bos": "<s>",
        "eos": "<|endoftext|>",
        "pad": "<|endoftext|>",
        "unk": "<unk>",
        "add_bos": True,
        "config_bos": "<s>",
        "generation_eos": ["<|endoftext|>", "<|assistant|>", "<|end|>"],
        "vocab_multiple": 64,
        "architecture": "Phi3ForCausalLM",
    },
    "gemma3": {
        "tokenizer": "gemma",
        # wgserve's built-in copy of google/gemma-3-*-it's template
        "template_repo_file": "src/text/chat_templates/gemma3.jinja",
        "added_tokens": [],
        "tokenizer_class": "GemmaTokenizer",
        "bos": "<bos>",
        "eos": "<eos>",
        "pad": "<pad>",
        "unk": "<unk>",
        "add_bos": True,
        "config_bos": "<bos>",
        "generation_eos": ["<eos>", "<end_of_turn>"],
        "vocab_multiple": 1,
        "architecture": "Gemma3ForCausalLM",
        "gguf_only": True,  # wgserve loads Gemma 3 from GGUF only: no hf/
    },
}


# Qwen 3: Qwen 2's tokenizer and specials, with <think> and </think>.
SPECS["qwen3"] = {
    **SPECS["qwen2"],
    "template_file": "Qwen-Qwen3-0.6B.jinja",
    "added_tokens": SPECS["qwen2"]["added_tokens"] + [("<think>", False), ("</think>", False)],
    "architecture": "Qwen3ForCausalLM",
}


def versions():
    names = ["transformers", "torch", "tokenizers", "gguf", "sentencepiece", "numpy"]
    return {n: importlib.metadata.version(n) for n in names}


def find_llama_cpp(explicit):
    """The llama.cpp tree of the llama-cpp-python 0.3.36 sdist: the given
    path, the one scripts/bench-llamacpp.sh unpacks, or a fresh download
    (pip download --no-binary, the sdist is on PyPI)."""
    candidates = [explicit] if explicit else []
    candidates.append(os.path.join(REPO_ROOT, ".llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp"))
    for path in candidates:
        if path and os.path.isfile(os.path.join(path, "convert_hf_to_gguf.py")):
            return path
    tmp = tempfile.mkdtemp(prefix="llama-cpp-sdist-")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         "llama-cpp-python==0.3.36", "-d", tmp],
        check=True,
    )
    subprocess.run(["tar", "-xzf", os.path.join(tmp, "llama_cpp_python-0.3.36.tar.gz"), "-C", tmp], check=True)
    return os.path.join(tmp, "llama_cpp_python-0.3.36/vendor/llama.cpp")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", required=True, help="tests/fixtures/families")
    parser.add_argument("--llama-cpp", default=None, help="llama.cpp source tree (convert_hf_to_gguf.py)")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--tokenizers-only", action="store_true")
    args = parser.parse_args()

    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    llama_cpp = find_llama_cpp(args.llama_cpp)
    for family in args.families.split(","):
        spec = SPECS[family]
        fam_dir = os.path.join(args.out_dir, family)
        os.makedirs(fam_dir, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            # A GGUF-only family's checkpoint lives in a scratch hf/ (same
            # basename, so the converter writes the same general.* keys).
            hf_dir = os.path.join(tmp if spec.get("gguf_only") else fam_dir, "hf")
            if os.path.isdir(hf_dir):
                shutil.rmtree(hf_dir)
            hf_tok, raw_tok, template = make_tokenizer(family, spec, llama_cpp, hf_dir)
            fixture = {
                "family": family,
                "generator": versions(),
                "tokenizer": tokenizer_section(spec, hf_tok, raw_tok),
                "chat": chat_section(family, spec, hf_tok, raw_tok),
            }
            if not args.tokenizers_only:
                make = make_gemma3_models if family == "gemma3" else make_models
                fixture.update(make(family, spec, hf_tok, hf_dir, fam_dir, llama_cpp))
        write_fixture(os.path.join(fam_dir, "reference.json"), fixture)


if __name__ == "__main__":
    main()

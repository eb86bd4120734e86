#!/usr/bin/env python3
"""Tiny random models of six LLM families, with references from HF transformers.

Run through scripts/make_family_fixtures.sh (it makes the venv). Everything is
built offline and from fixed seeds; a second run writes byte-identical files.

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
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from fixture_json import write_fixture  # noqa: E402

FAMILIES = ["qwen2", "qwen3", "llama3", "mistral", "phi3", "gemma3"]
TEMPLATES_SUBDIR = "models/templates"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_NEW_TOKENS = 16
NUM_LOGIT_STEPS = 3
SEED = 1234
MIN_TOP2_GAP = 0.03  # no near ties among the greedy steps (seed search)
MAX_SEED_TRIES = 200

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The Mistral-7B-Instruct-v0.1 chat template (see the module docstring).
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)

# Training text for the tokenizers. The test cases below are other sentences.
CORPUS = [
    "The quick brown fox jumps over the lazy dog. I don't think it's late; you'll see.",
    "We're reading the news, they've left, I'd go, she'll stay, I'M here, YOU'RE there.",
    "Language models predict the next token from the previous tokens in the sequence.",
    "The server streams tokens to the client as soon as they are generated.",
    "Please write a short story about a robot who learns to paint the sea.",
    "What is the capital of France? The capital of France is Paris.",
    "Hello! How can I help you today? Thank you very much, have a nice day.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße, Mädchen, schön.",
    "Ich möchte heute Abend ins Kino gehen, aber es regnet draußen sehr stark.",
    "Le cœur a ses raisons que la raison ne connaît point. Où est la bibliothèque ?",
    "Les élèves étudient à l'école ; c'est déjà l'été, garçon, français, très bien.",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела?",
    "Москва — столица России. Я люблю читать книги и гулять в парке.",
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. Καλημέρα κόσμε!",
    "我们今天在学习自然语言处理。这是一个简单的中文句子，用来训练分词器。",
    "北京是中国的首都。天气很好，我们去公园散步吧。人工智能正在改变世界。",
    "今日はとても良い天気ですね。私は日本語を勉強しています。ありがとうございます。",
    "東京は日本の首都です。カタカナとひらがなと漢字を使います。",
    "안녕하세요, 만나서 반갑습니다. 오늘 날씨가 정말 좋네요. 한국어를 배우고 있어요.",
    "مرحبا بكم في عالم الذكاء الاصطناعي. اللغة العربية جميلة جدا.",
    "नमस्ते, आप कैसे हैं? मैं हिंदी सीख रहा हूँ। भारत एक बड़ा देश है।",
    "Emoji time 😀 😂 🎉 👍 ❤️ 🚀 🌍 — smiles and rockets everywhere 😀😀.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "for (int i = 0; i < n; i++) {\n\tsum += values[i];\n}\n",
    "fn main() {\n    let x: u32 = 42;\n    println!(\"{}\", x);\n}\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 12345 3.14159 2.71828 1e-6 -7",
    "Prices: $19.99, €5,00, ¥1000, 50% off, #1 item, user@example.com, a_b-c.",
    "Tabs\tand  double  spaces,   triple   spaces,\n\nnew lines\r\nand carriage returns.",
    "    indented line with four spaces\n        and eight spaces\n\t\ttwo tabs",
    "JSON: {\"name\": \"wgserve\", \"tokens\": [1, 2, 3], \"ok\": true}",
    "HTML <div class=\"note\">Hello</div> and markdown **bold** _italic_ `code`.",
]

TOKENIZER_CASES = [
    "",
    " ",
    "   ",
    "\n\n\t",
    " leading space",
    "trailing space ",
    "Hello world",
    "A brand new sentence about tokenizers, written for the tests.",
    "HE'S sure THEY'LL come; we'D better go, isn't it?",
    "Die Bäckerei öffnet um acht Uhr.",
    "Voilà une phrase française, avec des accents: é è à ç ô.",
    "Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε",
    "机器学习很有趣。",
    "猫が好きです。",
    "사과를 먹었어요.",
    "العدد 2024 هو سنة",
    "हिंदी भाषा",
    "1234567",
    "pi is 3.14159265 and e is 2.718",
    "rare characters: 龘 𠜎 ㊙ ꙮ",
    "emoji: 🦙🧪🫠 and 👨‍👩‍👧",
    "def mul(x, y):\n\treturn x * y\n",
    "spaces    inside\t\ttabs\n\n\nnewlines",
    "text with <|im_end|> inside and <|endoftext|> too",
    "header <|start_header_id|>user<|end_header_id|> and <s> </s> [INST]",
    "<|user|>\nHi there<|end|>\n<|assistant|>\n",
]

CHAT_CASES = [
    {
        "name": "user_only",
        "messages": [{"role": "user", "content": "Hello! Who are you?"}],
        "add_generation_prompt": True,
    },
    {
        "name": "system_user",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name a colour."},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "multi_turn",
        "messages": [
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "2 + 2 = 4."},
            {"role": "user", "content": "And times 3?"},
        ],
        "add_generation_prompt": True,
    },
    {
        "name": "multi_turn_no_generation_prompt",
        "messages": [
            {"role": "user", "content": "Say hi in German."},
            {"role": "assistant", "content": "Hallo!"},
        ],
        "add_generation_prompt": False,
    },
]

QWEN3_EXTRA_CHAT_CASES = [
    {
        "name": "user_only_thinking_disabled",
        "messages": [{"role": "user", "content": "Hello! Who are you?"}],
        "add_generation_prompt": True,
        "template_kwargs": {"enable_thinking": False},
    },
    {
        "name": "assistant_with_reasoning",
        "messages": [
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "<think>\nEasy sum.\n</think>\n\n2 + 2 = 4."},
            {"role": "user", "content": "Thanks!"},
        ],
        "add_generation_prompt": True,
    },
]

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
    "qwen3": {
        "tokenizer": "bpe",
        "pattern": QWEN2_PATTERN,
        "nfc": True,
        "template_file": "Qwen-Qwen3-0.6B.jinja",
        "added_tokens": [
            ("<|endoftext|>", True),
            ("<|im_start|>", True),
            ("<|im_end|>", True),
            ("<tool_call>", False),
            ("</tool_call>", False),
            ("<think>", False),
            ("</think>", False),
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
        "architecture": "Qwen3ForCausalLM",
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

# Gemma's SentencePiece ids: <pad> <eos> <bos> <unk> first, then control
# pieces (real Gemma 3: <mask> 4, <start_of_turn> 105, <end_of_turn> 106).
GEMMA_SPECIAL_IDS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
GEMMA_CONTROL_SYMBOLS = ["<mask>", "<start_of_turn>", "<end_of_turn>"]
GEMMA_EXTRA_TOKENIZER_CASES = [
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text after bos and <eos> and <pad><mask>",
]

BPE_VOCAB_SIZE = 640  # byte alphabet + merges, before the added tokens
SPM_VOCAB_SIZE = 900  # incl. <unk> <s> </s> and the 256 byte pieces


def versions():
    names = ["transformers", "torch", "tokenizers", "gguf", "sentencepiece", "numpy"]
    return {n: importlib.metadata.version(n) for n in names}


# ---------------------------------------------------------------- templates


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


def read_template(llama_cpp, spec):
    if "template_repo_file" in spec:
        with open(os.path.join(REPO_ROOT, spec["template_repo_file"]), encoding="utf-8") as f:
            return f.read()
    if spec["template_file"] is None:
        return MISTRAL_TEMPLATE
    with open(os.path.join(llama_cpp, TEMPLATES_SUBDIR, spec["template_file"]), encoding="utf-8") as f:
        return f.read()


# ---------------------------------------------------------------- tokenizers


def build_bpe_tokenizer(spec):
    """Byte-level BPE laid out as Qwen2's / Llama 3's tokenizer.json."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC() if spec["nfc"] else None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(spec["pattern"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    # Added tokens go after the trained vocabulary, as in the real files.
    tok.add_tokens([
        AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for content, special in spec["added_tokens"]
    ])
    byte_level = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    if spec["add_bos"]:
        bos = spec["bos"]
        tok.post_processor = processors.Sequence([
            byte_level,
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0",
                pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                special_tokens=[(bos, tok.token_to_id(bos))],
            ),
        ])
    else:
        tok.post_processor = byte_level
    return tok


def train_spm(gemma=False):
    """A SentencePiece BPE model configured as Llama 2 / Mistral / Phi-3's,
    or with gemma as Gemma's: no dummy prefix, <pad> <eos> <bos> <unk> as
    ids 0-3 and the control pieces GEMMA_CONTROL_SYMBOLS after them."""
    import sentencepiece as spm

    if gemma:
        ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
                   bos_piece="<bos>", unk_piece="<unk>", control_symbols=GEMMA_CONTROL_SYMBOLS)
        assert {k: ids[k.strip("<>") + "_id"] for k in GEMMA_SPECIAL_IDS} == GEMMA_SPECIAL_IDS
    else:
        ids = dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 3),
        model_writer=model,
        model_type="bpe",
        vocab_size=SPM_VOCAB_SIZE,
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=not gemma,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_by_unicode_script=True,
        split_by_whitespace=True,
        character_coverage=0.9995,
        unk_surface=" \u2047 ",
        num_threads=1,
        shuffle_input_sentence=False,
        hard_vocab_limit=False,
        minloglevel=2,
        **ids,
    )
    return model.getvalue()


def build_spm_tokenizer(spec, model_proto):
    """The tokenizer.json that the Llama-2-era converter wrote for Mistral
    and Phi-3 (legacy: normalizer Prepend + Replace, no pre-tokenizer)."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers.convert_slow_tokenizer import generate_merges

    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab, {p: sp.get_score(i) for p, i in vocab.items()})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
    ])
    tok.add_special_tokens([
        AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False)
        for t in ["<unk>", "<s>", "</s>"]
    ])
    tok.add_tokens([
        AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for content, special in spec["added_tokens"]
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)]
    )
    return tok, sp


def build_gemma_tokenizer(model_proto):
    """The tokenizer.json of google/gemma-3-*: BPE with byte fallback over
    the sentencepiece vocabulary, normalizer Replace(" ", "▁") (no dummy
    prefix), no pre-tokenizer, every piece before the byte pieces a special
    added token, a <bos> post-processor."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
    from transformers.convert_slow_tokenizer import generate_merges

    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab, {p: sp.get_score(i) for p, i in vocab.items()})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = list(GEMMA_SPECIAL_IDS) + GEMMA_CONTROL_SYMBOLS
    assert [vocab[t] for t in specials] == list(range(len(specials))), specials
    tok.add_special_tokens([
        AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in specials
    ])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0", pair="<bos>:0 $A:0 <bos>:1 $B:1", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return tok, sp


def gemma_segment_ids(sp, text, add_bos):
    """sentencepiece ids with Gemma's special pieces matched whole in the
    text and each text segment between them encoded alone (no dummy
    prefix): what llama.cpp computes from the GGUF."""
    specials = list(GEMMA_SPECIAL_IDS) + GEMMA_CONTROL_SYMBOLS
    ids = [GEMMA_SPECIAL_IDS["<bos>"]] if add_bos else []
    rest = text
    while rest:
        hits = [(rest.find(t), t) for t in specials if t in rest]
        if not hits:
            ids += sp.encode(rest)
            break
        pos, token = min(hits)
        ids += sp.encode(rest[:pos]) + [sp.piece_to_id(token)]
        rest = rest[pos + len(token):]
    return ids


def write_tokenizer_files(spec, tok, template, hf_dir, spm_proto):
    """Writes tokenizer.json + tokenizer_config.json as the real repos have
    them, loads them with AutoTokenizer and saves them back with
    save_pretrained (chat template kept inside tokenizer_config.json)."""
    from transformers import AutoTokenizer

    os.makedirs(hf_dir, exist_ok=True)
    tok.save(os.path.join(hf_dir, "tokenizer.json"))
    if spm_proto is not None:
        with open(os.path.join(hf_dir, "tokenizer.model"), "wb") as f:
            f.write(spm_proto)
    config = {
        "tokenizer_class": spec["tokenizer_class"],
        "bos_token": spec["bos"],
        "eos_token": spec["eos"],
        "pad_token": spec["pad"],
        "unk_token": spec["unk"],
        "add_bos_token": spec["add_bos"],
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 256,
        "chat_template": template,
    }
    if spec["tokenizer"] == "spm":
        config["legacy"] = True
        config["add_prefix_space"] = None
    if spec["tokenizer"] == "bpe" and spec["tokenizer_class"] == "Qwen2Tokenizer":
        config["errors"] = "replace"
        config["split_special_tokens"] = False
    with open(os.path.join(hf_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    loaded = AutoTokenizer.from_pretrained(hf_dir)
    loaded.save_pretrained(hf_dir, save_jinja_files=False)
    if spm_proto is not None and not os.path.isfile(os.path.join(hf_dir, "tokenizer.model")):
        with open(os.path.join(hf_dir, "tokenizer.model"), "wb") as f:
            f.write(spm_proto)
    return AutoTokenizer.from_pretrained(hf_dir)


def check_tokenizer(spec, hf_tok, raw_tok, sp):
    """Byte-level BPE: AutoTokenizer must agree with the tokenizer.json we
    built and decode back to the (NFC) text. SPM: the legacy tokenizer.json
    we built must agree with sentencepiece on text without special-token
    strings (AutoTokenizer's LlamaTokenizer differs on leading spaces, see
    spm_ids)."""
    if spec["tokenizer"] == "gemma":
        for text in tokenizer_cases(spec) + CORPUS:
            ids = hf_tok.encode(text, add_special_tokens=False)
            assert ids == raw_tok.encode(text, add_special_tokens=False).ids, text
            assert ids == gemma_segment_ids(sp, text, False), (text, ids, gemma_segment_ids(sp, text, False))
            assert hf_tok.encode(text, add_special_tokens=True) == gemma_segment_ids(sp, text, True), text
            assert hf_tok.decode(ids) == text, (text, hf_tok.decode(ids))
        return
    specials = [c for c, _ in spec["added_tokens"]] + ["<s>", "</s>", "<unk>"]
    for text in TOKENIZER_CASES + CORPUS:
        raw_ids = raw_tok.encode(text, add_special_tokens=False).ids
        if sp is not None:
            if not any(s in text for s in specials):
                assert raw_ids == sp.encode(text), (text, raw_ids, sp.encode(text))
            continue
        ids = hf_tok.encode(text, add_special_tokens=False)
        assert ids == raw_ids, (text, ids, raw_ids)
        expected = unicodedata.normalize("NFC", text) if spec["nfc"] else text
        assert hf_tok.decode(ids) == expected, (text, hf_tok.decode(ids))


def spm_ids(raw_tok, text, add_special_tokens):
    """Ids with sentencepiece's semantics (a dummy "▁" prefix on every text
    segment, also right after a special token), from the legacy
    tokenizer.json: what llama.cpp's SPM tokenizer computes for the GGUF.
    transformers 5's LlamaTokenizer rebuilds the pipeline as
    Metaspace(prepend_scheme="always"), which adds no "▁" to a segment that
    already starts with a space: " a" -> "▁a", where sentencepiece and
    llama.cpp give "▁▁a"."""
    return raw_tok.encode(text, add_special_tokens=add_special_tokens).ids


def tokenizer_cases(spec):
    return TOKENIZER_CASES + (GEMMA_EXTRA_TOKENIZER_CASES if spec["tokenizer"] == "gemma" else [])


def tokenizer_section(spec, hf_tok, raw_tok):
    cases = []
    for text in tokenizer_cases(spec):
        case = {
            "text": text,
            "ids_with_special": hf_tok.encode(text, add_special_tokens=True),
            "ids": hf_tok.encode(text, add_special_tokens=False),
        }
        if spec["tokenizer"] == "spm":
            case["ids_with_special_sentencepiece"] = spm_ids(raw_tok, text, True)
            case["ids_sentencepiece"] = spm_ids(raw_tok, text, False)
        cases.append(case)
    section = {
        "class": type(hf_tok).__name__,
        "add_bos": spec["add_bos"],
        "cases": cases,
    }
    if spec["tokenizer"] == "gemma":
        section["note"] = (
            "ids equal sentencepiece's (no dummy prefix) on each text segment between special "
            "pieces matched whole, as llama.cpp computes them from the GGUF (asserted)."
        )
    if spec["tokenizer"] == "spm":
        section["note"] = (
            "ids/ids_with_special: AutoTokenizer of hf/ (transformers 5 LlamaTokenizer, "
            "Metaspace prepend_scheme=always). *_sentencepiece: sentencepiece semantics "
            "(dummy prefix on every text segment), what llama.cpp computes from the GGUF; "
            "they differ only where a text segment starts with a space."
        )
    return section


def chat_section(family, spec, hf_tok, raw_tok):
    cases = CHAT_CASES + (QWEN3_EXTRA_CHAT_CASES if family == "qwen3" else [])
    out = []
    for case in cases:
        kwargs = case.get("template_kwargs", {})
        entry = {"name": case["name"], "messages": case["messages"],
                 "add_generation_prompt": case["add_generation_prompt"]}
        if kwargs:
            entry["template_kwargs"] = kwargs
        try:
            text = hf_tok.apply_chat_template(
                case["messages"], add_generation_prompt=case["add_generation_prompt"], tokenize=False, **kwargs
            )
            ids = hf_tok.apply_chat_template(
                case["messages"], add_generation_prompt=case["add_generation_prompt"], tokenize=True, **kwargs
            )
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            entry["text"] = text
            entry["ids"] = list(ids)
            assert entry["ids"] == hf_tok.encode(text, add_special_tokens=False)
            if spec["tokenizer"] == "spm":
                entry["ids_sentencepiece"] = spm_ids(raw_tok, text, False)
        except Exception as e:  # the template's raise_exception
            entry["error"] = str(e)
        out.append(entry)
    return out


# ---------------------------------------------------------------- models

# Prompts of the model references: lengths from a few tokens to ~40, two of
# them longer than the mistral (8) and phi3 (12) sliding windows; prompt +
# 16 generated tokens stay <= 64 (phi3's original context: short factors).
PROMPTS = [
    "Hello",
    "The capital of France is",
    "Der Fuchs springt über den Hund; 12345 ist eine Zahl.",
    "def add(a, b):\n    return a + b\n# Привет, 世界! 3.14159 😀 and more words here",
]
MAX_SEQ_LEN_PHI3 = 64

# Tiny f16 model / wider q4_k model shapes.
SHAPES = {
    "f16": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16},
    "q4_k": {"hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 1,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64},
}
QWEN3_HEAD_DIM_F16 = 32  # like real Qwen3, head_dim != hidden / heads


def make_config(family, spec, hf_tok, shape_name):
    from transformers import LlamaConfig, MistralConfig, Phi3Config, Qwen2Config, Qwen3Config

    shape = dict(SHAPES[shape_name])
    vocab_size = -(-len(hf_tok) // spec["vocab_multiple"]) * spec["vocab_multiple"]
    ids = {t: hf_tok.convert_tokens_to_ids(t) for t in [spec["config_bos"], spec["eos"], spec["pad"]] if t}
    common = dict(
        vocab_size=vocab_size,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        bos_token_id=ids[spec["config_bos"]],
        eos_token_id=ids[spec["eos"]],
        pad_token_id=ids.get(spec["pad"]),
        hidden_act="silu",
        attention_dropout=0.0,
        **shape,
    )
    if family == "qwen2":
        del common["head_dim"]
        return Qwen2Config(tie_word_embeddings=True, rope_theta=1e6, use_sliding_window=False, **common)
    if family == "qwen3":
        if shape_name == "f16":
            common["head_dim"] = QWEN3_HEAD_DIM_F16
        return Qwen3Config(tie_word_embeddings=True, rope_theta=1e6, use_sliding_window=False, **common)
    if family == "llama3":
        del common["head_dim"]
        rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
        return LlamaConfig(tie_word_embeddings=False, rope_parameters=rope, **common)
    if family == "mistral":
        del common["head_dim"]
        return MistralConfig(tie_word_embeddings=False, rope_theta=10000.0, sliding_window=8, **common)
    if family == "phi3":
        half = common.pop("head_dim") // 2
        short = [round(1.0 + 0.25 * i, 4) for i in range(half)]
        long = [round(1.5 + 0.5 * i * 3.0 / max(half - 1, 1), 4) for i in range(half)]
        rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": short, "long_factor": long,
                "original_max_position_embeddings": 64}
        return Phi3Config(tie_word_embeddings=False, rope_parameters=rope, original_max_position_embeddings=64,
                          sliding_window=12, resid_pdrop=0.0, embd_pdrop=0.0, **common)
    raise ValueError(family)


def randomize(model, seed):
    """Random weights with spread-out logits: matrices N(0, 1/fan_in) (q/k
    a bit sharper), embeddings N(0, 3/sqrt(hidden)) so logits spread over
    several units, norms around 1, biases nonzero."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size
    gemma = model.config.model_type == "gemma3_text"
    for name, param in sorted(model.named_parameters()):
        shape = param.shape
        if gemma and name == "model.norm.weight":
            # Gemma ties the head to the embedding, which enters scaled by
            # sqrt(hidden): a small embedding keeps each token's own row
            # from dominating the residual (greedy would repeat the last
            # token); the final norm (1 + w, about 3) spreads the logits.
            value = 6.0 + 0.2 * torch.randn(shape, generator=gen)
        elif "norm" in name:
            # Gemma's RMSNorm scales by (1 + w): its w are centred on 0.
            value = (0.0 if gemma else 1.0) + 0.2 * torch.randn(shape, generator=gen)
        elif name.endswith("bias"):
            value = 0.5 * torch.randn(shape, generator=gen)
        elif "embed_tokens" in name or "lm_head" in name:
            value = ((0.25 if gemma else 3.0) / math.sqrt(hidden)) * torch.randn(shape, generator=gen)
        else:
            gain = 1.5 if any(k in name for k in ("q_proj", "k_proj", "qkv_proj")) else 1.0
            if any(k in name for k in ("o_proj", "down_proj")):
                gain = 2.0  # layer outputs outweigh the token's own embedding
            value = (gain / math.sqrt(shape[1])) * torch.randn(shape, generator=gen)
        with torch.no_grad():
            param.copy_(value)


def generation_config(spec, hf_tok, config):
    from transformers import GenerationConfig

    eos = [hf_tok.convert_tokens_to_ids(t) for t in spec["generation_eos"]]
    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=eos if len(eos) > 1 else eos[0],
        pad_token_id=config.pad_token_id,
    )


# Runs llama.cpp's converter with the byte-level pre-tokenizer name pinned
# (argv: llama.cpp dir, pre name or "", hf dir, out file, outtype).
CONVERT_WRAPPER = r"""
import sys
llama_cpp, pre, hf_dir, out, outtype = sys.argv[1:6]
sys.path.insert(0, llama_cpp)
sys.path.insert(1, llama_cpp + "/gguf-py")
import conversion.base as base
if pre:
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outtype", outtype, "--outfile", out]
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


def convert_to_gguf(llama_cpp, spec, hf_dir, out, outtype):
    env = dict(os.environ, NO_LOCAL_GGUF="1")
    subprocess.run(
        [sys.executable, "-c", CONVERT_WRAPPER, llama_cpp, spec.get("gguf_pre", ""), hf_dir, out, outtype],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def encode_q4_k(w):
    """float32 [rows, cols] (cols % 256 == 0) -> uint8 [rows, cols/256*144]
    in ggml's block_q4_K layout: f16 d, f16 dmin, 12 bytes of 6-bit
    sub-block scales and mins, 128 bytes of 4-bit quants (sub-blocks 2i and
    2i+1 share 32 bytes: low then high nibble). Value = d*sc*q - dmin*m."""
    rows, cols = w.shape
    x = w.astype(np.float32).reshape(-1, 8, 32)  # [blocks, sub-blocks, 32]
    lo = np.minimum(x.min(axis=-1), 0.0)
    hi = x.max(axis=-1)
    scale = (hi - lo) / 15.0  # [blocks, 8]
    mins = -lo
    d = (scale.max(axis=-1) / 63.0).astype(np.float16)
    dmin = (mins.max(axis=-1) / 63.0).astype(np.float16)
    d32 = d.astype(np.float32)[:, None]
    dmin32 = dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32 > 0, np.rint(scale / d32), 0).clip(0, 63).astype(np.uint8)
        mq = np.where(dmin32 > 0, np.ceil(mins / dmin32), 0).clip(0, 63).astype(np.uint8)
        eff_scale = (d32 * sc)[..., None]
        eff_min = (dmin32 * mq)[..., None]
        q = np.where(eff_scale > 0, np.rint((x + eff_min) / eff_scale), 0).clip(0, 15).astype(np.uint8)
    scales = np.zeros((x.shape[0], 12), dtype=np.uint8)
    for j in range(4):
        scales[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        scales[:, j + 4] = (mq[:, j] & 63) | ((mq[:, j + 4] >> 4) << 6)
        scales[:, j + 8] = (sc[:, j + 4] & 0xF) | ((mq[:, j + 4] & 0xF) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)
    blocks = np.concatenate(
        [d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), scales, qs], axis=1
    )
    return blocks.reshape(rows, cols // 256 * 144)


def copy_gguf(src, dst, extra_kv, quantize):
    """Rewrites the GGUF `src` as `dst`: every key copied (plus extra_kv:
    {key: (value, GGUFValueType)}), every tensor as is or, with quantize,
    2-D weights Q4_K (our encoder) and token_embd Q8_0 (gguf-py), 1-D F32.
    Returns {name: float32 array} as gguf-py's dequantize reads dst."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = field.contents()
        if name == "general.file_type" and quantize:
            value = int(gguf.LlamaFileType.MOSTLY_Q4_K_M)
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, field.types[0], sub_type=sub_type)
    for name, (value, vtype) in extra_kv.items():
        writer.add_key_value(name, value, vtype)
    values = {}
    for tensor in reader.tensors:
        data = np.array(tensor.data)
        if not quantize or data.ndim != 2:
            writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
            values[tensor.name] = data.astype(np.float32)
            continue
        data = data.astype(np.float32)
        if tensor.name == "token_embd.weight":
            qtype, packed, tol = gguf.GGMLQuantizationType.Q8_0, None, 0.01
            packed = gguf.quants.quantize(data, qtype)
        else:
            qtype, packed, tol = gguf.GGMLQuantizationType.Q4_K, encode_q4_k(data), 0.1
        back = gguf.quants.dequantize(packed, qtype)
        err = np.abs(back - data).max() / np.abs(data).max()
        assert back.shape == data.shape and err < tol, (tensor.name, err)
        writer.add_tensor(tensor.name, packed, raw_dtype=qtype)
        values[tensor.name] = back
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return values


def fake_quantize(model):
    """What copy_gguf(quantize=True) does to the weights, in HF space (a
    Q/K row permutation moves whole rows, so it commutes with row-wise
    quantization): used to pick a seed without converting."""
    import gguf
    import torch

    for name, param in model.named_parameters():
        if param.ndim != 2:
            continue
        w = param.detach().numpy().astype(np.float32)
        if "embed_tokens" in name:
            back = gguf.quants.dequantize(gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                                          gguf.GGMLQuantizationType.Q8_0)
        else:
            back = gguf.quants.dequantize(encode_q4_k(w), gguf.GGMLQuantizationType.Q4_K)
        with torch.no_grad():
            param.copy_(torch.from_numpy(back))


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf's LlamaModel.permute (rows of Q/K)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_gguf_values(model, values, arch):
    """Puts GGUF tensors (float32, by GGUF name) into the HF model."""
    import gguf
    import torch

    cfg = model.config
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    state = {}
    for name, param in model.named_parameters():
        gguf_name = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None and name == "lm_head.weight":
            gguf_name = "output.weight"
        key = gguf_name
        if key not in values and name == "lm_head.weight" and cfg.tie_word_embeddings:
            key = "token_embd.weight"
        w = values[key]
        if arch == "llama" and name.endswith("q_proj.weight"):
            w = unpermute(w, cfg.num_attention_heads)
        if arch == "llama" and name.endswith("k_proj.weight"):
            w = unpermute(w, cfg.num_key_value_heads)
        if arch == "gemma3" and key.endswith("norm.weight"):
            w = w - np.float32(1.0)  # the converter stored 1 + w (exact: see round_gemma3_to_f16)
        assert w.shape == tuple(param.shape), (name, w.shape, param.shape)
        state[name] = torch.from_numpy(np.ascontiguousarray(w))
    model.load_state_dict(state, strict=False)
    for name, param in model.named_parameters():
        assert torch.equal(param.data, state[name]), name


def f32_list(t):
    """Shortest decimal that reads back as the same float32."""
    return [float(str(np.float32(x))) for x in t.detach().float().numpy().reshape(-1)]


def greedy_reference(model, ids, family):
    """Cached greedy decoding (16 steps, EOS does not stop), checked against
    one uncached forward over prompt + generated tokens and generate()."""
    import torch
    from transformers import GenerationConfig

    with torch.no_grad():
        input_ids = torch.tensor([ids])
        out = model(input_ids=input_ids, use_cache=True)
        cache = out.past_key_values
        logits = [out.logits[0, -1]]
        generated = []
        for _ in range(NUM_NEW_TOKENS):
            next_id = int(torch.argmax(logits[-1]))
            generated.append(next_id)
            if len(generated) == NUM_NEW_TOKENS:
                break
            out = model(input_ids=torch.tensor([[next_id]]), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits.append(out.logits[0, -1])
        full = model(input_ids=torch.tensor([ids + generated[:-1]]), use_cache=False).logits[0]
        uncached = full[len(ids) - 1:]
        assert torch.argmax(uncached, dim=-1).tolist() == generated, family
        assert torch.allclose(uncached, torch.stack(logits), atol=1e-4), family
        # generate() without any EOS (the model's generation_config would
        # stop, or with min_new_tokens mask, at its EOS ids).
        saved = model.generation_config
        model.generation_config = GenerationConfig()
        gen_config = GenerationConfig(do_sample=False, max_new_tokens=NUM_NEW_TOKENS,
                                      pad_token_id=model.config.pad_token_id or 0)
        from_generate = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                       generation_config=gen_config)[0, len(ids):].tolist()
        model.generation_config = saved
        assert from_generate == generated, (family, from_generate, generated)
    gaps = []
    for step_logits in logits:
        top2 = torch.topk(step_logits, 2).values
        gaps.append(float(str(np.float32(top2[0] - top2[1]))))
    return {
        "greedy": generated,
        "top2_gap": gaps,
        "logits_last_prompt": f32_list(logits[0]),
        "logits_steps": [f32_list(l) for l in logits[1:1 + NUM_LOGIT_STEPS]],
    }


def prompt_references(model, hf_tok, family):
    prompts = []
    for text in PROMPTS:
        ids = hf_tok.encode(text, add_special_tokens=True)
        if family == "phi3":
            assert len(ids) + NUM_NEW_TOKENS <= MAX_SEQ_LEN_PHI3
        prompts.append({"text": text, "ids": ids, **greedy_reference(model, ids, family)})
    return prompts


def rope_facts(model, family):
    """What transformers' rotary embedding actually uses at these lengths."""
    import torch

    rotary = model.model.rotary_emb
    facts = {
        "inv_freq": f32_list(rotary.inv_freq),
        "attention_scaling": float(rotary.attention_scaling),
    }
    if family == "phi3":
        rope = model.config.rope_parameters
        head_dim = model.config.hidden_size // model.config.num_attention_heads
        base = rope["rope_theta"] * 1.0
        exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
        short = 1.0 / (torch.tensor(rope["short_factor"]) * base ** exponent)
        assert torch.allclose(rotary.inv_freq, short), "phi3 should use the short factors"
        facts["longrope_factor_used"] = "short_factor"
        facts["longrope_rule"] = (
            "transformers: long_factor when seq_len > original_max_position_embeddings (64), else "
            "short_factor; cos/sin times attention_scaling = sqrt(1 + ln(256/64) / ln(64)). "
            "llama.cpp: long factors when n_ctx > n_ctx_orig (64)."
        )
    return facts


def gguf_scalars(path):
    """Non-array metadata of a GGUF, for the record."""
    import gguf

    reader = gguf.GGUFReader(path)
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or field.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        if name == "tokenizer.chat_template":
            continue
        value = field.contents()
        out[name] = float(str(np.float32(value))) if isinstance(value, float) else value
    out["tensors"] = {t.name: [t.tensor_type.name, [int(x) for x in t.shape]] for t in reader.tensors}
    return out


def check_gguf_f16(family, fam_dir, model, hf_tok, extra_keys=()):
    """Checks what llama.cpp's converter wrote into model-f16.gguf.
    1. gguf-py reads it; with the llama Q/K permutation undone (unpermute),
       every tensor must equal the safetensors weight bit for bit.
    2. transformers' own GGUF loader (`gguf_file=`) reads it: same weights
       (it undoes the permutation itself), and logits within 1e-3 on a short
       prompt. Its config comes from the GGUF and misses what it does not
       read: llama3's rope_freqs (no rope scaling), Phi-3's longrope factors,
       sliding windows; where the config differs, the logits are compared
       with its weights in a model of our config (the differences are
       recorded). For qwen3 it cannot load at all: it ignores
       qwen3.attention.key_length (head_dim 32 != 64/4), the error is
       recorded."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    path = os.path.join(fam_dir, "model-f16.gguf")
    reader = gguf.GGUFReader(path)
    values = {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}
    probe = type(model)(model.config)
    load_gguf_values(probe, values, gguf_arch(family))
    ours = dict(model.named_parameters())
    for name, param in probe.named_parameters():
        assert torch.equal(param.data, ours[name].data), (family, name)
    result = {"gguf_py_weights_equal": True}

    try:
        loaded = AutoModelForCausalLM.from_pretrained(fam_dir, gguf_file="model-f16.gguf", dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - recorded in the fixture
        result["transformers_gguf_loader_error"] = str(e).strip().split("\n")[-1][:300]
        return result
    for name, param in loaded.named_parameters():
        assert name in ours, (family, name)
        assert torch.equal(param.data, ours[name].data), (family, name)
    notes = []
    for key in ("rope_parameters", "sliding_window", "original_max_position_embeddings", "head_dim", *extra_keys):
        a, b = getattr(loaded.config, key, None), getattr(model.config, key, None)
        if a != b:
            notes.append(f"{key}: gguf loader {a!r}, ours {b!r}")
    if notes:
        weights = {n: p.data for n, p in loaded.named_parameters()}
        loaded = type(model)(model.config)
        loaded.load_state_dict(weights, strict=False)
    loaded.eval()
    ids = torch.tensor([hf_tok.encode("The capital of France is", add_special_tokens=True)])
    with torch.no_grad():
        diff = (loaded(ids).logits - model(ids).logits).abs().max().item()
    assert diff < 1e-3, (family, diff)
    result.update({"transformers_weights_equal": True, "max_logit_diff": float(str(np.float32(diff))),
                   "transformers_config_differences": notes})
    return result


def min_greedy_gap(model, hf_tok):
    """Smallest top-2 logit gap over the greedy steps of all PROMPTS."""
    import torch

    gap = math.inf
    with torch.no_grad():
        for text in PROMPTS:
            ids = hf_tok.encode(text, add_special_tokens=True)
            out = model(input_ids=torch.tensor([ids]), use_cache=True)
            for step in range(NUM_NEW_TOKENS):
                top2 = torch.topk(out.logits[0, -1], 2)
                gap = min(gap, float(top2.values[0] - top2.values[1]))
                if step + 1 < NUM_NEW_TOKENS:
                    out = model(input_ids=top2.indices[:1].view(1, 1), past_key_values=out.past_key_values,
                                use_cache=True)
    return gap


def random_model(config, hf_tok, base_seed, round_weights):
    """The first seed from base_seed whose greedy steps have no near tie
    (top-2 gap >= MIN_TOP2_GAP) on the weights as the reference will see
    them (round_weights: f16 rounding or Q4_K/Q8_0 round trip)."""
    import torch
    from transformers import AutoModelForCausalLM

    for seed in range(base_seed, base_seed + MAX_SEED_TRIES):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        randomize(model, seed)
        probe = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        probe.load_state_dict(model.state_dict())
        round_weights(probe)
        if min_greedy_gap(probe, hf_tok) >= MIN_TOP2_GAP:
            return model, seed
    raise RuntimeError(f"no seed in {MAX_SEED_TRIES} tries gives top-2 gaps >= {MIN_TOP2_GAP}")


def round_to_f16(model):
    import torch

    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())


def make_models(family, spec, hf_tok, hf_dir, fam_dir, llama_cpp):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    # f16 model: hf/ + model-f16.gguf
    config = make_config(family, spec, hf_tok, "f16")
    model, f16_seed = random_model(config, hf_tok, SEED + 1000 * FAMILIES.index(family), round_to_f16)
    model.generation_config = generation_config(spec, hf_tok, config)
    model.half().save_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    f16_gguf = os.path.join(fam_dir, "model-f16.gguf")
    extra_kv = {}
    if family == "mistral":
        # llama.cpp's converter does not write the window for Mistral (and
        # llama.cpp's llama arch does not apply one); we add the key.
        extra_kv[f"llama.attention.sliding_window"] = (config.sliding_window, gguf.GGUFValueType.UINT32)
    with tempfile.TemporaryDirectory() as tmp:
        converted = os.path.join(tmp, "model-f16.gguf")
        convert_to_gguf(llama_cpp, spec, hf_dir, converted, "f16")
        copy_gguf(converted, f16_gguf, extra_kv, quantize=False)
    gguf_check = check_gguf_f16(family, fam_dir, model, hf_tok)
    f16_prompts = prompt_references(model, hf_tok, family)
    f16_rope = rope_facts(model, family)

    # q4_k model: converted at f32 from a scratch hf dir, then requantized
    wide_config = make_config(family, spec, hf_tok, "q4_k")
    wide, q4_seed = random_model(wide_config, hf_tok, SEED + 500 + 1000 * FAMILIES.index(family), fake_quantize)
    wide.generation_config = generation_config(spec, hf_tok, wide_config)
    q4_gguf = os.path.join(fam_dir, "model-q4_k.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        wide_dir = os.path.join(tmp, "hf")
        wide.save_pretrained(wide_dir)
        for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
            if os.path.isfile(os.path.join(hf_dir, name)):
                shutil.copy(os.path.join(hf_dir, name), wide_dir)
        f32_gguf = os.path.join(tmp, "model-f32.gguf")
        convert_to_gguf(llama_cpp, spec, wide_dir, f32_gguf, "f32")
        values = copy_gguf(f32_gguf, q4_gguf, extra_kv, quantize=True)
    arch = gguf_arch(family)
    load_gguf_values(wide, values, arch)
    wide.eval()
    q4_prompts = prompt_references(wide, hf_tok, family)

    cfg = model.config
    return {
        "config": {
            "architecture": spec["architecture"],
            "gguf_architecture": arch,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            "vocab_size": cfg.vocab_size,
            "tokenizer_len": len(hf_tok),
            "rms_norm_eps": cfg.rms_norm_eps,
            "max_position_embeddings": cfg.max_position_embeddings,
            "rope_parameters": cfg.rope_parameters,
            "sliding_window": getattr(cfg, "sliding_window", None) if family in ("mistral", "phi3") else None,
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "attention_bias": family == "qwen2",
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": cfg.eos_token_id,
            "pad_token_id": cfg.pad_token_id,
            "generation_eos_token_ids": [hf_tok.convert_tokens_to_ids(t) for t in spec["generation_eos"]],
            "rope_effective": f16_rope,
        },
        "models": {
            "f16": {
                "files": ["hf", "model-f16.gguf"],
                "seed": f16_seed,
                "gguf_metadata": gguf_scalars(f16_gguf),
                "gguf_check": gguf_check,
                "prompts": f16_prompts,
            },
            "q4_k": {
                "files": ["model-q4_k.gguf"],
                "seed": q4_seed,
                "shape": {**SHAPES["q4_k"], "vocab_size": wide_config.vocab_size},
                "note": "2-D weights Q4_K, token_embd Q8_0, 1-D F32; reference on gguf-py-dequantized values",
                "rope_effective": rope_facts(wide, family),
                "gguf_metadata": gguf_scalars(q4_gguf),
                "prompts": q4_prompts,
            },
        },
    }


def gguf_arch(family):
    return {"qwen2": "qwen2", "qwen3": "qwen3", "llama3": "llama", "mistral": "llama", "phi3": "phi3",
            "gemma3": "gemma3"}[family]


# ---------------------------------------------------------------- gemma3

# The tiny Gemma 3: 6 layers so that layer 5 is the one global layer of
# transformers' default pattern (every 6th), heads wider than hidden / heads.
GEMMA3_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 6,
                "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}
GEMMA3_ROPE = {
    # Gemma 3 4B+: linear factor 8 on the global layers only.
    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
    "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
}
GEMMA3_SLIDING_WINDOW = 8
MIN_VARIANT_LOGIT_DIFF = 0.05  # the test must be able to tell each variant from the reference


def make_gemma3_config(spec, hf_tok, rope=None, **overrides):
    import copy

    from transformers import Gemma3TextConfig

    ids = {t: hf_tok.convert_tokens_to_ids(t) for t in (spec["bos"], spec["eos"], spec["pad"])}
    args = dict(
        vocab_size=len(hf_tok),
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        bos_token_id=ids[spec["bos"]],
        eos_token_id=ids[spec["eos"]],
        pad_token_id=ids[spec["pad"]],
        hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=GEMMA3_SHAPE["head_dim"],
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
        sliding_window=GEMMA3_SLIDING_WINDOW,
        rope_parameters=copy.deepcopy(rope or GEMMA3_ROPE),
        tie_word_embeddings=True,
        attention_dropout=0.0,
        **GEMMA3_SHAPE,
    )
    args.update(overrides)
    config = Gemma3TextConfig(**args)
    config.architectures = [spec["architecture"]]
    return config


def round_gemma3_to_f16(model):
    """f16 rounding such that the GGUF holds exactly these weights: the
    converter adds Gemma's 1 to each norm weight in float16, so 1 + w is
    kept in [0.5, 4) and rounded to f16 first; w = (1 + w) - 1 is then an
    f16 value too, and f16(w) + 1 is exact."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                scale = (1.0 + param).clamp(0.5, 7.99).half().float()
                param.copy_(scale - 1.0)
                assert torch.equal(param.half().float() + 1.0, scale), name
            else:
                param.copy_(param.half().float())


def gemma3_rope_facts(model):
    """What transformers' rotary embedding uses per layer type."""
    import torch

    rotary = model.model.rotary_emb
    cfg = model.config
    facts = {
        "layer_types": list(cfg.layer_types),
        "global_layers": [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"],
        "inv_freq_global": f32_list(rotary.full_attention_inv_freq),
        "inv_freq_local": f32_list(rotary.sliding_attention_inv_freq),
        "attention_scaling_global": float(rotary.full_attention_attention_scaling),
        "attention_scaling_local": float(rotary.sliding_attention_attention_scaling),
        "sliding_window": cfg.sliding_window,
        "rule": (
            "global (full_attention) layers: inv_freq = theta_global^(-2i/d) / factor (linear), "
            "no window; local (sliding_attention) layers: inv_freq = theta_local^(-2i/d), unscaled, "
            "keys with q - k >= sliding_window masked (a query sees itself and the window - 1 before it); "
            "attention scores scaled by query_pre_attn_scalar^-0.5; embeddings times sqrt(hidden)"
        ),
    }
    head_dim = cfg.head_dim
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    full, local = GEMMA3_ROPE["full_attention"], GEMMA3_ROPE["sliding_attention"]
    assert torch.equal(rotary.full_attention_inv_freq, 1.0 / (full["rope_theta"] ** exponent) / full["factor"])
    assert torch.equal(rotary.sliding_attention_inv_freq, 1.0 / (local["rope_theta"] ** exponent))
    return facts


def gemma3_variants(spec, hf_tok):
    """Configs that differ from the reference in one way a wrong
    implementation could: each must move the logits by more than
    MIN_VARIANT_LOGIT_DIFF somewhere, so the Rust test can tell."""
    import copy

    no_scaling = copy.deepcopy(GEMMA3_ROPE)
    no_scaling["full_attention"] = {"rope_type": "default", "rope_theta": GEMMA3_ROPE["full_attention"]["rope_theta"]}
    scaled_everywhere = copy.deepcopy(GEMMA3_ROPE)
    scaled_everywhere["sliding_attention"] = {"rope_type": "linear", "factor": GEMMA3_ROPE["full_attention"]["factor"],
                                              "rope_theta": GEMMA3_ROPE["sliding_attention"]["rope_theta"]}
    layers = GEMMA3_SHAPE["num_hidden_layers"]
    return {
        "without_rope_scaling": make_gemma3_config(spec, hf_tok, rope=no_scaling),
        "rope_scaling_on_all_layers": make_gemma3_config(spec, hf_tok, rope=scaled_everywhere),
        "without_sliding_window": make_gemma3_config(spec, hf_tok, sliding_window=256),
        "all_layers_sliding": make_gemma3_config(spec, hf_tok, layer_types=["sliding_attention"] * layers),
    }


def variant_logit_diffs(model, prompts, variants):
    """Largest |logit difference| between the reference and each variant
    (same weights) over the recorded positions of every prompt (last prompt
    position and the NUM_LOGIT_STEPS decode steps, teacher-forced with the
    reference's greedy tokens)."""
    import torch
    from transformers import AutoModelForCausalLM

    def recorded_logits(m, prompt):
        ids = prompt["ids"] + prompt["greedy"][:NUM_LOGIT_STEPS]
        with torch.no_grad():
            out = m(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        return out[len(prompt["ids"]) - 1:]

    reference = [recorded_logits(model, p) for p in prompts]
    for prompt, logits in zip(prompts, reference):
        recorded = torch.tensor([prompt["logits_last_prompt"]] + prompt["logits_steps"])
        assert torch.allclose(logits, recorded, atol=1e-4)
    out = {}
    for name, config in variants.items():
        variant = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        variant.load_state_dict(model.state_dict())
        per_prompt = [float(str(np.float32((recorded_logits(variant, p) - r).abs().max())))
                      for p, r in zip(prompts, reference)]
        assert max(per_prompt) > MIN_VARIANT_LOGIT_DIFF, (name, per_prompt)
        out[name] = {"max_abs_logit_diff": max(per_prompt), "per_prompt": per_prompt}
    return out


def make_gemma3_models(family, spec, hf_tok, hf_dir, fam_dir, llama_cpp):
    """The tiny Gemma 3: a float16 checkpoint in the scratch hf_dir,
    converted by llama.cpp to model-f16.gguf (the only committed model
    file), and the reference of transformers' Gemma3ForCausalLM on the
    GGUF's weights (equal to the checkpoint's bit for bit, asserted)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = make_gemma3_config(spec, hf_tok)
    model, seed = random_model(config, hf_tok, SEED + 1000 * FAMILIES.index(family), round_gemma3_to_f16)
    round_gemma3_to_f16(model)
    model.generation_config = generation_config(spec, hf_tok, config)
    model.half().save_pretrained(hf_dir)
    with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
        saved_config = json.load(f)
    checkpoint = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    f16_gguf = os.path.join(fam_dir, "model-f16.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        converted = os.path.join(tmp, "model-f16.gguf")
        convert_to_gguf(llama_cpp, spec, hf_dir, converted, "f16")
        copy_gguf(converted, f16_gguf, {}, quantize=False)
    gguf_check = check_gguf_f16(family, fam_dir, checkpoint, hf_tok,
                                extra_keys=("layer_types", "query_pre_attn_scalar", "final_logit_softcapping"))

    # The reference runs on the GGUF's tensors (norms minus the stored 1).
    import gguf

    values = {t.name: np.array(t.data, dtype=np.float32) for t in gguf.GGUFReader(f16_gguf).tensors}
    ref = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    load_gguf_values(ref, values, gguf_arch(family))
    ref.generation_config = checkpoint.generation_config
    prompts = prompt_references(ref, hf_tok, family)
    assert max(len(p["ids"]) for p in prompts) > 4 * GEMMA3_SLIDING_WINDOW
    metadata = gguf_scalars(f16_gguf)
    arch = gguf_arch(family)
    scaling_keys = {k: metadata.get(f"{arch}.rope.scaling.{k}") for k in ("type", "factor")}
    assert scaling_keys == {"type": "linear", "factor": GEMMA3_ROPE["full_attention"]["factor"]}, scaling_keys
    pattern_key = f"{arch}.attention.sliding_window_pattern"

    cfg = ref.config
    return {
        "config": {
            "architecture": spec["architecture"],
            "gguf_architecture": arch,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": cfg.head_dim,
            "vocab_size": cfg.vocab_size,
            "tokenizer_len": len(hf_tok),
            "rms_norm_eps": cfg.rms_norm_eps,
            "max_position_embeddings": cfg.max_position_embeddings,
            "rope_parameters": cfg.rope_parameters,
            "sliding_window": cfg.sliding_window,
            "layer_types": list(cfg.layer_types),
            "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
            "final_logit_softcapping": cfg.final_logit_softcapping,
            "attn_logit_softcapping": cfg.attn_logit_softcapping,
            "hidden_activation": cfg.hidden_activation,
            "embedding_scale": float(str(np.float32(math.sqrt(cfg.hidden_size)))),
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "attention_bias": False,
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": cfg.eos_token_id,
            "pad_token_id": cfg.pad_token_id,
            "generation_eos_token_ids": [hf_tok.convert_tokens_to_ids(t) for t in spec["generation_eos"]],
            "checkpoint_config_json": {k: saved_config.get(k) for k in
                                       ("rope_parameters", "layer_types", "sliding_window", "sliding_window_pattern")},
            "gguf_layer_pattern": {
                "key": pattern_key,
                "value": metadata.get(pattern_key),
                "note": (
                    "llama.cpp's Gemma3Model converter writes no layer pattern (config.json's layer_types "
                    "is not read); llama.cpp then assumes every 6th layer global (load_swa_pattern(ml, 6)), "
                    "as transformers' default sliding_window_pattern 6 and wgserve do"
                ),
            },
            "rope_effective": gemma3_rope_facts(ref),
        },
        "models": {
            "f16": {
                "files": ["model-f16.gguf"],
                "seed": seed,
                "gguf_metadata": metadata,
                "gguf_check": gguf_check,
                "variant_logit_diffs": variant_logit_diffs(ref, prompts, gemma3_variants(spec, hf_tok)),
                "prompts": prompts,
            },
        },
        "q4_k_note": (
            "no model-q4_k.gguf for gemma3: Q4_K needs rows of 256, and 6 layers that wide (the fewest "
            "with a global layer) take about 1.2 MB of Q4_K plus a 0.25 MB Q8_0 embedding"
        ),
    }


# ---------------------------------------------------------------- main


def make_tokenizer(family, spec, llama_cpp, hf_dir):
    """Returns (hf tokenizer, tokenizers.Tokenizer we built, template) after
    writing hf/'s tokenizer files."""
    template = read_template(llama_cpp, spec)
    if spec["tokenizer"] == "bpe":
        raw = build_bpe_tokenizer(spec)
        hf_tok = write_tokenizer_files(spec, raw, template, hf_dir, None)
        check_tokenizer(spec, hf_tok, raw, None)
    elif spec["tokenizer"] == "gemma":
        proto = train_spm(gemma=True)
        raw, sp = build_gemma_tokenizer(proto)
        hf_tok = write_tokenizer_files(spec, raw, template, hf_dir, proto)
        check_tokenizer(spec, hf_tok, raw, sp)
    else:
        proto = train_spm()
        raw, sp = build_spm_tokenizer(spec, proto)
        hf_tok = write_tokenizer_files(spec, raw, template, hf_dir, proto)
        check_tokenizer(spec, hf_tok, raw, sp)
    return hf_tok, raw, template


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

#!/usr/bin/env python3
"""References for Qwen2.5-Coder-0.5B-Instruct (GGUF) from HF transformers.

Run through scripts/make_qwen2_reference.sh (it makes the venv).
transformers reads the GGUF itself (`gguf_file=`): its tokenizer is built
from the file's `tokenizer.ggml.*` keys (Qwen2Converter: NFC, the Qwen 2
split regex, byte-level BPE), which is an implementation independent of
wgserve's.

Writes
  tests/fixtures/qwen2_tokenizer.json:
    multilingual and edge-case texts with their ids, without and with the
    tokenizer's special tokens (Qwen adds no BOS: add_bos_token = false),
    the ids of the text's NFC form (see NFC_NOTE), and the decoded text.
  tests/fixtures/qwen2_chat_template.json:
    conversations rendered by `apply_chat_template` with the GGUF's own
    template (text, and ids as apply_chat_template(tokenize=True) gives
    them: the text tokenized without added specials).
  tests/fixtures/qwen2_reference.json (unless --no-golden), shaped as
    gemma3_reference.json: per prompt the text, prompt ids, 32 greedy ids
    (EOS does not stop), top-2 logit gaps and top-1 logits per step, the
    top-10 (id, logit) of the first generated position.
"""

import argparse
import os
import sys
import unicodedata

from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(__file__))
from fixture_json import write_fixture  # noqa: E402
from greedy_reference import (  # noqa: E402
    NUM_NEW_TOKENS,
    chat_cases,
    greedy,
    gguf_field,
    load_model,
    min_top2_logit_gap,
    open_gguf,
    prompt_record,
    render_chat,
    shared_chat,
    versions,
)

NFC_NOTE = (
    "Qwen's own tokenizer.json NFC-normalizes the text first; transformers' "
    "GGUF converter (and llama.cpp) do not, so `ids` differ from Qwen's for "
    "text that is not in NFC. `ids_of_nfc_text` are the ids of the NFC form, "
    "what Qwen's tokenizer.json gives (and wgserve, which keeps the NFC step)."
)
MADE_BY = "scripts/make_qwen2_reference.py (via scripts/make_qwen2_reference.sh)"

# Each names what it exercises in the split regex, the NFC normalizer or
# the added tokens.
TOKENIZER_TEXTS = [
    ("english", "Hello world! The quick brown fox jumps over the lazy dog."),
    ("contractions", "I'm sure you're right, HE'LL know; they'VE said it's 'quoted'."),
    ("digits", "In 2024, 12345 people paid $3.14159 each (1,000,000 total)."),
    ("code", "def f(x):\n    return x ** 2  # square\n\nprint(f(12))\n"),
    ("space_runs", "a  b   c    d\t\te\n\n\nf \n g"),
    ("leading_trailing_spaces", "   padded on both sides   "),
    ("only_spaces", "     "),
    ("newlines_crlf", "line one\r\nline two\r\n\r\nline four\n"),
    ("chinese", "你好，世界！今天天气很好。"),
    ("japanese", "猫はソファで寝ています。カタカナとひらがな。"),
    ("korean", "안녕하세요, 세계! 반갑습니다."),
    ("arabic", "مرحبا بالعالم، كيف حالك؟"),
    ("hindi_combining", "नमस्ते दुनिया, आप कैसे हैं?"),
    ("russian_greek", "Привет, мир! Γειά σου Κόσμε!"),
    ("emoji", "🤖👍🏽 family: 👨‍👩‍👧 flags: 🇫🇷🇯🇵"),
    ("nfc_composes", "cafe\u0301 A\u030a \u212b"),
    ("accents", "Le chat dort sur le canapé. Die Katze schläft. ñandú"),
    ("unicode_spaces", "non\u00a0breaking ideographic\u3000space thin\u2009space"),
    ("special_tokens", "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"),
    ("tool_call_tokens", "<tool_call>\n{\"name\": \"f\"}\n</tool_call><|endoftext|>"),
    ("fim_tokens", "<|fim_prefix|>def add(a, b):<|fim_suffix|>\n<|fim_middle|>"),
    ("lookalike_special", "<|im_start |> <im_end> <|unknown|>"),
    ("punctuation_runs", "Wait... what?!? (yes) [no] {maybe} <html></html> --> ==="),
    ("urls_paths", "https://example.com/a/b?c=1&d=2 ~/src/main.rs C:\\Users\\x"),
    ("mixed_scripts", "ABCdef123ghi 中文English混合 ąčęėįšųūž"),
    ("empty", ""),
]

CHAT_CASES = [
    shared_chat("system_user"),
    {
        "name": "user_only_default_system",
        "messages": [{"role": "user", "content": "Write a Python function that reverses a string."}],
    },
    shared_chat("multi_turn"),
    shared_chat("system_multi_turn_ends_with_assistant"),
    {
        "name": "late_system_message",
        "messages": [
            {"role": "user", "content": "First question."},
            {"role": "assistant", "content": "First answer."},
            {"role": "system", "content": "From now on, answer in one word."},
            {"role": "user", "content": "Second question?"},
        ],
    },
    shared_chat("whitespace_unicode_code"),
]

PROMPTS = [
    {
        "name": "raw_code",
        "kind": "raw",
        "text": "def merge_sorted(a, b):\n"
        '    """Merge two sorted lists into one sorted list."""\n'
        "    result = []\n"
        "    i, j = 0, 0\n"
        "    while i < len(a) and j < len(b):\n",
    },
    {
        "name": "raw_english",
        "kind": "raw",
        "text": "The old lighthouse keeper climbed the spiral stairs every evening at dusk. "
        "One stormy night in November, he noticed",
    },
    {
        "name": "raw_multilingual",
        "kind": "raw",
        "text": "Le chat dort sur le canapé. 猫はソファで寝ています。 猫在沙发上睡觉。 "
        "Кошка спит на диване. In English:",
    },
    {
        "name": "chat_default_system",
        "kind": "chat",
        "messages": [{"role": "user", "content": "Write a Python function that checks whether a number is prime."}],
    },
    {
        "name": "chat_system",
        "kind": "chat",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    },
]


def tokenizer_fixture(tok, gguf_name, versions, add_bos):
    cases = []
    for name, text in TOKENIZER_TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with_special = tok(text, add_special_tokens=True)["input_ids"]
        nfc_ids = tok(unicodedata.normalize("NFC", text), add_special_tokens=False)["input_ids"]
        cases.append(
            {
                "name": name,
                "text": text,
                "ids": ids,
                "ids_with_special": with_special,
                "ids_of_nfc_text": nfc_ids,
                "pieces": tok.convert_ids_to_tokens(ids),
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            }
        )
    return {
        "gguf_file": gguf_name,
        "made_by": MADE_BY,
        "versions": versions,
        "tokenizer_class": type(tok).__name__,
        "gguf_add_bos_token": add_bos,
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "eos_token_id": tok.eos_token_id,
        "nfc_note": NFC_NOTE,
        "cases": cases,
    }


def chat_template_fixture(tok, template, gguf_name, versions):
    return {
        "gguf_file": gguf_name,
        "made_by": MADE_BY,
        "versions": versions,
        "chat_template_source": "gguf tokenizer.chat_template",
        "chat_template": template,
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "end_of_turn_id": tok.convert_tokens_to_ids("<|im_end|>"),
        "ids_note": "apply_chat_template(tokenize=True): the rendered text tokenized "
        "without adding special tokens",
        "cases": chat_cases(tok, template, CHAT_CASES),
    }


def golden_fixture(model_dir, gguf_name, tok, template, versions, add_bos):
    model = load_model(model_dir, gguf_name, attn_implementation="eager")
    records = []
    for p in PROMPTS:
        if p["kind"] == "chat":
            text, ids = render_chat(tok, template, p["messages"], True)
        else:
            text = p["text"]
            ids = tok(text, add_special_tokens=True)["input_ids"]
        run = greedy(model, ids)
        rec = prompt_record(p, text, ids, tok, run)
        records.append(rec)
        print(f"{p['name']}: {len(ids)} prompt tokens, min gap {min(run[1]):.4f}: "
              f"{rec['generated_text']!r}", file=sys.stderr)
    config = model.config
    return {
        "model": "Qwen2.5-Coder-0.5B-Instruct GGUF, dequantized to float32 by transformers",
        "gguf_file": gguf_name,
        "made_by": MADE_BY,
        "versions": versions,
        "device": "cpu",
        "attn_implementation": "eager",
        "tokenizer_add_bos_token": add_bos,
        "chat_template_source": "gguf tokenizer.chat_template",
        "config": {
            "num_hidden_layers": config.num_hidden_layers,
            "hidden_size": config.hidden_size,
            "num_attention_heads": config.num_attention_heads,
            "num_key_value_heads": config.num_key_value_heads,
            "rope_theta": getattr(config, "rope_theta", None)
            or (getattr(config, "rope_parameters", None) or {}).get("rope_theta"),
            "rms_norm_eps": config.rms_norm_eps,
            "tie_word_embeddings": config.tie_word_embeddings,
        },
        "num_new_tokens": NUM_NEW_TOKENS,
        "decoding": "greedy argmax over float32 logits, EOS does not stop",
        "min_top2_logit_gap": min_top2_logit_gap(records),
        "prompts": records,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--tokenizer-out", required=True)
    parser.add_argument("--chat-out", required=True)
    parser.add_argument("--golden-out")
    args = parser.parse_args()

    model_dir, gguf_name, reader = open_gguf(args.gguf)
    add_bos = gguf_field(reader, "tokenizer.ggml.add_bos_token")
    template = gguf_field(reader, "tokenizer.chat_template")
    if template is None:
        sys.exit("the GGUF has no tokenizer.chat_template")
    made_with = versions()
    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_name)
    write_fixture(args.tokenizer_out, tokenizer_fixture(tok, gguf_name, made_with, add_bos))
    write_fixture(args.chat_out, chat_template_fixture(tok, template, gguf_name, made_with))
    if args.golden_out:
        write_fixture(args.golden_out, golden_fixture(model_dir, gguf_name, tok, template, made_with, add_bos))


if __name__ == "__main__":
    main()

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
import importlib.metadata
import os
import sys
import unicodedata

import gguf
import numpy as np
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(__file__))
from fixture_json import write_fixture  # noqa: E402

NUM_NEW_TOKENS = 32
TOP_K_FIRST = 10
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
    {
        "name": "system_user",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello!"},
        ],
    },
    {
        "name": "user_only_default_system",
        "messages": [{"role": "user", "content": "Write a Python function that reverses a string."}],
    },
    {
        "name": "multi_turn",
        "messages": [
            {"role": "user", "content": "Hi! Can you help me with math?"},
            {"role": "assistant", "content": "Of course. What do you need?"},
            {"role": "user", "content": "What is 17 + 25?"},
        ],
    },
    {
        "name": "system_multi_turn_ends_with_assistant",
        "messages": [
            {"role": "system", "content": "Réponds en français."},
            {"role": "user", "content": "Bonjour, ça va ?"},
            {"role": "assistant", "content": "Très bien, merci ! Et vous ?"},
        ],
    },
    {
        "name": "late_system_message",
        "messages": [
            {"role": "user", "content": "First question."},
            {"role": "assistant", "content": "First answer."},
            {"role": "system", "content": "From now on, answer in one word."},
            {"role": "user", "content": "Second question?"},
        ],
    },
    {
        "name": "whitespace_unicode_code",
        "messages": [
            {"role": "system", "content": "  Be exact.  \n"},
            {"role": "user", "content": "\n  日本語で答えて 🤖: what does\n\n```python\nprint( 'a  b' )\n```\nprint?  \n"},
            {"role": "assistant", "content": "  It prints `a  b`.\n\n"},
            {"role": "user", "content": "<b>And</b> \"quotes\" & {{ braces }}?"},
        ],
    },
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


def gguf_field(reader, key):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def render_chat(tok, template, messages, add_generation_prompt):
    text = tok.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    ids = tok.apply_chat_template(
        messages,
        chat_template=template,
        tokenize=True,
        return_dict=False,
        add_generation_prompt=add_generation_prompt,
    )
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    plain = tok(text, add_special_tokens=False)["input_ids"]
    if ids != plain:
        sys.exit(f"apply_chat_template ids differ from tokenizing its text: {ids[:8]} vs {plain[:8]}")
    return text, ids


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
    cases = []
    for case in CHAT_CASES:
        for agp in (True, False):
            text, ids = render_chat(tok, template, case["messages"], agp)
            cases.append(
                {
                    "name": case["name"],
                    "messages": case["messages"],
                    "add_generation_prompt": agp,
                    "rendered": text,
                    "ids": ids,
                }
            )
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
        "cases": cases,
    }


@torch.no_grad()
def greedy(model, prompt_ids):
    """Greedy decode exactly NUM_NEW_TOKENS tokens; EOS does not stop it."""
    input_ids = torch.tensor([prompt_ids], dtype=torch.long)
    past = None
    generated, gaps, top1_logits = [], [], []
    first_top = None
    for step in range(NUM_NEW_TOKENS):
        out = model(input_ids=input_ids, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].to(torch.float32)
        top = torch.topk(logits, TOP_K_FIRST)
        next_id = int(torch.argmax(logits))
        gaps.append(float(top.values[0] - top.values[1]))
        top1_logits.append(float(top.values[0]))
        if step == 0:
            first_top = {"ids": [int(i) for i in top.indices], "logits": [float(v) for v in top.values]}
        generated.append(next_id)
        input_ids = torch.tensor([[next_id]], dtype=torch.long)
    return generated, gaps, top1_logits, first_top


def golden_fixture(model_dir, gguf_name, tok, template, versions, add_bos):
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, gguf_file=gguf_name, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    records = []
    for p in PROMPTS:
        if p["kind"] == "chat":
            text, ids = render_chat(tok, template, p["messages"], True)
        else:
            text = p["text"]
            ids = tok(text, add_special_tokens=True)["input_ids"]
        generated, gaps, top1, first_top = greedy(model, ids)
        rec = {"name": p["name"], "kind": p["kind"]}
        if p["kind"] == "chat":
            rec["messages"] = p["messages"]
            rec["add_generation_prompt"] = True
        rec.update(
            {
                "prompt": text,
                "prompt_ids": ids,
                "num_prompt_tokens": len(ids),
                "generated_ids": generated,
                "generated_text": tok.decode(generated, skip_special_tokens=False),
                "top2_logit_gaps": [round(g, 5) for g in gaps],
                "top1_logits": [round(v, 5) for v in top1],
                "min_top2_logit_gap": round(min(gaps), 5),
                "first_step_top10": first_top,
            }
        )
        records.append(rec)
        print(f"{p['name']}: {len(ids)} prompt tokens, min gap {min(gaps):.4f}: "
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
        "min_top2_logit_gap": round(min(r["min_top2_logit_gap"] for r in records), 5),
        "prompts": records,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--tokenizer-out", required=True)
    parser.add_argument("--chat-out", required=True)
    parser.add_argument("--golden-out")
    args = parser.parse_args()

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model_dir, gguf_name = os.path.split(os.path.abspath(args.gguf))
    reader = gguf.GGUFReader(args.gguf)
    add_bos = gguf_field(reader, "tokenizer.ggml.add_bos_token")
    template = gguf_field(reader, "tokenizer.chat_template")
    if template is None:
        sys.exit("the GGUF has no tokenizer.chat_template")
    versions = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf": importlib.metadata.version("gguf"),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }

    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_name)
    write_fixture(args.tokenizer_out, tokenizer_fixture(tok, gguf_name, versions, add_bos))
    write_fixture(args.chat_out, chat_template_fixture(tok, template, gguf_name, versions))
    if args.golden_out:
        write_fixture(args.golden_out, golden_fixture(model_dir, gguf_name, tok, template, versions, add_bos))


if __name__ == "__main__":
    main()

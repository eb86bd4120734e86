#!/usr/bin/env python3
"""Golden reference for SmolLM2-135M-Instruct (GGUF Q4_1) from HF transformers.

Run through scripts/make_reference.sh (it makes the venv). transformers loads
the GGUF and dequantizes it to float32, so its logits differ from a quantized
kernel's by rounding only; the fixture records, per generated step, the gap
between the top-two logits so a test can tell a real bug from a near tie.

Written to tests/fixtures/smollm2_reference.json, per prompt:
  prompt text, prompt token ids (no BOS: this model adds none), 32 greedy
  token ids (no sampling, EOS does not stop), the top-2 logit gap of each
  step, and the top-10 (id, logit) of the first generated position.

Tokenizer caveat: the GGUF says tokenizer.ggml.pre = "smollm". The original
SmolLM2 tokenizer.json pre-tokenizes with
  Sequence[Digits(individual_digits=True),
           ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]
i.e. every digit is its own pre-token before the GPT-2 byte-level split.
transformers' GGUF converter (5.x) builds a plain ByteLevel pre-tokenizer for
this model (it ignores "smollm"). The vocabulary has no token containing a
digit other than the ten single digits, so "12345 and 2024" still encodes the
same; but where several spaces precede a digit the two differ (original:
"ĠĠ" + "3", converted: "Ġ" + "Ġ" + "3"). So this script always puts the
original pre-tokenizer back and records the probes; the prompt ids in the
fixture are the original tokenizer's. The fixture's "tokenizer_note" and
"digit_probes" say what was found.
"""

import argparse
import json
import sys

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

from fixture_json import write_fixture
from greedy_reference import (
    CONVERSATIONS,
    NUM_NEW_TOKENS,
    greedy,
    gguf_field,
    load_model,
    min_top2_logit_gap,
    open_gguf,
    prompt_record,
    versions,
)

# The first is the brief's probe. The others put several spaces before a
# digit: the original splits digits off first, so the spaces form their own
# pre-token ("ĠĠ"), where a plain ByteLevel split gives "Ġ" + "Ġ1".
DIGIT_PROBES = ["12345 and 2024", "x =  3;\n    42", "total:   1,000.5"]

LONG_TEXT = (
    "The history of computing is a story of abstraction layered on abstraction. "
    "In the 1940s, programmers wired plugboards and toggled switches to load "
    "instructions one bit at a time. Assembly languages replaced raw numbers "
    "with mnemonics, and compilers soon translated algebraic formulas into "
    "machine code, so that a scientist could write an equation instead of a "
    "sequence of register moves. Operating systems arrived to share a single "
    "expensive machine among many users, introducing processes, files and "
    "virtual memory. The microprocessor put a whole computer on one chip, and "
    "the personal computer put that chip on a desk. Networks then joined the "
    "desks together: first in laboratories and universities, later across the "
    "whole planet, until a page written in one city could be read in another a "
    "fraction of a second later. Each layer hid the details of the one below "
    "it, which let people build larger systems than any single person could "
    "fully understand. Graphics processors, designed at first to draw "
    "triangles for games, turned out to be excellent at the dense linear "
    "algebra behind neural networks, and the training of language models "
    "grew from millions of parameters to hundreds of billions. Today a small "
    "model can run inside a web browser, on a phone, or on a laptop without a "
    "dedicated graphics card, generating text one token at a time. Every token "
    "is chosen from a vocabulary of tens of thousands of pieces of words, and "
    "every choice depends on a long chain of matrix multiplications, "
    "normalizations and attention steps. When two implementations of the same "
    "model disagree, the cause is often tiny: a different order of additions, "
    "a rounding mode, or a tokenizer that splits numbers differently. That is "
    "why careful engineers keep a reference output and compare against it "
    "whenever they change the code. In summary, the lesson of this history is"
)

PROMPTS = [
    {
        "name": "chat_system",
        "kind": "chat",
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    },
    {
        "name": "chat_no_system",
        "kind": "chat",
        "messages": [{"role": "user", "content": "Write a haiku about the ocean."}],
    },
    {
        "name": "chat_multi_turn",
        "kind": "chat",
        "messages": CONVERSATIONS["multi_turn"],
    },
    {
        "name": "raw_english",
        "kind": "raw",
        "text": "The quick brown fox jumps over the lazy dog. Once upon a time,",
    },
    {
        "name": "raw_unicode_emoji",
        "kind": "raw",
        "text": "Café naïve façade — 日本語のテキスト 🤖🎉 and 👩‍💻 in Ελληνικά: ¿qué tal? 😀",
    },
    {
        "name": "raw_digits",
        "kind": "raw",
        "text": "12345 and 2024: 3.14159 * 42 = 131.95; call 555-0199 before 10:30 on 07/04/1999.\n  x =   7;\n    42 items, total:  100000 +",
    },
    {
        "name": "raw_long",
        "kind": "raw",
        "text": LONG_TEXT,
    },
]


def original_pre_tokenizer():
    """The pre-tokenizer of SmolLM2's original tokenizer.json."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(
                add_prefix_space=False, trim_offsets=True, use_regex=True
            ),
        ]
    )


def check_and_fix_digits(tok):
    """Make the tokenizer split digits one by one, as the original does."""
    backend = tok.backend_tokenizer
    converted_pre = str(backend.pre_tokenizer)

    def encode_all():
        out = []
        for text in DIGIT_PROBES:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            out.append((ids, tok.convert_ids_to_tokens(ids)))
        return out

    converted = encode_all()
    backend.pre_tokenizer = original_pre_tokenizer()
    fixed = encode_all()

    probes = []
    for text, (c_ids, c_pieces), (f_ids, f_pieces) in zip(DIGIT_PROBES, converted, fixed):
        probes.append(
            {
                "text": text,
                "converted_ids": c_ids,
                "converted_pieces": c_pieces,
                "original_ids": f_ids,
                "original_pieces": f_pieces,
                "same": c_ids == f_ids,
            }
        )
    differ = [p["text"] for p in probes if not p["same"]]
    note = (
        f"transformers' GGUF conversion builds the pre-tokenizer {converted_pre}, "
        "not the original SmolLM2 Sequence[Digits(individual_digits=True), "
        "ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]. "
        "The vocabulary has no token with a digit besides the ten single digits, "
        "so digits come out one by one either way ('12345 and 2024' encodes the "
        "same), but "
        + (
            f"spaces before digits differ ({differ!r})"
            if differ
            else "no probe differed"
        )
        + ". The reference tokenizer's pre_tokenizer was replaced by the original "
        "Sequence, so the prompt ids here are the original tokenizer's."
    )
    return note, probes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    model_dir, gguf_name, reader = open_gguf(args.gguf)
    chat_template = gguf_field(reader, "tokenizer.chat_template")
    pre = gguf_field(reader, "tokenizer.ggml.pre")
    add_bos = gguf_field(reader, "tokenizer.ggml.add_bos_token")
    if chat_template is None:
        sys.exit("the GGUF has no tokenizer.chat_template")

    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_name)
    note, probes = check_and_fix_digits(tok)
    print(note, file=sys.stderr)
    print(json.dumps(probes, ensure_ascii=False), file=sys.stderr)

    model = load_model(model_dir, gguf_name)

    records = []
    for p in PROMPTS:
        if p["kind"] == "chat":
            # The GGUF's own template, so the Rust side renders the same text.
            text = tok.apply_chat_template(
                p["messages"],
                chat_template=chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        else:
            text = p["text"]
        ids = tok(text, add_special_tokens=True)["input_ids"]
        plain = tok(text, add_special_tokens=False)["input_ids"]
        if ids != plain:
            sys.exit(f"{p['name']}: the tokenizer added special tokens: {ids[:3]}")
        if p["name"] == "raw_long" and len(ids) < 300:
            sys.exit(f"raw_long has only {len(ids)} tokens; make it longer")
        run = greedy(model, ids)
        rec = prompt_record(p, text, ids, tok, run)
        records.append(rec)
        print(
            f"{p['name']}: {len(ids)} prompt tokens, min gap {min(run[1]):.4f}: "
            f"{rec['generated_text']!r}",
            file=sys.stderr,
        )

    fixture = {
        "model": "SmolLM2-135M-Instruct Q4_1 GGUF, dequantized to float32 by transformers",
        "gguf_file": gguf_name,
        "made_by": "scripts/make_reference.py (via scripts/make_reference.sh)",
        "versions": versions(),
        "device": "cpu",
        "tokenizer_ggml_pre": pre,
        "tokenizer_add_bos_token": add_bos,
        "tokenizer_note": note,
        "digit_probes": probes,
        "num_new_tokens": NUM_NEW_TOKENS,
        "decoding": "greedy argmax over float32 logits, EOS does not stop",
        "min_top2_logit_gap": min_top2_logit_gap(records),
        "prompts": records,
    }
    write_fixture(args.out, fixture)


if __name__ == "__main__":
    main()

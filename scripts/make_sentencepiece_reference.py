#!/usr/bin/env python3
"""Token ids and decoded text of Gemma 3's SentencePiece vocabulary, from
Hugging Face transformers reading the same GGUF (an implementation
independent of ours: transformers rebuilds the tokenizer from the GGUF's
`tokenizer.ggml.*` keys; see transformers/integrations/gguf/
gguf_tokenizer_mapping.py, `gemma_tokenizer`).

Run through scripts/make_sentencepiece_reference.sh (it makes the venv).
Written to tests/fixtures/gemma3_tokenizer.json, per text:
  text, ids without special tokens, ids with them (BOS, as the GGUF's
  add_bos_token says), and HF's decode of the ids (special tokens kept).
"""

import argparse
import importlib.metadata
import os
import sys

from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(__file__))
from fixture_json import write_fixture  # noqa: E402

# Multilingual, code, whitespace runs, newlines, byte-fallback characters
# (rare CJK, emoji with modifiers, control bytes), and the special and
# user-defined tokens the vocabulary matches whole.
TEXTS = [
    "Hello world",
    " leading space, and trailing ",
    "Héllo, wörld! Ça va? Ñandú, façade, naïve, Ærøskøbing",
    "日本語のテキストと中文文本，还有한국어 텍스트.",
    "Emoji: 🤖🚀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✅",
    "def add(a, b):\n    return a + b  # sum\n\n\tprint(add(1, 2))\n",
    "a  b   c    d\t\te\n\n\n\nf      g",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>",
    "<bos>text with <eos> and <pad> inside <unk>",
    "Numbers 1234567890 and 3.14159, 1e-9, 0xFF",
    "Rare: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 \u0001\u007f \ufeff ꙮ 龘",
    "Ελληνικά, русский, العربية, עברית, हिन्दी, ไทย",
    "<div class=\"x\">HTML</div>\n<br/>",
    "",
    " ",
    "\n",
    "▁ is not a space",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    tok = AutoTokenizer.from_pretrained(
        os.path.dirname(args.gguf), gguf_file=os.path.basename(args.gguf)
    )
    cases = []
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with_special = tok(text, add_special_tokens=True)["input_ids"]
        cases.append(
            {
                "text": text,
                "ids": ids,
                "ids_with_special": with_special,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            }
        )
    fixture = {
        "gguf_file": os.path.basename(args.gguf),
        "made_by": "scripts/make_sentencepiece_reference.sh",
        "versions": {
            name: importlib.metadata.version(name) for name in ("transformers", "tokenizers", "gguf")
        },
        "vocab_size": len(tok),
        "cases": cases,
    }
    write_fixture(args.out, fixture)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden reference for all-MiniLM-L6-v2 from sentence-transformers.

Run through scripts/make_embedding_reference.sh (it makes the venv).
sentence-transformers runs the model's own pipeline (modules.json:
Transformer -> Pooling (mean) -> Normalize) in float32 on the CPU; plain
transformers with a hand-written mean pooling must agree with it, which
the script checks before writing anything.

Written to tests/fixtures/minilm_reference.json, per sentence: its text,
the token ids sentence-transformers feeds the model (WordPiece, lowercased,
[CLS] ... [SEP], truncated to max_seq_length = 256 tokens counting both),
the untruncated token count, and the 384-dimensional embedding. Each text
is encoded alone (batch size 1) and the whole list again as one padded
batch; the two must agree, so the fixture does not depend on padding.
"""

import argparse
import importlib.metadata
import os
import sys

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from fixture_json import write_fixture

LONG_TEXT = (
    "Embedding models turn a piece of text into a vector of numbers, so that "
    "texts with similar meanings end up close to each other. A search engine "
    "can then embed every document once, store the vectors in an index, and "
    "answer a query by embedding it and looking for the nearest vectors. The "
    "same trick clusters support tickets by topic, finds duplicate questions "
    "on a forum, recommends articles that resemble the one being read, and "
    "feeds the most relevant passages to a language model before it answers. "
    "Small sentence encoders such as MiniLM were distilled from much larger "
    "models: the student learns to reproduce the teacher's attention patterns "
    "and hidden states with fewer layers and a narrower hidden size, and is "
    "then fine-tuned on hundreds of millions of sentence pairs with a "
    "contrastive objective. Each pair is pulled together while every other "
    "sentence in the batch is pushed away, which is why large batches help. "
    "At inference time the encoder reads at most a fixed number of tokens; "
    "anything longer is cut off, so a long document is usually split into "
    "overlapping chunks that are embedded one by one. The output of every "
    "token is averaged over the real tokens of the input, ignoring the "
    "padding that fills a batch up to its longest member, and the average is "
    "scaled to unit length, so that a dot product between two embeddings is "
    "their cosine similarity. Comparing one implementation against another "
    "therefore means comparing token ids first, since a single different "
    "word piece changes the vector, and the vectors second, allowing only "
    "for the rounding of float32 arithmetic done in a different order. This "
    "paragraph is deliberately long enough to go past the limit of two "
    "hundred and fifty six tokens, so that the truncation rule is tested too."
)

SENTENCES = [
    {"name": "fox", "text": "The quick brown fox jumps over the lazy dog."},
    {"name": "fox_paraphrase", "text": "A fast brown fox leaps over a sleepy dog."},
    {"name": "unrelated", "text": "Quarterly revenue grew by 12% despite supply-chain problems."},
    {"name": "short", "text": "Hi"},
    {
        "name": "accents",
        "text": "Café naïve façade, résumé à Zürich; ÉCOLE Øresund SÃO PAULO — ¿qué tal?",
    },
    {"name": "cjk", "text": "深度学习模型在图像识别中表现出色。東京は日本の首都です。서울은 한국의 수도입니다."},
    {"name": "emoji", "text": "I love pizza 🍕 and cats 🐱!! 👍🏽 👩‍💻 #NLP"},
    {
        "name": "mixed",
        "text": "E = mc² and x₁ ≤ 3½,\ttabs and\nnew lines, URLs like https://example.com/a?b=c, "
        "and a looooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooong word.",
    },
    {"name": "long", "text": LONG_TEXT},
]


@torch.no_grad()
def transformers_mean_pooling(model_dir, texts, max_len):
    """Independent check: plain transformers, masked mean, L2 normalised."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="the sentence-transformers directory")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model = SentenceTransformer(args.model, device="cpu")
    max_len = model.max_seq_length
    texts = [s["text"] for s in SENTENCES]

    alone = np.stack([model.encode([t], batch_size=1, convert_to_numpy=True)[0] for t in texts])
    batched = model.encode(texts, batch_size=len(texts), convert_to_numpy=True)
    plain = transformers_mean_pooling(args.model, texts, max_len)
    worst = 1.0
    for i, text in enumerate(texts):
        for other, what in ((batched, "batched"), (plain, "transformers mean pooling")):
            sim = cosine(alone[i], other[i])
            worst = min(worst, sim)
            if sim < 0.999999:
                sys.exit(f"{SENTENCES[i]['name']}: alone vs {what}: cosine {sim}")

    records = []
    for i, s in enumerate(SENTENCES):
        features = model.tokenize([s["text"]])
        ids = features["input_ids"][0].tolist()
        full = model.tokenizer(s["text"], truncation=False)["input_ids"]
        if s["name"] == "long" and len(full) <= max_len:
            sys.exit(f"the long text has only {len(full)} tokens; make it longer than {max_len}")
        records.append(
            {
                "name": s["name"],
                "text": s["text"],
                "token_ids": ids,
                "num_tokens": len(ids),
                "num_tokens_untruncated": len(full),
                "pieces": model.tokenizer.convert_ids_to_tokens(ids),
                "embedding": [round(float(v), 8) for v in alone[i]],
            }
        )
        print(f"{s['name']}: {len(ids)} tokens ({len(full)} untruncated)", file=sys.stderr)

    fixture = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_dir": os.path.relpath(os.path.abspath(args.model)),
        "made_by": "scripts/make_embedding_reference.py (via scripts/make_embedding_reference.sh)",
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
        "device": "cpu",
        "dtype": "float32",
        "max_seq_length": max_len,
        "pipeline": [str(type(m).__name__) for m in model],
        "checks": (
            "each text alone (batch size 1) = all texts in one padded batch = plain "
            f"transformers with masked mean pooling, cosine >= {worst:.7f}"
        ),
        "sentences": records,
    }
    write_fixture(args.out, fixture)


if __name__ == "__main__":
    main()

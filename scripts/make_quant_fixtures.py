"""Makes tests/fixtures/quants/<TYPE>.json: raw GGML blocks and their values
as the `gguf` package's `gguf.quants.dequantize` computes them (numpy, an
implementation independent of ours). The Rust tests repack the blocks for
the GPU and check that our dequantization gives the same f32 values.

Blocks are random bytes with chosen f16 scale fields, so extremes are
covered: d = 0, subnormal, the smallest normal, 65504, negative (every
format here allows a negative f16 scale), and quants all zero or all ones.
Where gguf-py can quantize a format, one row comes from `quantize` of
random floats too (realistic blocks).
"""

import argparse
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

sys.path.insert(0, os.path.dirname(__file__))
from fixture_json import write_fixture  # noqa: E402

# Byte offsets of each format's f16 scale fields (ggml-common.h block_*).
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
}

# Scales the blocks cycle through: typical, zero, subnormal, smallest
# normal, the largest f16, negative ones.
SCALES = [0.0123, 0.0, 2.0**-24, 2.0**-14, 65504.0, -0.0371, -65504.0, 1.0, 0.25, -3.5]

COLS = 256


def rows_for(block_len):
    # At least 8 blocks, so that each scale and code pattern shows up.
    return max(4, 8 * block_len // COLS)


def random_blocks(qtype, rng, n_blocks):
    block_len, block_bytes = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for i in range(n_blocks):
        # Every fifth block has all quants 0x00 or 0xFF (extreme codes);
        # the scale fields are written over afterwards.
        if i % 5 == 3:
            blocks[i, :] = 0x00
        elif i % 5 == 4:
            blocks[i, :] = 0xFF
        for j, at in enumerate(F16_FIELDS[qtype]):
            scale = SCALES[(i + 3 * j) % len(SCALES)] if i % 2 == 0 else rng.normal() * 0.05
            blocks[i, at:at + 2] = np.array([scale], dtype=np.float16).view(np.uint8)
    return blocks


def fixture(qtype, rng):
    block_len, block_bytes = GGML_QUANT_SIZES[qtype]
    rows = rows_for(block_len)
    n_blocks = rows * COLS // block_len
    blocks = random_blocks(qtype, rng, n_blocks)
    how = "random bytes with chosen f16 scales"
    try:
        # The last row from gguf-py's own quantizer, where it has one.
        real = quants.quantize(rng.normal(size=(1, COLS)).astype(np.float32), qtype)
        blocks[-(COLS // block_len):] = real.reshape(-1, block_bytes)
        how += "; last row quantized by gguf.quants.quantize"
    except NotImplementedError:
        pass
    data = blocks.reshape(rows, -1)
    values = quants.dequantize(data, qtype)
    assert values.shape == (rows, COLS) and values.dtype == np.float32
    assert np.isfinite(values).all(), qtype.name
    return {
        "type": qtype.name,
        "rows": rows,
        "cols": COLS,
        "how": how,
        "bytes": [int(b) for b in data.reshape(-1)],
        # float() of an f32 is exact in a double; Rust parses it back exactly.
        "values": [float(v) for v in values.reshape(-1)],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, help="folder for <TYPE>.json")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for qtype in F16_FIELDS:
        # One seed per type: adding a type leaves the others' fixtures alone.
        rng = np.random.default_rng(int(qtype))
        write_fixture(os.path.join(args.out, f"{qtype.name}.json"), fixture(qtype, rng))


if __name__ == "__main__":
    main()

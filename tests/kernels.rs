//! Every WGSL kernel against a plain Rust reference on random inputs, with
//! odd sizes. Tolerances are stated per test: kernels accumulate in f32 in
//! another order than the reference, so they differ by rounding only.

mod common;

use common::gpu::{Harness, assert_close};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgserve::formats::TensorType;
use wgserve::gpu::KernelKey;
use wgserve::gpu::kernels::argmax::ArgmaxKey;
use wgserve::gpu::kernels::attention::AttentionKey;
use wgserve::gpu::kernels::embedding::EmbeddingKey;
use wgserve::gpu::kernels::kv_write::KvWriteKey;
use wgserve::gpu::kernels::matmul::{MatmulKey, Tile};
use wgserve::gpu::kernels::rmsnorm::RmsNormKey;
use wgserve::gpu::kernels::rope::{RopeKey, rope_table};
use wgserve::gpu::kernels::silu_gate::SiluGateKey;
use wgserve::model::dequantize::dequantize;
use wgserve::model::weights::pack_matrix;

fn random_f32(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

fn f16_bytes(value: f32) -> [u8; 2] {
    f16::from_f32(value).to_bits().to_le_bytes()
}

/// Random blocks of the 5- and 6-bit and K-quant formats: random bytes are
/// valid blocks once the f16 scale fields hold finite values, here sized
/// so that weights stay within a few units.
fn random_quant_blocks(rng: &mut StdRng, tensor_type: TensorType, elements: usize) -> Vec<u8> {
    let (f16_fields, scale): (&[usize], f32) = match tensor_type {
        TensorType::Q5_0 | TensorType::Q5_1 => (&[0, 2], 0.05),
        TensorType::Q4_K | TensorType::Q5_K => (&[0, 2], 0.002),
        TensorType::Q6_K => (&[208], 0.0003),
        TensorType::Q2_K => (&[80, 82], 0.05),
        TensorType::Q3_K => (&[108], 0.005),
        other => panic!("{other} is not a random-bytes format"),
    };
    let mut bytes = Vec::new();
    for _ in 0..elements / tensor_type.block_len() {
        let mut block: Vec<u8> = (0..tensor_type.block_bytes()).map(|_| rng.random()).collect();
        // Q5_0 has one f16 field; its bytes 2..4 are high bits, left random.
        let fields = if tensor_type == TensorType::Q5_0 { &f16_fields[..1] } else { f16_fields };
        for &at in fields {
            block[at..at + 2].copy_from_slice(&f16_bytes(rng.random_range(-scale..scale)));
        }
        bytes.extend(block);
    }
    bytes
}

/// Random GGML blocks of `tensor_type` for `elements` weights, and their
/// dequantized values: computed straight from the GGML block definitions
/// for the formats of this test's first version, by `model::dequantize`
/// (checked against gguf-py in tests/quant_fixtures.rs) for the others.
fn random_tensor(rng: &mut StdRng, tensor_type: TensorType, elements: usize) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::new();
    let mut values = Vec::new();
    match tensor_type {
        TensorType::F32 => {
            for v in random_f32(rng, elements, 1.0) {
                bytes.extend(v.to_le_bytes());
                values.push(v);
            }
        }
        TensorType::F16 => {
            for v in random_f32(rng, elements, 1.0) {
                let h = f16::from_f32(v);
                bytes.extend(h.to_bits().to_le_bytes());
                values.push(h.to_f32());
            }
        }
        TensorType::BF16 => {
            for v in random_f32(rng, elements, 1.0) {
                let b = half::bf16::from_f32(v);
                bytes.extend(b.to_bits().to_le_bytes());
                values.push(b.to_f32());
            }
        }
        TensorType::Q8_0 => {
            for _ in 0..elements / 32 {
                let d = f16::from_f32(rng.random_range(0.001..0.02)).to_f32();
                bytes.extend(f16_bytes(d));
                for _ in 0..32 {
                    let q: i8 = rng.random();
                    bytes.push(q as u8);
                    values.push(d * q as f32);
                }
            }
        }
        TensorType::Q4_0 | TensorType::Q4_1 => {
            for _ in 0..elements / 32 {
                let d = f16::from_f32(rng.random_range(0.001..0.1)).to_f32();
                let m = f16::from_f32(rng.random_range(-0.5..0.5)).to_f32();
                bytes.extend(f16_bytes(d));
                if tensor_type == TensorType::Q4_1 {
                    bytes.extend(f16_bytes(m));
                }
                let nibbles: Vec<u8> = (0..16).map(|_| rng.random()).collect();
                bytes.extend(&nibbles);
                let mut block = [0f32; 32];
                for (j, &byte) in nibbles.iter().enumerate() {
                    let (lo, hi) = ((byte & 15) as f32, (byte >> 4) as f32);
                    if tensor_type == TensorType::Q4_1 {
                        block[j] = d * lo + m;
                        block[j + 16] = d * hi + m;
                    } else {
                        block[j] = d * (lo - 8.0);
                        block[j + 16] = d * (hi - 8.0);
                    }
                }
                values.extend(block);
            }
        }
        TensorType::Q5_0
        | TensorType::Q5_1
        | TensorType::Q2_K
        | TensorType::Q3_K
        | TensorType::Q4_K
        | TensorType::Q5_K
        | TensorType::Q6_K => {
            bytes = random_quant_blocks(rng, tensor_type, elements);
            let cols = tensor_type.block_len().max(32);
            let packed = pack_matrix("random", tensor_type, &bytes, elements / cols, cols).unwrap();
            values = dequantize(&packed);
        }
    }
    (bytes, values)
}

const ALL_TYPES: [TensorType; 13] = [
    TensorType::F32,
    TensorType::F16,
    TensorType::BF16,
    TensorType::Q8_0,
    TensorType::Q4_0,
    TensorType::Q4_1,
    TensorType::Q5_0,
    TensorType::Q5_1,
    TensorType::Q2_K,
    TensorType::Q3_K,
    TensorType::Q4_K,
    TensorType::Q5_K,
    TensorType::Q6_K,
];

/// Odd (tokens, rows, row length) shapes; K-quant rows are whole 256-blocks.
fn matmul_shapes(tensor_type: TensorType) -> &'static [(usize, usize, usize)] {
    if tensor_type.block_len() == 256 {
        &[(1, 70, 256), (5, 129, 512), (13, 33, 768), (2, 9, 256)]
    } else {
        &[(1, 70, 96), (5, 129, 160), (13, 64, 32), (9, 33, 576)]
    }
}

// Tolerance: f32 sums of K products in a different order; |error| is
// bounded by ~K * eps * sum|w x|, far below 1e-4 relative + 1e-4 absolute.
#[test]
fn matmul_matches_cpu_for_every_format_tile_accumulate_and_bias() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(1);
    for tensor_type in ALL_TYPES {
        for &(m, n, k) in matmul_shapes(tensor_type) {
            let (bytes, w) = random_tensor(&mut rng, tensor_type, n * k);
            let packed = pack_matrix("w", tensor_type, &bytes, n, k).unwrap();
            let x = random_f32(&mut rng, m * k, 1.0);
            let y0 = random_f32(&mut rng, m * n, 1.0);
            let bias_values = random_f32(&mut rng, n, 1.0);
            for tile in Tile::ALL {
                // The bias is added at the store, which every entry point
                // shares: one float and one quantized format cover it.
                // matmul_quant.wgsl has its own store: Q4_K covers it.
                let with_bias = matches!(tensor_type, TensorType::F32 | TensorType::Q4_1 | TensorType::Q4_K);
                let cases: &[(bool, bool)] = if with_bias {
                    &[(false, false), (true, false), (false, true), (true, true)]
                } else {
                    &[(false, false), (true, false)]
                };
                for &(accumulate, bias) in cases {
                    let key = MatmulKey {
                        format: packed.format,
                        k: k as u32,
                        n: n as u32,
                        row_start: 0,
                        y_stride: n as u32,
                        tile,
                        accumulate,
                        bias,
                    };
                    let step = gpu.step(m as u32, 1, 1);
                    let (xb, wd, ws, yb) =
                        (gpu.f32s(&x), gpu.u32s(&packed.data), gpu.u32s(&packed.scales), gpu.f32s(&y0));
                    let bb = gpu.f32s(&bias_values);
                    let buffers = [&step, &xb, &wd, &ws, &yb, &bb];
                    gpu.run(KernelKey::Matmul(key), &buffers, key.workgroups(m as u32));
                    let got = gpu.read_f32(&yb, m * n);
                    let mut want = vec![0f32; m * n];
                    for t in 0..m {
                        for r in 0..n {
                            let dot: f64 = (0..k).map(|c| w[r * k + c] as f64 * x[t * k + c] as f64).sum();
                            want[t * n + r] = dot as f32
                                + if accumulate { y0[t * n + r] } else { 0.0 }
                                + if bias { bias_values[r] } else { 0.0 };
                        }
                    }
                    let what = format!(
                        "matmul {tensor_type} m={m} n={n} k={k} tile={tile:?} acc={accumulate} bias={bias}"
                    );
                    assert_close(&what, &got, &want, 1e-4, 1e-4);
                }
            }
        }
    }
}

// Exact: dequantization is one multiply-add per weight, as in the reference.
#[test]
fn embedding_lookup_dequantizes_rows_for_every_format() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(2);
    for tensor_type in ALL_TYPES {
        let (vocab, hidden) = if tensor_type.block_len() == 256 { (37usize, 512usize) } else { (37, 96) };
        let (bytes, table) = random_tensor(&mut rng, tensor_type, vocab * hidden);
        let packed = pack_matrix("table", tensor_type, &bytes, vocab, hidden).unwrap();
        let ids: Vec<u32> = (0..11).map(|_| rng.random_range(0..vocab as u32)).collect();
        let key = EmbeddingKey {
            format: packed.format,
            hidden: hidden as u32,
            vocab: vocab as u32,
            row_start: 0,
            rows: vocab as u32,
            scale_bits: 1f32.to_bits(),
        };
        let step = gpu.step(ids.len() as u32, 1, 1);
        let (idb, wd, ws, out) =
            (gpu.u32s(&ids), gpu.u32s(&packed.data), gpu.u32s(&packed.scales), gpu.zeros(ids.len() * hidden));
        gpu.run(KernelKey::Embedding(key), &[&step, &idb, &wd, &ws, &out], key.workgroups(ids.len() as u32));
        let got = gpu.read_f32(&out, ids.len() * hidden);
        let want: Vec<f32> =
            ids.iter().flat_map(|&id| table[id as usize * hidden..][..hidden].to_vec()).collect();
        assert_close(&format!("embedding {tensor_type}"), &got, &want, 1e-6, 1e-6);
    }
}

fn rmsnorm_cpu(row: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let mean = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / row.len() as f64;
    let scale = 1.0 / (mean + eps as f64).sqrt();
    row.iter().zip(weight).map(|(&v, &w)| (v as f64 * scale) as f32 * w).collect()
}

// Tolerance 1e-5 relative: one f32 sum of squares and a sqrt.
#[test]
fn rmsnorm_matches_cpu_with_and_without_gather() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(3);
    let (rows, hidden, eps) = (23usize, 100usize, 1e-5f32);
    let mut x = random_f32(&mut rng, rows * hidden, 3.0);
    // A huge row, like the first token's residual in SmolLM2 (norm ~25,000).
    for v in &mut x[hidden..2 * hidden] {
        *v *= 3000.0;
    }
    let weight = random_f32(&mut rng, hidden, 2.0);
    let gather_rows: Vec<u32> = vec![22, 0, 1, 7];
    for gather in [false, true] {
        let key = RmsNormKey { hidden: hidden as u32, eps_bits: eps.to_bits(), gather };
        let out_rows = if gather { gather_rows.len() } else { rows };
        let step = gpu.step(rows as u32, gather_rows.len() as u32, 1);
        let (xb, wb, ib, out) =
            (gpu.f32s(&x), gpu.f32s(&weight), gpu.u32s(&gather_rows), gpu.zeros(out_rows * hidden));
        gpu.run(KernelKey::RmsNorm(key), &[&step, &xb, &wb, &ib, &out], key.workgroups(out_rows as u32));
        let got = gpu.read_f32(&out, out_rows * hidden);
        let sources: Vec<usize> =
            if gather { gather_rows.iter().map(|&r| r as usize).collect() } else { (0..rows).collect() };
        let want: Vec<f32> =
            sources.iter().flat_map(|&r| rmsnorm_cpu(&x[r * hidden..][..hidden], &weight, eps)).collect();
        assert_close(&format!("rmsnorm gather={gather}"), &got, &want, 1e-5, 1e-5);
    }
}

// Tolerance 1e-5: two products per element, same table.
#[test]
fn rope_rotates_adjacent_pairs_and_halves() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(4);
    let (head_dim, hq, hkv, m) = (16usize, 6usize, 2usize, 7usize);
    let row = (hq + 2 * hkv) * head_dim;
    let qkv = random_f32(&mut rng, m * row, 1.0);
    let positions: Vec<u32> = vec![0, 1, 2, 5, 40, 41, 300];
    let table = rope_table(head_dim as u32, 10000.0, 512);
    let flat: Vec<f32> = table.iter().flatten().copied().collect();
    for neox in [false, true] {
        let key = RopeKey { head_dim: head_dim as u32, n_q_heads: hq as u32, n_kv_heads: hkv as u32, neox };
        let step = gpu.step(m as u32, 1, 1);
        let (qb, pb, tb) = (gpu.f32s(&qkv), gpu.u32s(&positions), gpu.f32s(&flat));
        gpu.run(KernelKey::Rope(key), &[&step, &qb, &pb, &tb], key.workgroups(m as u32));
        let got = gpu.read_f32(&qb, m * row);
        let mut want = qkv.clone();
        for (t, &position) in positions.iter().enumerate() {
            for head in 0..hq + hkv {
                let base = t * row + head * head_dim;
                for i in 0..head_dim / 2 {
                    let (a, b) = if neox {
                        (base + i, base + i + head_dim / 2)
                    } else {
                        (base + 2 * i, base + 2 * i + 1)
                    };
                    let angle = position as f64 * 10000f64.powf(-(2.0 * i as f64) / head_dim as f64);
                    let (cos, sin) = (angle.cos() as f32, angle.sin() as f32);
                    want[a] = qkv[a] * cos - qkv[b] * sin;
                    want[b] = qkv[b] * cos + qkv[a] * sin;
                }
            }
        }
        assert_close(&format!("rope neox={neox}"), &got, &want, 1e-4, 1e-4);
    }
}

#[test]
fn kv_write_places_keys_and_values_at_their_slots() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(5);
    let (head_dim, hq, hkv, m, slots) = (8usize, 4usize, 2usize, 5usize, 48usize);
    let row = (hq + 2 * hkv) * head_dim;
    let kv = hkv * head_dim;
    let qkv = random_f32(&mut rng, m * row, 1.0);
    let slot_mapping: Vec<u32> = vec![17, 3, 40, 41, 0];
    let key = KvWriteKey { head_dim: head_dim as u32, n_q_heads: hq as u32, n_kv_heads: hkv as u32 };
    let step = gpu.step(m as u32, 1, 1);
    let (qb, sb, kc, vc) =
        (gpu.f32s(&qkv), gpu.u32s(&slot_mapping), gpu.zeros(slots * kv), gpu.zeros(slots * kv));
    gpu.run(KernelKey::KvWrite(key), &[&step, &qb, &sb, &kc, &vc], key.workgroups(m as u32));
    let (got_k, got_v) = (gpu.read_f32(&kc, slots * kv), gpu.read_f32(&vc, slots * kv));
    let (mut want_k, mut want_v) = (vec![0f32; slots * kv], vec![0f32; slots * kv]);
    for t in 0..m {
        let s = slot_mapping[t] as usize;
        want_k[s * kv..][..kv].copy_from_slice(&qkv[t * row + hq * head_dim..][..kv]);
        want_v[s * kv..][..kv].copy_from_slice(&qkv[t * row + (hq + hkv) * head_dim..][..kv]);
    }
    assert_eq!(got_k, want_k, "k cache");
    assert_eq!(got_v, want_v, "v cache");
}

// Tolerance 1e-4: softmax in f32 with an online rescaling, against f64.
#[test]
fn paged_attention_matches_cpu_on_a_varlen_batch() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(6);
    let (head_dim, hq, hkv, block_size) = (32usize, 6usize, 2usize, 16usize);
    let num_blocks = 20usize;
    let kv = hkv * head_dim;
    let k_cache = random_f32(&mut rng, num_blocks * block_size * kv, 1.0);
    let v_cache = random_f32(&mut rng, num_blocks * block_size * kv, 1.0);
    // Three sequences, scattered blocks: a 5-token prefill from 0, a decode
    // at position 37, a 3-token chunk at positions 16..19 (crossing a block).
    let max_blocks = 4usize;
    let block_tables: Vec<u32> = vec![7, 0, 0, 0, 3, 11, 19, 0, 2, 9, 0, 0];
    let mut token_seq = vec![];
    let mut positions = vec![];
    for p in 0..5 {
        token_seq.push(0);
        positions.push(p);
    }
    token_seq.push(1);
    positions.push(37);
    for p in 16..19 {
        token_seq.push(2);
        positions.push(p);
    }
    let m = token_seq.len();
    let row = (hq + 2 * hkv) * head_dim;
    let qkv = random_f32(&mut rng, m * row, 1.0);
    let key = AttentionKey {
        head_dim: head_dim as u32,
        n_q_heads: hq as u32,
        n_kv_heads: hkv as u32,
        block_size: block_size as u32,
    };
    let step = gpu.step(m as u32, 3, max_blocks as u32);
    let bufs = [
        gpu.f32s(&qkv),
        gpu.f32s(&k_cache),
        gpu.f32s(&v_cache),
        gpu.u32s(&block_tables),
        gpu.u32s(&token_seq),
        gpu.u32s(&positions),
        gpu.zeros(m * hq * head_dim),
    ];
    let refs: Vec<_> = std::iter::once(&step).chain(bufs.iter()).collect();
    gpu.run(KernelKey::Attention(key), &refs, key.workgroups(m as u32));
    let got = gpu.read_f32(&bufs[6], m * hq * head_dim);
    let mut want = vec![0f32; m * hq * head_dim];
    for t in 0..m {
        for h in 0..hq {
            let kvh = h / (hq / hkv);
            let q = &qkv[t * row + h * head_dim..][..head_dim];
            let slot = |j: usize| {
                block_tables[token_seq[t] as usize * max_blocks + j / block_size] as usize * block_size
                    + j % block_size
            };
            let scores: Vec<f64> = (0..=positions[t] as usize)
                .map(|j| {
                    let k = &k_cache[slot(j) * kv + kvh * head_dim..][..head_dim];
                    q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
                        / (head_dim as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..head_dim {
                let v: f64 = weights
                    .iter()
                    .enumerate()
                    .map(|(j, w)| w * v_cache[slot(j) * kv + kvh * head_dim + d] as f64)
                    .sum();
                want[(t * hq + h) * head_dim + d] = (v / total) as f32;
            }
        }
    }
    assert_close("attention", &got, &want, 1e-4, 1e-4);
}

#[test]
fn silu_gate_matches_cpu() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(7);
    let (m, inter) = (3usize, 136usize);
    let mut gate_up = random_f32(&mut rng, m * 2 * inter, 8.0);
    gate_up[0] = -100.0; // exp overflow must still give silu = -0
    let key = SiluGateKey { intermediate: inter as u32 };
    let step = gpu.step(m as u32, 1, 1);
    let (gb, out) = (gpu.f32s(&gate_up), gpu.zeros(m * inter));
    gpu.run(KernelKey::SiluGate(key), &[&step, &gb, &out], key.workgroups(m as u32));
    let got = gpu.read_f32(&out, m * inter);
    let want: Vec<f32> = (0..m * inter)
        .map(|i| {
            let (t, c) = (i / inter, i % inter);
            let g = gate_up[t * 2 * inter + c] as f64;
            let u = gate_up[t * 2 * inter + inter + c] as f64;
            (g / (1.0 + (-g).exp()) * u) as f32
        })
        .collect();
    assert_close("silu_gate", &got, &want, 1e-5, 1e-5);
}

#[test]
fn argmax_picks_the_first_largest_logit() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(8);
    let (rows, vocab) = (5usize, 49_157usize);
    let mut logits = random_f32(&mut rng, rows * vocab, 10.0);
    // Ties: the first index wins, as torch.argmax.
    logits[2 * vocab + 40_000] = 50.0;
    logits[2 * vocab + 100] = 50.0;
    logits[3 * vocab + vocab - 1] = 60.0;
    logits[4 * vocab] = 60.0;
    let key = ArgmaxKey { vocab: vocab as u32 };
    let step = gpu.step(1, rows as u32, 1);
    let (lb, out) = (gpu.f32s(&logits), gpu.zeros(rows));
    gpu.run(KernelKey::Argmax(key), &[&step, &lb, &out], key.workgroups(rows as u32));
    let got = gpu.read_u32(&out, rows);
    let want: Vec<u32> = (0..rows)
        .map(|r| {
            let row = &logits[r * vocab..][..vocab];
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[2], 100);
}

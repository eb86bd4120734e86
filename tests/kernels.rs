//! Every WGSL kernel against a plain Rust reference on random inputs, with
//! odd sizes. Tolerances are stated per test: kernels accumulate in f32 in
//! another order than the reference, so they differ by rounding only.

mod common;

use common::gpu::{Harness, assert_close};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgserve::formats::TensorType;
use wgserve::gpu::kernels::argmax::ArgmaxKey;
use wgserve::gpu::kernels::attention::{AttentionBindings, AttentionKey, AttentionPass};
use wgserve::gpu::kernels::embedding::EmbeddingKey;
use wgserve::gpu::kernels::glu::{GluActivation, GluBindings, GluKey};
use wgserve::gpu::kernels::head_rmsnorm::{HeadRmsNormBindings, HeadRmsNormKey};
use wgserve::gpu::kernels::kv_write::{KvWriteBindings, KvWriteKey};
use wgserve::gpu::kernels::matmul::{MatmulKey, Tile, WeightFormat};
use wgserve::gpu::kernels::rmsnorm::{RmsNormBindings, RmsNormKey};
use wgserve::gpu::kernels::rope::rope_table;
use wgserve::gpu::kernels::{KernelBindings, KernelFamily};
use wgserve::gpu::kv_cache::KvCacheDtype;
use wgserve::gpu::{GpuBuffer, KernelKey};
use wgserve::model::dequantize::dequantize;
use wgserve::model::weights::pack_matrix;

fn random_f32(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

fn f16_bytes(value: f32) -> [u8; 2] {
    f16::from_f32(value).to_bits().to_le_bytes()
}

/// Random blocks of the 5- and 6-bit, K-quant and IQ4 formats: random bytes are
/// valid blocks once the f16 scale fields hold finite values, here sized
/// so that weights stay within a few units.
fn random_quant_blocks(rng: &mut StdRng, tensor_type: TensorType, elements: usize) -> Vec<u8> {
    let (f16_fields, scale): (&[usize], f32) = match tensor_type {
        TensorType::Q5_0 | TensorType::Q5_1 => (&[0, 2], 0.05),
        TensorType::Q4_K | TensorType::Q5_K => (&[0, 2], 0.002),
        TensorType::Q6_K => (&[208], 0.0003),
        TensorType::Q2_K => (&[80, 82], 0.05),
        TensorType::Q3_K => (&[108], 0.005),
        TensorType::IQ4_NL | TensorType::IQ4_XS => (&[0], 0.0005),
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
        | TensorType::Q6_K
        | TensorType::IQ4_NL
        | TensorType::IQ4_XS => {
            bytes = random_quant_blocks(rng, tensor_type, elements);
            let cols = tensor_type.block_len().max(32);
            let packed = pack_matrix("random", tensor_type, &bytes, elements / cols, cols).unwrap();
            values = dequantize(&packed);
        }
    }
    (bytes, values)
}

const ALL_TYPES: [TensorType; 15] = [
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
    TensorType::IQ4_NL,
    TensorType::IQ4_XS,
];

/// Odd (tokens, rows, row length) shapes; K-quant rows are whole 256-blocks.
fn matmul_shapes(tensor_type: TensorType) -> &'static [(usize, usize, usize)] {
    if tensor_type.block_len() == 256 {
        &[(1, 70, 256), (5, 129, 512), (13, 33, 768), (2, 9, 256)]
    } else {
        &[(1, 70, 96), (5, 129, 160), (13, 64, 32), (9, 33, 576)]
    }
}

/// A matmul of `format` over n rows of length k, all of them, overwriting
/// y: the CPU family's matvec, no bias, no fused activation, subgroups
/// and f16 arithmetic off; tests change what they vary.
fn plain_key(format: WeightFormat, n: usize, k: usize) -> MatmulKey {
    MatmulKey {
        format,
        k: k as u32,
        n: n as u32,
        row_start: 0,
        y_stride: n as u32,
        tile: Tile::Rows8,
        accumulate: false,
        bias: false,
        family: KernelFamily::Cpu,
        glu: None,
        subgroups: false,
        f16_arithmetic: false,
    }
}

// Tolerance: f32 sums of K products in a different order; |error| is
// bounded by ~K * eps * sum|w x|, far below 1e-4 relative + 1e-4 absolute.
#[test]
fn matmul_matches_cpu_for_every_format_family_tile_accumulate_and_bias() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(1);
    for tensor_type in ALL_TYPES {
        for &(m, n, k) in matmul_shapes(tensor_type) {
            let (bytes, w) = random_tensor(&mut rng, tensor_type, n * k);
            let packed = pack_matrix("w", tensor_type, &bytes, n, k).unwrap();
            let x = random_f32(&mut rng, m * k, 1.0);
            let y0 = random_f32(&mut rng, m * n, 1.0);
            let bias_values = random_f32(&mut rng, n, 1.0);
            for ((family, subgroups), tile) in
                gpu.matmul_variants().into_iter().flat_map(|f| Tile::ALL.map(|t| (f, t)))
            {
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
                        tile,
                        accumulate,
                        bias,
                        family,
                        subgroups,
                        ..plain_key(packed.format, n, k)
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
                        "matmul {tensor_type} m={m} n={n} k={k} {family:?} subgroups={subgroups} tile={tile:?} acc={accumulate} bias={bias}"
                    );
                    assert_close(&what, &got, &want, 1e-4, 1e-4);
                }
            }
        }
    }
}

// --f16-arithmetic: the GPU family's prompt tile stages x and the weights
// as halves and sums each block of 32 products in f16. Relative to
// sum |w x|, the worst case is 34 u (u = 2^-11: the operands and each
// product round once, a sum of 32 up to 31 times), but random roundings
// stay far below it: at most 0.69 u over these cases on lavapipe
// (2026-12-01). 2 u keeps a 3x margin and still fails a dropped product
// (about 4-8 u of sum |w x| at these K), which 34 u would not. And it must
// not be the f32 tile: some output differs from it.
#[test]
fn gpu_prompt_tile_in_f16_stays_within_half_precision_of_cpu() {
    let mut gpu = Harness::new();
    if !gpu.ctx.features.contains(wgpu::Features::SHADER_F16) {
        eprintln!("skipped: {} has no shader-f16", gpu.ctx.adapter_info.name);
        return;
    }
    let mut rng = StdRng::seed_from_u64(16);
    let unit = 2f32.powi(-11);
    for tensor_type in [TensorType::F32, TensorType::Q8_0, TensorType::Q4_1, TensorType::Q4_K] {
        for (m, n, k) in [(70, 129, 512), (13, 33, 256)] {
            let (bytes, w) = random_tensor(&mut rng, tensor_type, n * k);
            let packed = pack_matrix("w", tensor_type, &bytes, n, k).unwrap();
            let x = random_f32(&mut rng, m * k, 4.0);
            let run = |gpu: &mut Harness, f16_arithmetic: bool| {
                let key = MatmulKey {
                    tile: Tile::Rows4Tokens4,
                    family: KernelFamily::Gpu,
                    subgroups: gpu.ctx.kernel_subgroups(),
                    f16_arithmetic,
                    ..plain_key(packed.format, n, k)
                };
                let step = gpu.step(m as u32, 1, 1);
                let (xb, wd, ws, yb) =
                    (gpu.f32s(&x), gpu.u32s(&packed.data), gpu.u32s(&packed.scales), gpu.zeros(m * n));
                let bb = gpu.f32s(&[0.0]);
                gpu.run(KernelKey::Matmul(key), &[&step, &xb, &wd, &ws, &yb, &bb], key.workgroups(m as u32));
                gpu.read_f32(&yb, m * n)
            };
            let halves = run(&mut gpu, true);
            let floats = run(&mut gpu, false);
            let what = format!("f16 tile {tensor_type} m={m} n={n} k={k}");
            for t in 0..m {
                for r in 0..n {
                    let products = (0..k).map(|c| w[r * k + c] as f64 * x[t * k + c] as f64);
                    let (dot, magnitude) = products.fold((0.0, 0.0), |(s, a), p| (s + p, a + p.abs()));
                    let tolerance = 2.0 * unit * magnitude as f32 + 1e-5;
                    let got = halves[t * n + r];
                    assert!(
                        (got - dot as f32).abs() <= tolerance && got.is_finite(),
                        "{what}: token {t} row {r}: got {got}, want {dot} (tolerance {tolerance})"
                    );
                }
            }
            assert_ne!(halves, floats, "{what}: the f16 tile gave the f32 tile's outputs");
        }
    }
}

// The gated MLP's first half fused into the matvec: W = [gate; up], y =
// act(x · gateᵀ) * (x · upᵀ). Each matvec entry point has the fused store
// (matmul.wgsl's four, matmul_quant.wgsl's one); unit counts that leave a
// partial tile of four. Tolerance as the matmul's, with the activation's.
#[test]
fn gated_matvec_matches_cpu_matvec_then_activation() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(11);
    let types = [TensorType::F32, TensorType::F16, TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1];
    let quant_types = [TensorType::Q5_0, TensorType::Q4_K, TensorType::Q6_K, TensorType::IQ4_XS];
    for tensor_type in types.into_iter().chain(quant_types) {
        let k = if tensor_type.block_len() == 256 { 512 } else { 96 };
        for (m, units) in [(1usize, 37usize), (3, 6)] {
            let n = 2 * units;
            let (bytes, w) = random_tensor(&mut rng, tensor_type, n * k);
            let packed = pack_matrix("w", tensor_type, &bytes, n, k).unwrap();
            let x = random_f32(&mut rng, m * k, 1.0);
            let subgroup_options: &[bool] =
                if gpu.ctx.kernel_subgroups() { &[false, true] } else { &[false] };
            for (activation, &subgroups) in [GluActivation::Silu, GluActivation::GeluTanh]
                .into_iter()
                .flat_map(|a| subgroup_options.iter().map(move |s| (a, s)))
            {
                let key = MatmulKey {
                    y_stride: units as u32,
                    glu: Some(activation),
                    subgroups,
                    ..plain_key(packed.format, n, k)
                };
                let step = gpu.step(m as u32, 1, 1);
                let (xb, wd, ws) = (gpu.f32s(&x), gpu.u32s(&packed.data), gpu.u32s(&packed.scales));
                // One more row than written: the store must stay in its units.
                let (yb, bb) = (gpu.f32s(&vec![7.0; m * units + 1]), gpu.f32s(&[0.0]));
                gpu.run(KernelKey::Matmul(key), &[&step, &xb, &wd, &ws, &yb, &bb], key.workgroups(m as u32));
                let got = gpu.read_f32(&yb, m * units + 1);
                let dot = |t: usize, r: usize| -> f64 {
                    (0..k).map(|c| w[r * k + c] as f64 * x[t * k + c] as f64).sum()
                };
                let mut want: Vec<f32> = (0..m * units)
                    .map(|i| {
                        let (t, unit) = (i / units, i % units);
                        let (g, u) = (dot(t, unit), dot(t, units + unit));
                        let act = match activation {
                            GluActivation::Silu => g / (1.0 + (-g).exp()),
                            GluActivation::GeluTanh => gelu_tanh_cpu(g),
                        };
                        (act * u) as f32
                    })
                    .collect();
                want.push(7.0);
                let what = format!(
                    "gated matvec {tensor_type} {activation:?} m={m} units={units} k={k} subgroups={subgroups}"
                );
                assert_close(&what, &got, &want, 1e-4, 1e-4);
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
fn rmsnorm_matches_cpu_with_and_without_gather_and_accumulate() {
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
    for (gather, accumulate) in [(false, false), (true, false), (false, true), (true, true)] {
        let key = RmsNormKey { hidden: hidden as u32, eps_bits: eps.to_bits(), gather, accumulate };
        let out_rows = if gather { gather_rows.len() } else { rows };
        let out0 = random_f32(&mut rng, out_rows * hidden, 2.0);
        let step = gpu.step(rows as u32, gather_rows.len() as u32, 1);
        let (xb, wb, ib, out) = (gpu.f32s(&x), gpu.f32s(&weight), gpu.u32s(&gather_rows), gpu.f32s(&out0));
        let bindings = RmsNormBindings { step: &step, x: &xb, weight: &wb, row_index: &ib, out: &out };
        gpu.run(KernelKey::RmsNorm(key), &bindings.in_binding_order(), key.workgroups(out_rows as u32));
        let got = gpu.read_f32(&out, out_rows * hidden);
        let sources: Vec<usize> =
            if gather { gather_rows.iter().map(|&r| r as usize).collect() } else { (0..rows).collect() };
        let mut want: Vec<f32> =
            sources.iter().flat_map(|&r| rmsnorm_cpu(&x[r * hidden..][..hidden], &weight, eps)).collect();
        if accumulate {
            for (w, o) in want.iter_mut().zip(&out0) {
                *w += o;
            }
        }
        assert_close(&format!("rmsnorm gather={gather} accumulate={accumulate}"), &got, &want, 1e-5, 1e-5);
    }
}

// Tolerance 1e-5 relative, as RMSNorm: per head one sum of squares and a sqrt.
#[test]
fn head_rmsnorm_normalizes_query_and_key_heads_and_leaves_values() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(10);
    let eps = 1e-6f32;
    // Gemma 3 270M's heads, then odd GQA groups with a short head.
    for (head_dim, hq, hkv, m) in [(256usize, 4usize, 1usize, 7usize), (12, 6, 2, 13)] {
        let row = (hq + 2 * hkv) * head_dim;
        let mut qkv = random_f32(&mut rng, m * row, 3.0);
        // A huge head and a tiny one: the norm must not overflow or blow up.
        for v in &mut qkv[..head_dim] {
            *v *= 3000.0;
        }
        for v in &mut qkv[row + hq * head_dim..][..head_dim] {
            *v *= 1e-3;
        }
        let (q_norm, k_norm) = (random_f32(&mut rng, head_dim, 2.0), random_f32(&mut rng, head_dim, 2.0));
        let key = HeadRmsNormKey {
            head_dim: head_dim as u32,
            n_q_heads: hq as u32,
            n_kv_heads: hkv as u32,
            eps_bits: eps.to_bits(),
        };
        let step = gpu.step(m as u32, 1, 1);
        let (qb, qn, kn) = (gpu.f32s(&qkv), gpu.f32s(&q_norm), gpu.f32s(&k_norm));
        let bindings = HeadRmsNormBindings { step: &step, qkv: &qb, q_norm: &qn, k_norm: &kn };
        gpu.run(KernelKey::HeadRmsNorm(key), &bindings.in_binding_order(), key.workgroups(m as u32));
        let got = gpu.read_f32(&qb, m * row);
        let mut want = qkv.clone();
        for t in 0..m {
            for head in 0..hq + hkv {
                let at = t * row + head * head_dim;
                let weight = if head < hq { &q_norm } else { &k_norm };
                let normed = rmsnorm_cpu(&qkv[at..][..head_dim], weight, eps);
                want[at..][..head_dim].copy_from_slice(&normed);
            }
        }
        assert_close(&format!("head_rmsnorm D={head_dim} Hq={hq} Hkv={hkv}"), &got, &want, 1e-5, 1e-5);
        // V heads are bit-for-bit untouched.
        for t in 0..m {
            let v = t * row + (hq + hkv) * head_dim..(t + 1) * row;
            assert_eq!(got[v.clone()], qkv[v], "head_rmsnorm changed V of token {t}");
        }
    }
}

// Tolerance 1e-4: two products per element, same table.
#[test]
fn rope_rotates_queries_in_place_and_keys_into_the_cache() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(4);
    // Llama-like heads; then Gemma 3 270M's (head_dim 256, NeoX halves in
    // its GGUF) with both of its bases: 10,000 (local) and 1e6 (global).
    let cases = [(16usize, 6usize, 2usize, 10000f32), (256, 4, 1, 10000.0), (256, 4, 1, 1e6)];
    for (head_dim, hq, hkv, theta) in cases {
        let (m, slots) = (7usize, 16usize);
        let row = (hq + 2 * hkv) * head_dim;
        let kv = hkv * head_dim;
        let qkv = random_f32(&mut rng, m * row, 1.0);
        let positions: Vec<u32> = vec![0, 1, 2, 5, 40, 41, 300];
        let slot_mapping: Vec<u32> = vec![3, 0, 15, 7, 8, 1, 9];
        let table = rope_table(head_dim as u32, theta, 512);
        let flat: Vec<f32> = table.iter().flatten().copied().collect();
        for neox in [false, true] {
            let kv_dtype = KvCacheDtype::F32;
            let key = KvWriteKey {
                head_dim: head_dim as u32,
                n_q_heads: hq as u32,
                n_kv_heads: hkv as u32,
                kv_dtype,
                neox,
            };
            let words = slots * kv;
            let qb = gpu.f32s(&qkv);
            let (kc, vc) = run_kv_write(&mut gpu, key, &qb, &slot_mapping, &positions, &flat, words);
            // Every Q and K head rotated; qkv keeps K and V as they were.
            let mut rotated = qkv.clone();
            for (t, &position) in positions.iter().enumerate() {
                for head in 0..hq + hkv {
                    let base = t * row + head * head_dim;
                    for i in 0..head_dim / 2 {
                        let (a, b) = if neox {
                            (base + i, base + i + head_dim / 2)
                        } else {
                            (base + 2 * i, base + 2 * i + 1)
                        };
                        let angle =
                            position as f64 * (theta as f64).powf(-(2.0 * i as f64) / head_dim as f64);
                        let (cos, sin) = (angle.cos() as f32, angle.sin() as f32);
                        rotated[a] = qkv[a] * cos - qkv[b] * sin;
                        rotated[b] = qkv[b] * cos + qkv[a] * sin;
                    }
                }
            }
            let mut want_qkv = qkv.clone();
            let (mut want_k, mut want_v) = (vec![0f32; words], vec![0f32; words]);
            for t in 0..m {
                let q = t * row..t * row + hq * head_dim;
                want_qkv[q.clone()].copy_from_slice(&rotated[q]);
                let s = slot_mapping[t] as usize;
                want_k[s * kv..][..kv].copy_from_slice(&rotated[t * row + hq * head_dim..][..kv]);
                want_v[s * kv..][..kv].copy_from_slice(&qkv[t * row + (hq + hkv) * head_dim..][..kv]);
            }
            let what = format!("rope D={head_dim} theta={theta} neox={neox}");
            assert_close(&format!("{what}: qkv"), &gpu.read_f32(&qb, m * row), &want_qkv, 1e-4, 1e-4);
            assert_close(&format!("{what}: k cache"), &gpu.read_f32(&kc, words), &want_k, 1e-4, 1e-4);
            assert_eq!(gpu.read_f32(&vc, words), want_v, "{what}: v cache");
        }
    }
}

/// The cache write with every position 0 (RoPE's identity: cos 1, sin 0,
/// exact), for the cache tests that check K bit for bit: the K and V
/// caches' `words` words after it.
fn write_unrotated(
    gpu: &mut Harness,
    key: KvWriteKey,
    qkv: &[f32],
    slot_mapping: &[u32],
    words: usize,
) -> (Vec<u32>, Vec<u32>) {
    let m = slot_mapping.len();
    let table: Vec<f32> = rope_table(key.head_dim, 10000.0, 1).iter().flatten().copied().collect();
    let qb = gpu.f32s(qkv);
    let (kc, vc) = run_kv_write(gpu, key, &qb, slot_mapping, &vec![0; m], &table, words);
    (gpu.read_u32(&kc, words), gpu.read_u32(&vc, words))
}

/// One dispatch of the RoPE + cache write over `qkv` (rotated in place
/// there) into zeroed K and V caches of `words` words each, returned.
fn run_kv_write(
    gpu: &mut Harness,
    key: KvWriteKey,
    qkv: &GpuBuffer,
    slot_mapping: &[u32],
    positions: &[u32],
    rope_table: &[f32],
    words: usize,
) -> (GpuBuffer, GpuBuffer) {
    let m = slot_mapping.len() as u32;
    let step = gpu.step(m, 1, 1);
    let (sb, kc, vc) = (gpu.u32s(slot_mapping), gpu.zeros(words), gpu.zeros(words));
    let (pb, tb) = (gpu.u32s(positions), gpu.f32s(rope_table));
    let bindings = KvWriteBindings {
        step: &step,
        qkv,
        slot_mapping: &sb,
        k_cache: &kc,
        v_cache: &vc,
        positions: &pb,
        rope_table: &tb,
    };
    gpu.run(KernelKey::KvWrite(key), &bindings.in_binding_order(), key.workgroups(m));
    (kc, vc)
}

/// f32 values as the f16 pairs of a KV cache in `KvCacheDtype::F16`
/// (element 2i in the low half of word i), rounded to nearest.
fn f16_words(values: &[f32]) -> Vec<u32> {
    values
        .chunks_exact(2)
        .map(|pair| {
            let half = |v: f32| half::f16::from_f32(v).to_bits() as u32;
            half(pair[0]) | half(pair[1]) << 16
        })
        .collect()
}

/// f32 rows of `head_dim` as the rows of a KV cache in
/// `KvCacheDtype::Q8_0`, quantized as kv_write does: per group of 32,
/// d = f16(max|x| / 127) and code = x / d rounded to nearest even (0 where
/// d is 0), codes first, then the scales two to a word.
fn q8_0_words(values: &[f32], head_dim: usize) -> Vec<u32> {
    let mut words = Vec::new();
    for row in values.chunks_exact(head_dim) {
        let mut codes = vec![0u32; head_dim / 4];
        let mut scales = vec![0u32; head_dim.div_ceil(64)];
        for (g, group) in row.chunks_exact(32).enumerate() {
            let amax = group.iter().fold(0f32, |m, x| m.max(x.abs()));
            let d = f16::from_f32(amax / 127.0);
            scales[g / 2] |= (d.to_bits() as u32) << (16 * (g % 2));
            let d = d.to_f32();
            for (j, &x) in group.iter().enumerate() {
                let code = if d > 0.0 { (x / d).round_ties_even().clamp(-127.0, 127.0) as i8 } else { 0 };
                let e = 32 * g + j;
                codes[e / 4] |= (code as u8 as u32) << (8 * (e % 4));
            }
        }
        words.extend(codes);
        words.extend(scales);
    }
    words
}

/// f32 values as the words of a KV cache of `dtype`: what kv_write stores.
fn cache_words(values: &[f32], dtype: KvCacheDtype, head_dim: usize) -> Vec<u32> {
    match dtype {
        KvCacheDtype::F32 => values.iter().map(|v| v.to_bits()).collect(),
        KvCacheDtype::F16 => f16_words(values),
        KvCacheDtype::Q8_0 => q8_0_words(values, head_dim),
    }
}

/// Rows of cache words (each row's q8_0 codes then its scales) as the GPU
/// lays them out: in q8_0, the codes of every row, then the scales of
/// every row (kv_write.wgsl); f32 and f16 rows as they are.
fn gpu_layout(rows: &[u32], dtype: KvCacheDtype, head_dim: usize) -> Vec<u32> {
    if dtype != KvCacheDtype::Q8_0 {
        return rows.to_vec();
    }
    let codes = head_dim / 4;
    let row_words = dtype.row_words(head_dim);
    let (mut code_words, mut scale_words) = (Vec::new(), Vec::new());
    for row in rows.chunks_exact(row_words) {
        code_words.extend_from_slice(&row[..codes]);
        scale_words.extend_from_slice(&row[codes..]);
    }
    code_words.extend(scale_words);
    code_words
}

/// The inverse of `gpu_layout`: a cache read back as rows.
fn rows_layout(words: &[u32], dtype: KvCacheDtype, head_dim: usize) -> Vec<u32> {
    if dtype != KvCacheDtype::Q8_0 {
        return words.to_vec();
    }
    let (codes, row_words) = (head_dim / 4, dtype.row_words(head_dim));
    let num_rows = words.len() / row_words;
    let (code_words, scale_words) = words.split_at(num_rows * codes);
    code_words
        .chunks_exact(codes)
        .zip(scale_words.chunks_exact(row_words - codes))
        .flat_map(|(c, s)| c.iter().chain(s).copied())
        .collect()
}

/// A KV cache's words (rows of `head_dim` elements) read back as f32 values.
fn cache_values(words: &[u32], dtype: KvCacheDtype, head_dim: usize) -> Vec<f32> {
    match dtype {
        KvCacheDtype::F32 => words.iter().map(|&w| f32::from_bits(w)).collect(),
        KvCacheDtype::F16 => words
            .iter()
            .flat_map(|&w| [w as u16, (w >> 16) as u16].map(|h| f16::from_bits(h).to_f32()))
            .collect(),
        KvCacheDtype::Q8_0 => {
            let mut values = Vec::new();
            for row in words.chunks_exact(dtype.row_words(head_dim)) {
                let (codes, scales) = row.split_at(head_dim / 4);
                for e in 0..head_dim {
                    let code = (codes[e / 4] >> (8 * (e % 4))) as u8 as i8;
                    let scale = f16::from_bits((scales[e / 64] >> (16 * (e / 32 % 2))) as u16);
                    values.push(code as f32 * scale.to_f32());
                }
            }
            values
        }
    }
}

#[test]
fn kv_write_places_keys_and_values_at_their_slots() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(5);
    // Small GQA heads, and Gemma 3 270M's (head_dim 256, one KV head).
    for (head_dim, hq, hkv) in [(8usize, 4usize, 2usize), (256, 4, 1)] {
        for kv_dtype in [KvCacheDtype::F32, KvCacheDtype::F16] {
            let (m, slots) = (5usize, 48usize);
            let row = (hq + 2 * hkv) * head_dim;
            let kv = hkv * head_dim;
            let qkv = random_f32(&mut rng, m * row, 1.0);
            let slot_mapping: Vec<u32> = vec![17, 3, 40, 41, 0];
            let key = KvWriteKey {
                head_dim: head_dim as u32,
                n_q_heads: hq as u32,
                n_kv_heads: hkv as u32,
                kv_dtype,
                neox: false,
            };
            let words = slots * hkv * kv_dtype.row_words(head_dim);
            let (k_words, v_words) = write_unrotated(&mut gpu, key, &qkv, &slot_mapping, words);
            let got_k = cache_values(&rows_layout(&k_words, kv_dtype, head_dim), kv_dtype, head_dim);
            let got_v = cache_values(&rows_layout(&v_words, kv_dtype, head_dim), kv_dtype, head_dim);
            let (mut want_k, mut want_v) = (vec![0f32; slots * kv], vec![0f32; slots * kv]);
            for t in 0..m {
                let s = slot_mapping[t] as usize;
                want_k[s * kv..][..kv].copy_from_slice(&qkv[t * row + hq * head_dim..][..kv]);
                want_v[s * kv..][..kv].copy_from_slice(&qkv[t * row + (hq + hkv) * head_dim..][..kv]);
            }
            let what = format!("D={head_dim} {kv_dtype:?}");
            if kv_dtype == KvCacheDtype::F32 {
                assert_eq!(got_k, want_k, "k cache {what}");
                assert_eq!(got_v, want_v, "v cache {what}");
            } else {
                // Within one f16 step of the value: rounded to nearest or
                // toward zero, as an adapter's conversion may do.
                for (got, want) in [(&got_k, &want_k), (&got_v, &want_v)] {
                    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
                        assert!((g - w).abs() <= w.abs() / 1024.0 + 1e-7, "{what}: element {i}: {g} for {w}");
                    }
                }
            }
        }
    }
}

// q8_0 rows bit for bit against the CPU quantizer: heads of one group (a
// half-filled scale word), of three (an odd count), SmolLM2's and Gemma
// 3's; groups of zeros (scale 0), of values so small that the scale is a
// subnormal f16, and of large ones; slots at block edges and the last.
#[test]
fn kv_write_quantizes_q8_0_rows_as_the_cpu_does() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(10);
    let kv_dtype = KvCacheDtype::Q8_0;
    for (head_dim, hq, hkv) in [(32usize, 2usize, 2usize), (96, 3, 1), (64, 9, 3), (256, 4, 1)] {
        let (m, slots) = (6usize, 48usize);
        let row = (hq + 2 * hkv) * head_dim;
        let kv = hkv * head_dim;
        let mut qkv = random_f32(&mut rng, m * row, 1.0);
        for (g, group) in qkv.chunks_exact_mut(32).enumerate() {
            let scale = [1.0, 0.0, 1e-4, 300.0, 0.02][g % 5];
            group.iter_mut().for_each(|x| *x *= scale);
        }
        let slot_mapping: Vec<u32> = vec![17, 15, 16, 47, 0, 31];
        let key = KvWriteKey {
            head_dim: head_dim as u32,
            n_q_heads: hq as u32,
            n_kv_heads: hkv as u32,
            kv_dtype,
            neox: false,
        };
        let slot_words = hkv * kv_dtype.row_words(head_dim);
        let words = slots * slot_words;
        let (k_words, v_words) = write_unrotated(&mut gpu, key, &qkv, &slot_mapping, words);
        let (got_k, got_v) =
            (rows_layout(&k_words, kv_dtype, head_dim), rows_layout(&v_words, kv_dtype, head_dim));
        let (mut want_k, mut want_v) = (vec![0u32; words], vec![0u32; words]);
        for t in 0..m {
            let s = slot_mapping[t] as usize;
            let k = &qkv[t * row + hq * head_dim..][..kv];
            let v = &qkv[t * row + (hq + hkv) * head_dim..][..kv];
            want_k[s * slot_words..][..slot_words].copy_from_slice(&q8_0_words(k, head_dim));
            want_v[s * slot_words..][..slot_words].copy_from_slice(&q8_0_words(v, head_dim));
            // The twin itself: each value within half a scale of its own,
            // plus what rounding the scale to f16 (coarse where subnormal)
            // moves the largest codes by.
            for (values, words) in [(k, &want_k), (v, &want_v)] {
                let back = cache_values(&words[s * slot_words..][..slot_words], kv_dtype, head_dim);
                for (e, (&x, &y)) in values.iter().zip(&back).enumerate() {
                    let group = &values[e / 32 * 32..][..32];
                    let d = group.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
                    let d16 = f16::from_f32(d).to_f32();
                    let bound = 0.5 * d16 + 127.0 * (d - d16).abs() + 1e-9;
                    assert!((x - y).abs() <= bound, "D={head_dim} element {e}: {y} for {x}");
                }
            }
        }
        for (name, got, want) in [("k", &got_k, &want_k), ("v", &got_v, &want_v)] {
            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                let (slot, at) = (i / slot_words, i % slot_words);
                assert_eq!(
                    g, w,
                    "{name} cache D={head_dim} Hkv={hkv}: slot {slot}, word {at}: {g:#010x} for {w:#010x}"
                );
            }
        }
    }
}

/// One attention launch: head shape, page size, window, and the batch's
/// sequences as (position of the first new token, number of new tokens).
struct AttentionCase {
    head_dim: usize,
    hq: usize,
    hkv: usize,
    block_size: usize,
    sliding_window: usize,
    seqs: &'static [(usize, usize)],
}

/// Runs `case` on random K/V pages in scattered blocks and compares with a
/// plain softmax over the visible keys in f64. Table entries that must not
/// be read (blocks wholly before every query's window, and past the last
/// position) name a block of NaN keys and values, so reading one fails.
/// Every way through a step: both of the GPU family's (a workgroup per
/// query; keys split into spans, then combined) and both of the CPU
/// family's (keys split into spans, then combined; queries together),
/// each also with subgroups where the adapter has them (the GPU family's
/// sums through them, the CPU family's cache rows shared), over caches of
/// each dtype.
fn check_attention(gpu: &mut Harness, rng: &mut StdRng, case: &AttentionCase) {
    let passes: [&[AttentionPass]; 4] = [
        &[AttentionPass::PerQuery],
        &[AttentionPass::GpuSplitKeys, AttentionPass::CombineSplits],
        &[AttentionPass::SplitKeys, AttentionPass::CombineSplits],
        &[AttentionPass::QueriesTogether],
    ];
    let subgroup_options: &[bool] = if gpu.ctx.kernel_subgroups() { &[false, true] } else { &[false] };
    let ways = subgroup_options.iter().flat_map(|&subgroups| passes.map(|p| (p, subgroups)));
    for (passes, subgroups) in ways {
        for kv_dtype in [KvCacheDtype::F32, KvCacheDtype::F16, KvCacheDtype::Q8_0] {
            check_attention_passes(gpu, rng, case, passes, kv_dtype, subgroups);
        }
    }
}

fn check_attention_passes(
    gpu: &mut Harness,
    rng: &mut StdRng,
    case: &AttentionCase,
    passes: &[AttentionPass],
    kv_dtype: KvCacheDtype,
    subgroups: bool,
) {
    let AttentionCase { head_dim, hq, hkv, block_size, sliding_window, seqs } = *case;
    let kv = hkv * head_dim;
    let window_start =
        |pos: usize| if sliding_window == 0 { 0 } else { (pos + 1).saturating_sub(sliding_window) };
    let blocks_per_seq: Vec<usize> =
        seqs.iter().map(|&(first, n)| (first + n - 1) / block_size + 1).collect();
    let max_blocks = *blocks_per_seq.iter().max().unwrap();
    let num_blocks = blocks_per_seq.iter().sum::<usize>() + 1;
    let poison = num_blocks - 1;
    // Physical blocks in a random order, so that tables are scattered.
    let mut physical: Vec<usize> = (0..poison).collect();
    for i in (1..physical.len()).rev() {
        physical.swap(i, rng.random_range(0..=i));
    }
    let mut next = physical.into_iter();
    let mut block_tables = vec![poison as u32; seqs.len() * max_blocks];
    for (s, &(first, _)) in seqs.iter().enumerate() {
        for b in 0..blocks_per_seq[s] {
            let before_window = (b + 1) * block_size <= window_start(first);
            let block = next.next().unwrap();
            if !before_window {
                block_tables[s * max_blocks + b] = block as u32;
            }
        }
    }
    let mut k_cache = random_f32(rng, num_blocks * block_size * kv, 1.0);
    let mut v_cache = random_f32(rng, num_blocks * block_size * kv, 1.0);
    for v in k_cache[poison * block_size * kv..].iter_mut().chain(&mut v_cache[poison * block_size * kv..]) {
        *v = f32::NAN;
    }
    // The reference reads what the cache holds: in f16, the values rounded;
    // in q8_0, quantized. q8_0's poison: NaN scales (its quantizer, as
    // max() does, would skip the NaN values).
    let (mut k_words, mut v_words) =
        (cache_words(&k_cache, kv_dtype, head_dim), cache_words(&v_cache, kv_dtype, head_dim));
    if kv_dtype == KvCacheDtype::Q8_0 {
        let poison_words = poison * block_size * hkv * kv_dtype.row_words(head_dim);
        for w in k_words[poison_words..].iter_mut().chain(&mut v_words[poison_words..]) {
            *w = 0x7e00_7e00;
        }
    }
    let (k_cache, v_cache) =
        (cache_values(&k_words, kv_dtype, head_dim), cache_values(&v_words, kv_dtype, head_dim));
    let (mut token_seq, mut positions) = (vec![], vec![]);
    for (s, &(first, n)) in seqs.iter().enumerate() {
        for p in first..first + n {
            token_seq.push(s as u32);
            positions.push(p as u32);
        }
    }
    let m = token_seq.len();
    let row = (hq + 2 * hkv) * head_dim;
    let qkv = random_f32(rng, m * row, 1.0);
    let key = |pass: AttentionPass, sliding_window: usize| AttentionKey {
        head_dim: head_dim as u32,
        n_q_heads: hq as u32,
        n_kv_heads: hkv as u32,
        block_size: block_size as u32,
        sliding_window: sliding_window as u32,
        pass,
        kv_dtype,
        subgroups,
    };
    let step = gpu.step(m as u32, seqs.len() as u32, max_blocks as u32);
    let (qb, kc, vc) = (
        gpu.f32s(&qkv),
        gpu.u32s(&gpu_layout(&k_words, kv_dtype, head_dim)),
        gpu.u32s(&gpu_layout(&v_words, kv_dtype, head_dim)),
    );
    let (tb, sb, pb) = (gpu.u32s(&block_tables), gpu.u32s(&token_seq), gpu.u32s(&positions));
    let out = gpu.zeros(m * hq * head_dim);
    let partials = gpu.zeros(AttentionPass::partials_len(m, hq, head_dim));
    let bindings = AttentionBindings {
        step: &step,
        qkv: &qb,
        k_cache: &kc,
        v_cache: &vc,
        block_tables: &tb,
        token_seq: &sb,
        positions: &pb,
        out: &out,
        partials: None,
    };
    let run = |gpu: &mut Harness, sliding_window: usize| {
        for &pass in passes {
            let key = key(pass, sliding_window);
            let partials = pass.uses_partials().then_some(&partials);
            let bindings = AttentionBindings { partials, ..bindings };
            gpu.run(KernelKey::Attention(key), &bindings.in_binding_order(), key.workgroups(m as u32));
        }
    };
    run(gpu, sliding_window);
    let got = gpu.read_f32(&out, m * hq * head_dim);
    let mut want = vec![0f32; m * hq * head_dim];
    for t in 0..m {
        let pos = positions[t] as usize;
        let slot = |j: usize| {
            block_tables[token_seq[t] as usize * max_blocks + j / block_size] as usize * block_size
                + j % block_size
        };
        let visible: Vec<usize> = (window_start(pos)..=pos).collect();
        for h in 0..hq {
            let kvh = h / (hq / hkv);
            let q = &qkv[t * row + h * head_dim..][..head_dim];
            let scores: Vec<f64> = visible
                .iter()
                .map(|&j| {
                    let k = &k_cache[slot(j) * kv + kvh * head_dim..][..head_dim];
                    q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
                        / (head_dim as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..head_dim {
                let v: f64 = visible
                    .iter()
                    .zip(&weights)
                    .map(|(&j, w)| w * v_cache[slot(j) * kv + kvh * head_dim + d] as f64)
                    .sum();
                want[(t * hq + h) * head_dim + d] = (v / total) as f32;
            }
        }
    }
    let what = format!(
        "attention {passes:?} subgroups={subgroups} {kv_dtype:?} D={head_dim} Hq={hq} Hkv={hkv} block={block_size} window={sliding_window}"
    );
    assert_close(&what, &got, &want, 1e-4, 1e-4);
    // The poison is live: where blocks before a window were replaced by it,
    // attention over every earlier position reads NaN.
    let poisoned = seqs.iter().any(|&(first, _)| window_start(first) >= block_size);
    if poisoned {
        run(gpu, 0);
        let got = gpu.read_f32(&out, m * hq * head_dim);
        assert!(
            got.iter().any(|v| !v.is_finite()),
            "{what}: the NaN blocks were never read without a window"
        );
    }
}

// Tolerance 1e-4: softmax in f32 with an online rescaling, against f64.
#[test]
fn paged_attention_matches_cpu_on_a_varlen_batch() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(6);
    // A 5-token prefill from 0, a decode at position 37, a 3-token chunk at
    // positions 16..19 (crossing a block).
    let seqs = &[(0, 5), (37, 1), (16, 3)];
    let case = AttentionCase { head_dim: 32, hq: 6, hkv: 2, block_size: 16, sliding_window: 0, seqs };
    check_attention(&mut gpu, &mut rng, &case);
    // Prefill chunks long enough that most queries go eight together: from
    // 0, from the middle of a block, and one whose length is not a
    // multiple of four, beside decodes that fall into mixed groups, and a
    // chunk deep into a long context (thousands of cached keys).
    let seqs = &[(0, 37), (5, 1), (50, 21), (70, 1), (16, 10), (4000, 19)];
    let case = AttentionCase { head_dim: 64, hq: 9, hkv: 3, block_size: 16, sliding_window: 0, seqs };
    check_attention(&mut gpu, &mut rng, &case);
    // Decodes deep into long contexts, up to 8,192 positions: each split
    // span then holds hundreds of keys, at odd lengths and block edges.
    let seqs = &[(8191, 1), (4095, 1), (4096, 1), (1000, 1), (2, 1)];
    let case = AttentionCase { head_dim: 32, hq: 4, hkv: 2, block_size: 16, sliding_window: 0, seqs };
    check_attention(&mut gpu, &mut rng, &case);
    // An odd number of vec4s per head: f16 rows then start mid-load.
    let seqs = &[(0, 19), (3, 1), (30, 9)];
    let case = AttentionCase { head_dim: 20, hq: 4, hkv: 2, block_size: 16, sliding_window: 0, seqs };
    check_attention(&mut gpu, &mut rng, &case);
}

// Gemma 3 270M's head shape (4 query heads, 1 KV head, head_dim 256) with
// a small window: prefills and chunks that cross the window's start,
// decodes far beyond it, block sizes smaller and larger than the window.
// The blocks before the window hold NaN: the kernel must not read them.
#[test]
fn sliding_window_attention_matches_cpu_and_skips_blocks_before_the_window() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(9);
    let seqs = &[(0, 7), (37, 1), (9, 6), (3, 1), (4, 1)];
    for block_size in [4, 16] {
        let case = AttentionCase { head_dim: 256, hq: 4, hkv: 1, block_size, sliding_window: 5, seqs };
        check_attention(&mut gpu, &mut rng, &case);
    }
    // GQA with groups of 3, a window of one (each token sees itself only),
    // and a window wider than every position (plain causal); the 19-token
    // chunk's queries go eight together, each with its own window.
    let seqs = &[(0, 3), (21, 2), (40, 1), (30, 19)];
    for sliding_window in [1, 64] {
        let case = AttentionCase { head_dim: 32, hq: 6, hkv: 2, block_size: 4, sliding_window, seqs };
        check_attention(&mut gpu, &mut rng, &case);
    }
}

/// PyTorch's gelu(x, approximate="tanh"), in f64.
fn gelu_tanh_cpu(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

// Tolerance 1e-5: exp or tanh of the driver, a few roundings.
#[test]
fn glu_matches_cpu_for_silu_and_gelu_tanh() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(7);
    let (m, inter) = (3usize, 136usize);
    let mut gate_up = random_f32(&mut rng, m * 2 * inter, 8.0);
    // Extremes: exp overflow must still give silu = -0; tanh of a huge
    // argument (and x^3 overflowing f32) must give GELU = x or -0, not NaN.
    for (c, g) in [-100.0f32, 100.0, -1e4, 1e4, -1e20, 1e20, 0.0].into_iter().enumerate() {
        gate_up[c] = g;
        gate_up[inter + c] = 1.5;
    }
    for activation in [GluActivation::Silu, GluActivation::GeluTanh] {
        let key = GluKey { intermediate: inter as u32, activation };
        let step = gpu.step(m as u32, 1, 1);
        let (gb, out) = (gpu.f32s(&gate_up), gpu.zeros(m * inter));
        let bindings = GluBindings { step: &step, gate_up: &gb, out: &out };
        gpu.run(KernelKey::Glu(key), &bindings.in_binding_order(), key.workgroups(m as u32));
        let got = gpu.read_f32(&out, m * inter);
        let want: Vec<f32> = (0..m * inter)
            .map(|i| {
                let (t, c) = (i / inter, i % inter);
                let g = gate_up[t * 2 * inter + c] as f64;
                let u = gate_up[t * 2 * inter + inter + c] as f64;
                let act = match activation {
                    GluActivation::Silu => g / (1.0 + (-g).exp()),
                    GluActivation::GeluTanh => gelu_tanh_cpu(g),
                };
                (act * u) as f32
            })
            .collect();
        assert_close(&format!("glu {activation:?}"), &got, &want, 1e-5, 1e-5);
    }
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

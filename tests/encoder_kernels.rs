//! The encoder (BERT) kernels against plain Rust references on random
//! inputs with odd sizes: input embeddings, LayerNorm, exact GELU,
//! bidirectional varlen attention, pooling. (The matmul's bias is tested
//! with the other matmul variants in `kernels.rs`.) References compute in
//! f64; tolerances are stated per test.

mod common;

use common::gpu::{Harness, assert_close};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgserve::gpu::KernelKey;
use wgserve::gpu::kernels::encoder_attention::EncoderAttentionKey;
use wgserve::gpu::kernels::encoder_embedding::EncoderEmbeddingKey;
use wgserve::gpu::kernels::gelu::GeluKey;
use wgserve::gpu::kernels::layernorm::LayerNormKey;
use wgserve::gpu::kernels::pooling::PoolingKey;

fn random_f32(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

/// `seq_start` of sequences of these lengths: [0, l0, l0 + l1, ..., M].
fn seq_starts(lengths: &[usize]) -> Vec<u32> {
    let mut starts = vec![0u32];
    for &len in lengths {
        starts.push(starts.last().copied().unwrap_or(0) + len as u32);
    }
    starts
}

fn token_seqs(lengths: &[usize]) -> Vec<u32> {
    lengths.iter().enumerate().flat_map(|(s, &len)| std::iter::repeat_n(s as u32, len)).collect()
}

// Exact: one f32 sum of three values, in the reference's order.
#[test]
fn encoder_embedding_adds_word_position_and_type_rows() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(11);
    let (vocab, max_positions, type_vocab, hidden) = (53usize, 19usize, 2usize, 36usize);
    let word = random_f32(&mut rng, vocab * hidden, 1.0);
    let position = random_f32(&mut rng, max_positions * hidden, 1.0);
    let token_type = random_f32(&mut rng, type_vocab * hidden, 1.0);
    let m = 13usize;
    let ids: Vec<u32> = (0..m).map(|_| rng.random_range(0..vocab as u32)).collect();
    let positions: Vec<u32> = (0..m).map(|_| rng.random_range(0..max_positions as u32)).collect();
    let types: Vec<u32> = (0..m).map(|_| rng.random_range(0..type_vocab as u32)).collect();
    let key = EncoderEmbeddingKey {
        hidden: hidden as u32,
        vocab: vocab as u32,
        max_positions: max_positions as u32,
        type_vocab: type_vocab as u32,
    };
    let step = gpu.step(m as u32, 1, 1);
    let bufs = [
        gpu.u32s(&ids),
        gpu.u32s(&positions),
        gpu.u32s(&types),
        gpu.f32s(&word),
        gpu.f32s(&position),
        gpu.f32s(&token_type),
        gpu.zeros(m * hidden),
    ];
    let refs: Vec<_> = std::iter::once(&step).chain(bufs.iter()).collect();
    gpu.run(KernelKey::EncoderEmbedding(key), &refs, key.workgroups(m as u32));
    let got = gpu.read_f32(&bufs[6], m * hidden);
    let want: Vec<f32> = (0..m * hidden)
        .map(|i| {
            let (t, c) = (i / hidden, i % hidden);
            word[ids[t] as usize * hidden + c]
                + position[positions[t] as usize * hidden + c]
                + token_type[types[t] as usize * hidden + c]
        })
        .collect();
    assert_eq!(got, want);
}

fn layernorm_cpu(row: &[f32], weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let variance = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let scale = 1.0 / (variance + eps as f64).sqrt();
    row.iter()
        .zip(weight.iter().zip(bias))
        .map(|(&v, (&w, &b))| ((v as f64 - mean) * scale * w as f64 + b as f64) as f32)
        .collect()
}

// Tolerance 1e-5: f32 sums over a row of 100, a sqrt. A row with a large
// offset (mean 100, spread 3) checks that the variance is taken around the
// mean: E[x^2] - E[x]^2 in f32 would be off by about 1e-3 there.
#[test]
fn layernorm_matches_cpu_in_place() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(12);
    let (rows, hidden) = (21usize, 100usize);
    let mut x = random_f32(&mut rng, rows * hidden, 3.0);
    for v in &mut x[2 * hidden..3 * hidden] {
        *v += 100.0;
    }
    let weight = random_f32(&mut rng, hidden, 2.0);
    let bias = random_f32(&mut rng, hidden, 1.0);
    for eps in [1e-12f32, 1e-5] {
        let key = LayerNormKey { hidden: hidden as u32, eps_bits: eps.to_bits() };
        let step = gpu.step(rows as u32, 1, 1);
        let (xb, wb, bb) = (gpu.f32s(&x), gpu.f32s(&weight), gpu.f32s(&bias));
        gpu.run(KernelKey::LayerNorm(key), &[&step, &xb, &wb, &bb], key.workgroups(rows as u32));
        let got = gpu.read_f32(&xb, rows * hidden);
        let want: Vec<f32> =
            x.chunks(hidden).flat_map(|row| layernorm_cpu(row, &weight, &bias, eps)).collect();
        assert_close(&format!("layernorm eps={eps}"), &got, &want, 1e-5, 1e-5);
    }
}

fn gelu_cpu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
}

// Tolerance 2e-7 absolute + 1e-6 relative (a few f32 ulps): the WGSL erf
// is FreeBSD's erff, within about 1 ulp; the reference is erf in f64.
// Inputs cover every interval of the erf approximation (|x| / sqrt(2)
// below 2^-28, below 0.84375, below 1.25, below 1 / 0.35, below 6, and
// above), both signs, and random values.
#[test]
fn gelu_is_exact_erf_gelu() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(13);
    let mut x: Vec<f32> = vec![
        0.0, 1e-12, -1e-12, 1e-9, 0.5, -0.5, 1.19, -1.19, 1.2, -1.2, 1.5, -1.5, 1.77, -1.77, 1.8, -1.8, 3.0,
        -3.0, 4.04, -4.04, 4.05, -4.05, 6.0, -6.0, 8.48, -8.48, 8.5, -8.5, 12.0, -12.0, 40.0, -40.0,
    ];
    let (rows, columns) = (7usize, 52usize);
    x.extend(random_f32(&mut rng, rows * columns - x.len(), 10.0));
    let key = GeluKey { columns: columns as u32 };
    let step = gpu.step(rows as u32, 1, 1);
    let xb = gpu.f32s(&x);
    gpu.run(KernelKey::Gelu(key), &[&step, &xb], key.workgroups(rows as u32));
    let got = gpu.read_f32(&xb, rows * columns);
    let want: Vec<f32> = x.iter().map(|&v| gelu_cpu(v)).collect();
    assert_close("gelu", &got, &want, 2e-7, 1e-6);
}

// Tolerance 1e-5: softmax in f32 with an online rescaling, against f64.
#[test]
fn encoder_attention_sees_exactly_its_own_sequence() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(14);
    let (head_dim, heads) = (20usize, 3usize);
    // A one-token sequence, odd lengths, and one longer than a workgroup.
    let lengths = [5usize, 1, 17, 3];
    let m: usize = lengths.iter().sum();
    let width = heads * head_dim;
    let qkv = random_f32(&mut rng, m * 3 * width, 2.0);
    let (starts, seqs) = (seq_starts(&lengths), token_seqs(&lengths));
    let key = EncoderAttentionKey { head_dim: head_dim as u32, n_heads: heads as u32 };
    let step = gpu.step(m as u32, lengths.len() as u32, 1);
    let bufs = [gpu.f32s(&qkv), gpu.u32s(&seqs), gpu.u32s(&starts), gpu.zeros(m * width)];
    let refs: Vec<_> = std::iter::once(&step).chain(bufs.iter()).collect();
    gpu.run(KernelKey::EncoderAttention(key), &refs, key.workgroups(m as u32));
    let got = gpu.read_f32(&bufs[3], m * width);

    let mut want = vec![0f32; m * width];
    let at = |t: usize, part: usize, h: usize| t * 3 * width + part * width + h * head_dim;
    for t in 0..m {
        let seq = seqs[t] as usize;
        let keys = starts[seq] as usize..starts[seq + 1] as usize;
        for h in 0..heads {
            let q = &qkv[at(t, 0, h)..][..head_dim];
            let scores: Vec<f64> = keys
                .clone()
                .map(|j| {
                    let k = &qkv[at(j, 1, h)..][..head_dim];
                    q.iter().zip(k).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>()
                        / (head_dim as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..head_dim {
                let v: f64 = keys.clone().zip(&weights).map(|(j, w)| w * qkv[at(j, 2, h) + d] as f64).sum();
                want[t * width + h * head_dim + d] = (v / total) as f32;
            }
        }
    }
    assert_close("encoder attention", &got, &want, 1e-5, 1e-5);
}

// Tolerance 1e-5: f32 sums over up to 17 rows and a norm.
#[test]
fn pooling_means_or_takes_the_first_token_then_normalises() {
    let mut gpu = Harness::new();
    let mut rng = StdRng::seed_from_u64(15);
    let hidden = 44usize;
    let lengths = [3usize, 1, 17, 2, 9];
    let m: usize = lengths.iter().sum();
    let hidden_states = random_f32(&mut rng, m * hidden, 4.0);
    let starts = seq_starts(&lengths);
    for mean in [true, false] {
        for normalize in [true, false] {
            let key = PoolingKey { hidden: hidden as u32, mean, normalize };
            let step = gpu.step(m as u32, lengths.len() as u32, 1);
            let (hb, sb, out) =
                (gpu.f32s(&hidden_states), gpu.u32s(&starts), gpu.zeros(lengths.len() * hidden));
            gpu.run(KernelKey::Pooling(key), &[&step, &hb, &sb, &out], key.workgroups(lengths.len() as u32));
            let got = gpu.read_f32(&out, lengths.len() * hidden);
            let mut want = Vec::new();
            for (s, &len) in lengths.iter().enumerate() {
                let rows = if mean { len } else { 1 };
                let first = starts[s] as usize;
                let mut pooled: Vec<f64> = (0..hidden)
                    .map(|c| {
                        (0..rows).map(|r| hidden_states[(first + r) * hidden + c] as f64).sum::<f64>()
                            / rows as f64
                    })
                    .collect();
                if normalize {
                    let norm = pooled.iter().map(|v| v * v).sum::<f64>().sqrt();
                    pooled.iter_mut().for_each(|v| *v /= norm);
                }
                want.extend(pooled.iter().map(|&v| v as f32));
            }
            assert_close(&format!("pooling mean={mean} normalize={normalize}"), &got, &want, 1e-5, 1e-5);
        }
    }
}

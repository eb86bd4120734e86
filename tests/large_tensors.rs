//! Tensors larger than one storage binding: `GpuMatrix` splits them into
//! row chunks and `MatmulOp` / `EmbeddingOp` run one dispatch per chunk.
//! With a forced small binding limit, small random matrices split as the
//! real limit splits big ones, and must equal the unchunked CPU reference;
//! then Gemma 3's 171 MiB embedding table, over lavapipe's (and WebGPU's
//! default) 128 MiB, as the embedding lookup and the tied output head.

mod common;

use std::path::{Path, PathBuf};

use common::gpu::{FAMILIES, Harness, assert_close};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgserve::formats::TensorType;
use wgserve::gpu::kernels::KernelFamily;
use wgserve::gpu::{GpuContext, GpuError, PipelineCache};
use wgserve::model::dequantize::dequantize;
use wgserve::model::embedding::EmbeddingOp;
use wgserve::model::matmul::{GpuMatrix, MatmulOp};
use wgserve::model::source::WeightSource;
use wgserve::model::weights::{PackedMatrix, pack_matrix};

/// A harness whose context plans with at most `limit` bytes per binding
/// and builds `family`'s matmul kernels.
fn harness_with_limit(limit: u64, family: KernelFamily) -> Harness {
    let ctx = GpuContext::new()
        .expect("a wgpu adapter (run scripts/setup.sh for software Vulkan)")
        .with_max_storage_binding(limit)
        .with_kernels(Some(family));
    Harness { ctx, cache: PipelineCache::new() }
}

fn random_f32(rng: &mut StdRng, len: usize, scale: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Random GGML bytes of a `[rows, cols]` tensor: floats, or random blocks
/// whose f16 scale fields are set to small finite values.
fn random_tensor_bytes(rng: &mut StdRng, tensor_type: TensorType, rows: usize, cols: usize) -> Vec<u8> {
    let elements = rows * cols;
    let (f16_fields, scale): (&[usize], f32) = match tensor_type {
        TensorType::F32 => {
            return random_f32(rng, elements, 1.0).iter().flat_map(|v| v.to_le_bytes()).collect();
        }
        TensorType::Q8_0 => (&[0], 0.02),
        TensorType::Q4_K => (&[0, 2], 0.002),
        TensorType::Q6_K => (&[208], 0.0003),
        other => panic!("no random blocks for {other}"),
    };
    let mut bytes = Vec::new();
    for _ in 0..elements / tensor_type.block_len() {
        let mut block: Vec<u8> = (0..tensor_type.block_bytes()).map(|_| rng.random()).collect();
        for &at in f16_fields {
            block[at..at + 2]
                .copy_from_slice(&f16::from_f32(rng.random_range(-scale..scale)).to_bits().to_le_bytes());
        }
        bytes.extend(block);
    }
    bytes
}

/// Bytes of the larger of a row's data and scales, which a chunk holds per row.
fn row_bytes(packed: &PackedMatrix) -> u64 {
    4 * packed.data_words_per_row().max(packed.scale_words_per_row()) as u64
}

fn run(gpu: &Harness, record: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
    let mut encoder = gpu.ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        record(&mut pass);
    }
    gpu.ctx.queue.submit([encoder.finish()]);
}

fn matmul_cpu(w: &[f32], x: &[f32], rows: usize, cols: usize, tokens: usize) -> Vec<f64> {
    let mut y = vec![0f64; tokens * rows];
    for t in 0..tokens {
        for r in 0..rows {
            y[t * rows + r] = (0..cols).map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64).sum();
        }
    }
    y
}

const FORMATS: [(TensorType, usize); 4] =
    [(TensorType::F32, 96), (TensorType::Q8_0, 160), (TensorType::Q4_K, 512), (TensorType::Q6_K, 256)];

/// 333 rows, limits of 111 rows (three chunks of 111: a chunk border
/// inside a row tile) and of 120 rows (chunks of 112, 112 and 109).
const ROWS: usize = 333;
const LIMIT_ROWS: [u64; 2] = [111, 120];

// Tolerance as tests/kernels.rs: f32 sums in another order than the reference.
#[test]
fn chunked_matmul_matches_cpu_for_formats_tiles_accumulate_and_bias() {
    let mut rng = StdRng::seed_from_u64(11);
    for (tensor_type, cols) in FORMATS {
        let bytes = random_tensor_bytes(&mut rng, tensor_type, ROWS, cols);
        let packed = pack_matrix("w", tensor_type, &bytes, ROWS, cols).unwrap();
        let w = dequantize(&packed);
        let bias = random_f32(&mut rng, ROWS, 1.0);
        for (limit_rows, family) in LIMIT_ROWS.into_iter().flat_map(|l| FAMILIES.map(|f| (l, f))) {
            let mut gpu = harness_with_limit(limit_rows * row_bytes(&packed), family);
            let weight = GpuMatrix::upload(&gpu.ctx, "w", packed.clone()).unwrap();
            assert_eq!(weight.chunks.len(), 3, "{tensor_type}: chunks under {limit_rows} rows");
            let with_bias = weight.clone().with_bias(&gpu.ctx, "bias", &bias).unwrap();
            // 1 token: the 8-row matvec tile; 7: two 4x4 tiles, one partial.
            for tokens in [1usize, 7] {
                let x = random_f32(&mut rng, tokens * cols, 1.0);
                let y0 = random_f32(&mut rng, tokens * ROWS, 1.0);
                let product = matmul_cpu(&w, &x, ROWS, cols, tokens);
                for (accumulate, biased) in [(false, false), (true, false), (false, true), (true, true)] {
                    let step = gpu.step(tokens as u32, 1, 1);
                    let (xb, yb) = (gpu.f32s(&x), gpu.f32s(&y0));
                    let matrix = if biased { with_bias.clone() } else { weight.clone() };
                    let op = MatmulOp::new(&gpu.ctx, &mut gpu.cache, matrix, &step, &xb, &yb, accumulate);
                    run(&gpu, |pass| op.record(pass, tokens as u32));
                    let got = gpu.read_f32(&yb, tokens * ROWS);
                    let want: Vec<f32> = (0..tokens * ROWS)
                        .map(|i| {
                            product[i] as f32
                                + if accumulate { y0[i] } else { 0.0 }
                                + if biased { bias[i % ROWS] } else { 0.0 }
                        })
                        .collect();
                    let what = format!(
                        "matmul {tensor_type} [{ROWS}, {cols}] in chunks of <= {limit_rows} rows, \
                         {tokens} tokens, accumulate {accumulate}, bias {biased}, {family:?} kernels"
                    );
                    assert_close(&what, &got, &want, 1e-4, 1e-4);
                }
            }
        }
    }
}

/// `table` rows `ids`, each value times `scale`, as the CPU reference.
fn lookup_cpu(packed: &PackedMatrix, ids: &[u32], scale: f32) -> Vec<f32> {
    ids.iter()
        .flat_map(|&id| {
            let row = (id as usize).min(packed.rows - 1);
            dequantize(&packed.slice_rows(row..row + 1)).into_iter().map(move |v| v * scale)
        })
        .collect()
}

fn lookup_gpu(gpu: &mut Harness, table: &GpuMatrix, ids: &[u32], scale: f32) -> Vec<f32> {
    let step = gpu.step(ids.len() as u32, 1, 1);
    let (idb, out) = (gpu.u32s(ids), gpu.zeros(ids.len() * table.cols));
    let op = EmbeddingOp::new(&gpu.ctx, &mut gpu.cache, table, &step, &idb, &out, scale);
    run(gpu, |pass| op.record(pass, ids.len() as u32));
    gpu.read_f32(&out, ids.len() * table.cols)
}

// Exact up to the last bit of the scale multiply: one multiply-add per
// weight and one multiply, as in the reference.
#[test]
fn chunked_embedding_lookup_matches_cpu_with_scale() {
    let mut rng = StdRng::seed_from_u64(12);
    for (tensor_type, cols) in FORMATS {
        let bytes = random_tensor_bytes(&mut rng, tensor_type, ROWS, cols);
        let packed = pack_matrix("table", tensor_type, &bytes, ROWS, cols).unwrap();
        for limit_rows in LIMIT_ROWS {
            let mut gpu = harness_with_limit(limit_rows * row_bytes(&packed), KernelFamily::Cpu);
            let table = GpuMatrix::upload(&gpu.ctx, "table", packed.clone()).unwrap();
            assert_eq!(table.chunks.len(), 3);
            // The first and last rows, both sides of each chunk border,
            // random ones, and an id past the table (clamped to the last row).
            let mut ids: Vec<u32> = vec![0, ROWS as u32 - 1, 400];
            for chunk in &table.chunks[1..] {
                ids.extend([chunk.row_start as u32 - 1, chunk.row_start as u32, chunk.row_start as u32 + 1]);
            }
            ids.extend((0..2).map(|_| rng.random_range(0..ROWS as u32)));
            for scale in [1.0, (cols as f32).sqrt()] {
                let got = lookup_gpu(&mut gpu, &table, &ids, scale);
                let want = lookup_cpu(&packed, &ids, scale);
                let what =
                    format!("embedding {tensor_type} in chunks of <= {limit_rows} rows, scale {scale}");
                assert_close(&what, &got, &want, 1e-6, 1e-6);
            }
        }
    }
}

#[test]
fn a_row_larger_than_the_limit_is_an_error() {
    let mut rng = StdRng::seed_from_u64(13);
    let bytes = random_tensor_bytes(&mut rng, TensorType::F32, 4, 96);
    let packed = pack_matrix("w", TensorType::F32, &bytes, 4, 96).unwrap();
    let gpu = harness_with_limit(96 * 4 - 4, KernelFamily::Cpu);
    let result = GpuMatrix::upload(&gpu.ctx, "w", packed);
    assert!(matches!(result, Err(GpuError::BindingTooLarge { needed: 384, .. })), "one row needs 384 bytes");
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gemma_path() -> PathBuf {
    let path = root().join("models/gemma3-270m/gemma-3-270m-q4_k_m.gguf");
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh --test` first", path.display());
    path
}

/// Gemma 3 270M's token_embd (Q8_0, 262144 x 640, 171 MiB) under a
/// 128 MiB binding limit, WebGPU's default and lavapipe's (forced, so a
/// GPU with a larger limit splits it too): the lookup, scaled by
/// sqrt(hidden) as Gemma does, and the tied output head's matmul.
#[test]
fn gemma3_embedding_table_over_128_mib_splits_for_lookup_and_output_head() {
    let source = WeightSource::open(&gemma_path()).unwrap();
    let (vocab, hidden) = (262_144usize, 640usize);
    let raw = source.require("token_embd.weight", &[vocab, hidden]).unwrap();
    assert_eq!(raw.tensor_type, TensorType::Q8_0);
    let packed = pack_matrix("token_embd.weight", raw.tensor_type, raw.data, vocab, hidden).unwrap();
    let limit = 128u64 << 20;
    assert!(packed.data.len() as u64 * 4 > limit, "the table is over one binding");
    let mut gpu = harness_with_limit(limit, KernelFamily::Cpu);
    let table = GpuMatrix::upload(&gpu.ctx, "token_embd", packed.clone()).unwrap();
    assert!(table.chunks.len() >= 2, "split into {} chunks", table.chunks.len());
    assert_eq!(table.chunks.iter().map(|c| c.rows).sum::<usize>(), vocab);

    // Lookup: the first and last ids and both sides of each chunk border.
    let mut ids: Vec<u32> = vec![0, 1, 2, vocab as u32 - 1];
    for chunk in &table.chunks[1..] {
        let start = chunk.row_start as u32;
        ids.extend([start - 2, start - 1, start, start + 1]);
    }
    let scale = (hidden as f32).sqrt();
    let got = lookup_gpu(&mut gpu, &table, &ids, scale);
    assert_close("gemma3 token_embd lookup", &got, &lookup_cpu(&packed, &ids, scale), 1e-6, 1e-6);

    // The tied output head: logits of one hidden state over all rows, with
    // each kernel family's matvec.
    let mut rng = StdRng::seed_from_u64(14);
    let x = random_f32(&mut rng, hidden, 1.0);
    let mut want = Vec::with_capacity(vocab);
    for start in (0..vocab).step_by(8192) {
        let rows = dequantize(&packed.slice_rows(start..start + 8192));
        want.extend(matmul_cpu(&rows, &x, 8192, hidden, 1).into_iter().map(|v| v as f32));
    }
    for family in FAMILIES {
        let mut gpu = harness_with_limit(limit, family);
        let table = GpuMatrix::upload(&gpu.ctx, "token_embd", packed.clone()).unwrap();
        let step = gpu.step(1, 1, 1);
        let (xb, yb) = (gpu.f32s(&x), gpu.zeros(vocab));
        let op = MatmulOp::new(&gpu.ctx, &mut gpu.cache, table, &step, &xb, &yb, false);
        run(&gpu, |pass| op.record(pass, 1));
        let got = gpu.read_f32(&yb, vocab);
        assert_close(&format!("gemma3 tied output head, {family:?} kernels"), &got, &want, 1e-4, 1e-4);
    }
}

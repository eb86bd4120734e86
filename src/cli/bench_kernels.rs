//! `wgserve bench --kernels`: the decode matvec (8 rows x 1 token tile) of
//! every weight format on one random `[rows, cols]` matrix, in one run, as
//! GB/s of packed weight bytes read. The formats take turns over several
//! rounds, so their ratios hold even on a shared machine. Each figure is
//! the best round: one submission of many dispatches, ended by a wait.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgserve::formats::TensorType;
use wgserve::gpu::kernels::StepParams;
use wgserve::gpu::{GpuBuffer, GpuContext, PipelineCache};
use wgserve::model::matmul::{GpuMatrix, MatmulOp};
use wgserve::model::weights::pack_matrix;

const FORMATS: [TensorType; 13] = [
    TensorType::F16,
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

/// Timed submissions per format; the best counts (the first pays for the
/// driver's pipeline setup, and other processes disturb some).
const ROUNDS: usize = 8;

/// Random blocks; clearing bit 6 of every byte keeps each f16 (scales,
/// F16 weights) finite. The values do not matter to the speed.
fn random_bytes(rng: &mut StdRng, tensor_type: TensorType, elements: usize) -> anyhow::Result<Vec<u8>> {
    let len = tensor_type
        .size_in_bytes(elements as u64)
        .ok_or_else(|| anyhow::anyhow!("{elements} weights are not whole {tensor_type} blocks"))?;
    Ok((0..len).map(|_| rng.random::<u8>() & 0xBF).collect())
}

pub fn run(ctx: &GpuContext, rows: usize, cols: usize, dispatches: u32) -> anyhow::Result<()> {
    anyhow::ensure!(cols.is_multiple_of(256) && rows > 0, "--kernel-cols must be a multiple of 256");
    let mut cache = PipelineCache::new();
    let mut rng = StdRng::seed_from_u64(7);
    let step = GpuBuffer::uniform(ctx, "step", std::mem::size_of::<StepParams>() as u64);
    step.write(
        ctx,
        bytemuck::bytes_of(&StepParams { num_tokens: 1, num_seqs: 1, max_blocks_per_seq: 1, _pad: 0 }),
    );
    let x_values: Vec<f32> = (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = GpuBuffer::storage_init(ctx, "x", bytemuck::cast_slice(&x_values))?; // [1, cols] f32
    let y = GpuBuffer::storage_zeroed(ctx, "y", (rows * 4) as u64)?; // [1, rows] f32
    println!("matvec [{rows}, {cols}] x 1 token, {dispatches} dispatches per submission:");
    let mut ops = Vec::new();
    for tensor_type in FORMATS {
        let bytes = random_bytes(&mut rng, tensor_type, rows * cols)?;
        let packed = pack_matrix("bench", tensor_type, &bytes, rows, cols)?;
        let weight = GpuMatrix::upload(ctx, "bench", packed)?;
        ops.push((tensor_type, MatmulOp::new(ctx, &mut cache, weight, &step, &x, &y, false)));
    }
    // Rounds over all formats in turn, so that a busy moment of the
    // machine falls on every format alike; the best round counts.
    let mut best = vec![f64::INFINITY; ops.len()];
    for _ in 0..ROUNDS {
        for ((_, op), best) in ops.iter().zip(&mut best) {
            let started = Instant::now();
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for _ in 0..dispatches {
                    op.record(&mut pass, 1);
                }
            }
            ctx.queue.submit([encoder.finish()]);
            ctx.wait()?;
            *best = best.min(started.elapsed().as_secs_f64() / dispatches as f64);
        }
    }
    for ((tensor_type, op), best) in ops.iter().zip(best) {
        println!(
            "  {:<6} {:6.2} MiB packed ({:.2} bits/weight): {:7.3} ms, {:5.2} GB/s",
            tensor_type.name(),
            op.weight_bytes() as f64 / (1 << 20) as f64,
            op.weight_bytes() as f64 * 8.0 / (rows * cols) as f64,
            best * 1e3,
            op.weight_bytes() as f64 / best / 1e9
        );
    }
    Ok(())
}

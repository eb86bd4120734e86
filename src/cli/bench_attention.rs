//! `wgserve bench --kernels`, second part: the attention kernels alone at
//! several context depths, on random keys and values in f16, f32 and q8_0
//! caches with SmolLM2-135M's head shape (9 query heads, 3 KV heads, head
//! size 64). Decode: one query that sees `depth` keys (the split passes
//! and their combine, or the GPU family's pass). Prefill: a chunk of
//! `CHUNK` queries whose last sees `depth` keys. As in the matvec part, the
//! cases take turns over rounds and the best round counts.

use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgserve::gpu::kernels::attention::{AttentionBindings, AttentionKey, AttentionPass};
use wgserve::gpu::kernels::{KernelFamily, StepParams};
use wgserve::gpu::kv_cache::KvCacheDtype;
use wgserve::gpu::pipelines::{Kernel, KernelKey};
use wgserve::gpu::{GpuBuffer, GpuContext, PipelineCache};

const HEAD_DIM: usize = 64;
const N_Q_HEADS: usize = 9;
const N_KV_HEADS: usize = 3;
const BLOCK_SIZE: usize = 16;
/// Queries of the prefill case: a chunk as the scheduler runs while requests decode.
const CHUNK: usize = 64;
const ROUNDS: usize = 6;

/// One timed case: the dispatches of a step's attention at one depth.
struct Case {
    name: String,
    depth: usize,
    dispatches: Vec<(Arc<Kernel>, wgpu::BindGroup, [u32; 3])>,
    // Kept alive for the bind groups.
    _buffers: Vec<GpuBuffer>,
}

/// `depths`: at least one, none zero (the caller checks).
pub fn run(ctx: &GpuContext, family: KernelFamily, depths: &[usize], repeats: u32) -> anyhow::Result<()> {
    let mut cache = PipelineCache::new();
    let mut rng = StdRng::seed_from_u64(11);
    let mut cases = Vec::new();
    for dtype in [KvCacheDtype::F16, KvCacheDtype::F32, KvCacheDtype::Q8_0] {
        for &depth in depths {
            for (kind, tokens) in [("decode", 1), ("prefill", CHUNK)] {
                let shape = Shape { dtype, kind, depth, tokens: tokens.min(depth) };
                cases.push(case(ctx, &mut cache, &mut rng, family, shape)?);
            }
        }
    }
    let mut best = vec![f64::INFINITY; cases.len()];
    for _ in 0..ROUNDS {
        for (case, best) in cases.iter().zip(&mut best) {
            let started = Instant::now();
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for _ in 0..repeats {
                    for (kernel, bind_group, workgroups) in &case.dispatches {
                        kernel.dispatch(&mut pass, bind_group, *workgroups);
                    }
                }
            }
            ctx.queue.submit([encoder.finish()]);
            ctx.wait()?;
            *best = best.min(started.elapsed().as_secs_f64() / repeats as f64);
        }
    }
    println!(
        "attention, {N_Q_HEADS} query heads, {N_KV_HEADS} KV heads, head size {HEAD_DIM}, one sequence ({family:?} family):"
    );
    for (case, time) in cases.iter().zip(&best) {
        let first = cases.iter().position(|c| c.name == case.name).map_or(*time, |i| best[i]);
        println!(
            "  {:<25} at depth {:>5}: {:8.3} ms ({:.2}x the speed at depth {})",
            case.name,
            case.depth,
            time * 1e3,
            first / time,
            depths[0]
        );
    }
    Ok(())
}

/// What one case runs: `tokens` queries, the last seeing `depth` keys.
struct Shape {
    dtype: KvCacheDtype,
    kind: &'static str,
    depth: usize,
    tokens: usize,
}

fn case(
    ctx: &GpuContext,
    cache: &mut PipelineCache,
    rng: &mut StdRng,
    family: KernelFamily,
    shape: Shape,
) -> anyhow::Result<Case> {
    let Shape { dtype, kind, depth, tokens } = shape;
    let blocks = depth.div_ceil(BLOCK_SIZE);
    let cache_words = blocks * BLOCK_SIZE * N_KV_HEADS * dtype.row_words(HEAD_DIM);
    // Finite values whichever the dtype: f16 halves and f32 words with
    // exponent bits below 15 (q8_0 scales are f16 too).
    let random_halves = |rng: &mut StdRng| -> Vec<u32> {
        (0..cache_words).map(|_| rng.random::<u32>() & 0xBBFF_BBFF).collect()
    };
    let k_cache = GpuBuffer::storage_init(ctx, "k", bytemuck::cast_slice(&random_halves(rng)))?;
    let v_cache = GpuBuffer::storage_init(ctx, "v", bytemuck::cast_slice(&random_halves(rng)))?;
    let block_table: Vec<u32> = (0..blocks as u32).collect();
    let block_tables = GpuBuffer::storage_init(ctx, "block_tables", bytemuck::cast_slice(&block_table))?;
    let token_seq = GpuBuffer::storage_init(ctx, "token_seq", bytemuck::cast_slice(&vec![0u32; tokens]))?;
    let positions: Vec<u32> = ((depth - tokens) as u32..depth as u32).collect();
    let positions = GpuBuffer::storage_init(ctx, "positions", bytemuck::cast_slice(&positions))?;
    let row = (N_Q_HEADS + 2 * N_KV_HEADS) * HEAD_DIM;
    let qkv: Vec<f32> = (0..tokens * row).map(|_| rng.random_range(-1.0..1.0)).collect();
    let qkv = GpuBuffer::storage_init(ctx, "qkv", bytemuck::cast_slice(&qkv))?;
    let out = GpuBuffer::storage_zeroed(ctx, "out", (tokens * N_Q_HEADS * HEAD_DIM * 4) as u64)?;
    let partials_len = AttentionPass::partials_len(tokens, N_Q_HEADS, HEAD_DIM);
    let partials = GpuBuffer::storage_zeroed(ctx, "partials", (partials_len * 4) as u64)?;
    let step = GpuBuffer::uniform(ctx, "step", std::mem::size_of::<StepParams>() as u64);
    step.write(
        ctx,
        bytemuck::bytes_of(&StepParams {
            num_tokens: tokens as u32,
            num_seqs: 1,
            max_blocks_per_seq: blocks as u32,
            _pad: 0,
        }),
    );
    let mut dispatches = Vec::new();
    // One sequence: a decode (one query) or a prompt chunk.
    let passes = AttentionPass::for_step(family, tokens as u32, 1);
    for &pass in passes {
        let key = AttentionKey {
            head_dim: HEAD_DIM as u32,
            n_q_heads: N_Q_HEADS as u32,
            n_kv_heads: N_KV_HEADS as u32,
            block_size: BLOCK_SIZE as u32,
            sliding_window: 0,
            pass,
            kv_dtype: dtype,
            subgroups: ctx.kernel_subgroups(),
        };
        let bindings = AttentionBindings {
            step: &step,
            qkv: &qkv,
            k_cache: &k_cache,
            v_cache: &v_cache,
            block_tables: &block_tables,
            token_seq: &token_seq,
            positions: &positions,
            out: &out,
            partials: pass.uses_partials().then_some(&partials),
        };
        let kernel = cache.get(ctx, KernelKey::Attention(key));
        let bind_group = kernel.bind(ctx, &bindings);
        dispatches.push((kernel, bind_group, key.workgroups(tokens as u32)));
    }
    let name = if tokens == 1 { kind.to_string() } else { format!("{kind}, {tokens} queries") };
    let name = format!("{} {name}", dtype.name());
    Ok(Case {
        name,
        depth,
        dispatches,
        _buffers: vec![k_cache, v_cache, block_tables, token_seq, positions, qkv, out, partials, step],
    })
}

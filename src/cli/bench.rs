//! `wgserve bench`: prompt throughput on a 512-token prompt, generation
//! throughput at batch 1, and aggregate generation with 8 and 32 sequences
//! decoding together. One line per figure; the clock stops only after the
//! GPU's results are read back (every step ends with a readback).
//!
//! The baseline, measured in the same run: how often per second this adapter
//! copies the bytes of weights that a decode step reads. A decode step only
//! reads them (a copy also writes), so a memory-bound kernel set would
//! reach about 1x to 2x this rate at batch 1; the ratio is steadier on a
//! shared machine than absolute times.

use std::time::Instant;

use clap::Args;
use wgserve::engine::runner::{RunStats, Runner, SequenceRequest};
use wgserve::engine::sampler::SamplingParams;
use wgserve::gpu::{GpuBuffer, GpuContext};

use super::ModelArgs;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt length of the prefill figure.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens generated per sequence in the generation figures.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Batch sizes of the aggregate generation figures.
    #[arg(long, value_delimiter = ',', default_values_t = [8usize, 32])]
    batches: Vec<usize>,
}

/// A deterministic prompt of ordinary tokens (no control tokens).
fn prompt(len: usize, salt: usize, vocab: usize) -> Vec<u32> {
    (0..len).map(|i| (1000 + (i * 7919 + salt * 104_729) % (vocab - 1000)) as u32).collect()
}

fn requests(count: usize, prompt_len: usize, new_tokens: usize, vocab: usize) -> Vec<SequenceRequest> {
    (0..count)
        .map(|salt| SequenceRequest {
            prompt: prompt(prompt_len, salt, vocab),
            max_new_tokens: new_tokens,
            sampling: SamplingParams::default(),
            stop_token_ids: vec![],
        })
        .collect()
}

fn decode_rate(stats: &RunStats, sequences: usize) -> f64 {
    // The first token of each sequence comes out of the prefill step.
    (stats.generated_tokens - sequences) as f64 / stats.decode_time.as_secs_f64().max(1e-9)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let loaded = args.model.load()?;
    let vocab = loaded.llama.config.vocab_size;
    let mut runner = Runner::new(loaded.llama);
    // Warm-up: first dispatches of each pipeline pay for driver-side setup.
    runner.generate(&requests(1, 16, 4, vocab), |_, _| {})?;

    let weight_bytes = runner.model().matmul_weight_bytes();
    let bound = 1.0 / copy_seconds(runner.model().gpu(), weight_bytes)?;
    println!(
        "baseline, copying the {:.1} MiB of matmul weights: {bound:.1} copies/s",
        weight_bytes as f64 / (1 << 20) as f64
    );

    let (_, stats) = runner.generate(&requests(1, args.prompt_tokens, 1, vocab), |_, _| {})?;
    println!(
        "prompt, {} tokens: {:.1} tok/s",
        args.prompt_tokens,
        stats.prompt_tokens as f64 / stats.prefill_time.as_secs_f64().max(1e-9)
    );
    let (_, stats) = runner.generate(&requests(1, 16, args.gen_tokens, vocab), |_, _| {})?;
    let rate = decode_rate(&stats, 1);
    println!("generation, batch 1: {rate:.1} tok/s ({:.2}x the copy rate)", rate / bound);
    for &batch in &args.batches {
        let (_, stats) = runner.generate(&requests(batch, 16, args.gen_tokens, vocab), |_, _| {})?;
        println!("generation, batch {batch}: {:.1} tok/s aggregate", decode_rate(&stats, batch));
    }
    Ok(())
}

/// Seconds one GPU-side copy of `bytes` takes (best of a few).
fn copy_seconds(ctx: &GpuContext, bytes: u64) -> anyhow::Result<f64> {
    let chunk = bytes.min(ctx.max_storage_binding());
    let source = GpuBuffer::storage_zeroed(ctx, "bench source", chunk)?;
    let target = GpuBuffer::storage_zeroed(ctx, "bench target", chunk)?;
    let copies = bytes.div_ceil(chunk);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let started = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for _ in 0..copies {
            encoder.copy_buffer_to_buffer(&source.buffer, 0, &target.buffer, 0, chunk);
        }
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

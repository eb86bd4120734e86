//! `wgserve bench`: with `--url`, the serving load generator
//! (`serving_bench`), or with `--soak` too, the soak run (`soak`); otherwise, on a model loaded here: prompt throughput on a 512-token prompt, generation
//! throughput at batch 1, aggregate generation with 8 and 32 sequences
//! decoding together, and an offline throughput run of many requests
//! submitted at once against the same requests run one after another.
//! One line per figure; every step ends with a readback, so the clock
//! stops only after the GPU has finished.
//!
//! The baseline, measured in the same run: how often per second this adapter
//! copies the bytes of weights that a decode step reads. A decode step only
//! reads them (a copy also writes), so a memory-bound kernel set would
//! reach about 1x to 2x this rate at batch 1; the ratio is steadier on a
//! shared machine than absolute times.
//!
//! With `--embeddings` it measures the embedding model instead
//! (`bench_embeddings.rs`); with `--kernels`, the matvec of every weight
//! format on random weights (`bench_kernels.rs`); with `--profile`, after
//! the baseline, where a decode and a prefill step spend their time
//! (`bench_profile.rs`); with `--structured`, what a grammar costs a step
//! (`bench_structured.rs`).

use std::time::{Duration, Instant};

use clap::Args;
use wgserve::engine::core::EngineCore;
use wgserve::engine::request::{GenerateRequest, RequestOutput};
use wgserve::engine::sampler::SamplingParams;
use wgserve::gpu::{GpuBuffer, GpuContext};

use super::ModelArgs;
use super::serving_bench::ServingArgs;
use super::soak::SoakArgs;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    serving: ServingArgs,
    #[command(flatten)]
    soak: SoakArgs,
    /// Prompt length of the prefill figure.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens generated per sequence in the generation figures.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Batch sizes of the aggregate generation figures (with --profile: the batched decode steps profiled beside batch 1).
    #[arg(long, value_delimiter = ',', default_values_t = [8usize, 32])]
    batches: Vec<usize>,
    /// Context depths (prompt tokens) at which to measure the prompt rate
    /// and the generation rate after it, instead of the other figures,
    /// e.g. `--depths 100,1024,4096`; each is also given as a ratio to the
    /// first. With `--kernels`: the keys of its attention figures
    /// (default 512,1024,4096).
    #[arg(long, value_delimiter = ',')]
    depths: Vec<usize>,
    /// Requests of the offline throughput run (0 skips it).
    #[arg(long, default_value_t = 64)]
    offline_requests: usize,
    /// Of those, how many run one after another for the speed-up baseline
    /// (all of them alone would take long; each one alone costs the same).
    #[arg(long, default_value_t = 4)]
    sequential_sample: usize,
    /// Measure the embedding model's throughput instead of the chat model's.
    #[arg(long)]
    embeddings: bool,
    /// Measure the decode matvec of every weight format (GB/s), then the
    /// attention kernels alone at `--depths` (ms), instead.
    #[arg(long)]
    kernels: bool,
    /// Profile a decode step at position `--prompt-tokens` and that
    /// prompt's last prefill step by kernel kind instead of the
    /// throughput figures.
    #[arg(long)]
    profile: bool,
    /// Measure what constrained decoding (structured output, tool calls)
    /// costs per step, against free requests, at batch 1 and `--batches`.
    #[arg(long)]
    structured: bool,
    /// Rows of the `--kernels` matrix.
    #[arg(long, default_value_t = 4096, requires = "kernels")]
    kernel_rows: usize,
    /// Row length of the `--kernels` matrix (a multiple of 256).
    #[arg(long, default_value_t = 1536, requires = "kernels")]
    kernel_cols: usize,
    /// Dispatches per timed submission of `--kernels`.
    #[arg(long, default_value_t = 20, requires = "kernels")]
    kernel_dispatches: u32,
    /// The embedding model (default: all-MiniLM-L6-v2 from scripts/setup.sh).
    #[arg(long, value_name = "PATH", requires = "embeddings")]
    embedding_model: Option<std::path::PathBuf>,
    /// Inputs of the embedding figures.
    #[arg(long, default_value_t = 256, requires = "embeddings")]
    embedding_inputs: usize,
    /// Tokens per input of the embedding figures, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 32, requires = "embeddings")]
    embedding_tokens: usize,
    /// Inputs per forward pass of the embedding figures (1 is always measured).
    #[arg(long, value_delimiter = ',', default_values_t = [8usize, 32, 64, 256], requires = "embeddings")]
    embedding_batches: Vec<usize>,
}

/// A deterministic prompt of ordinary tokens (no control tokens).
pub(super) fn prompt(len: usize, salt: usize, vocab: usize) -> Vec<u32> {
    (0..len).map(|i| (1000 + (i * 7919 + salt * 104_729) % (vocab - 1000)) as u32).collect()
}

fn requests(count: usize, prompt_len: usize, new_tokens: usize, vocab: usize) -> Vec<GenerateRequest> {
    (0..count)
        .map(|salt| {
            // No stop tokens are sampled greedily from these prompts in
            // practice, but a stop would only shorten a run: count tokens.
            let params = SamplingParams { max_tokens: Some(new_tokens), ..SamplingParams::default() };
            GenerateRequest::new(prompt(prompt_len, salt, vocab), params)
        })
        .collect()
}

/// When each token arrived, per request.
pub(super) struct Timeline {
    started: Instant,
    tokens: Vec<Vec<Instant>>,
}

pub(super) fn run(core: &mut EngineCore, requests: Vec<GenerateRequest>) -> anyhow::Result<Timeline> {
    let mut tokens = vec![Vec::new(); requests.len()];
    let started = Instant::now();
    core.generate_all(requests, |id, output| {
        if let RequestOutput::Token(_) = output {
            tokens[id as usize].push(Instant::now());
        }
    })?;
    Ok(Timeline { started, tokens })
}

impl Timeline {
    fn end(&self) -> Instant {
        self.tokens.iter().flatten().max().copied().unwrap_or(self.started)
    }

    /// Tokens per second once every request has its first token (all
    /// prompts done): the decode rate of the whole batch.
    pub(super) fn decode_rate(&self) -> f64 {
        let all_started = self.tokens.iter().filter_map(|t| t.first()).max().copied().unwrap_or(self.started);
        let count = self.tokens.iter().flatten().filter(|&&t| t > all_started).count();
        count as f64 / (self.end() - all_started).as_secs_f64().max(1e-9)
    }

    fn total_tokens(&self) -> usize {
        self.tokens.iter().map(Vec::len).sum()
    }

    fn elapsed(&self) -> Duration {
        self.end() - self.started
    }
}

pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.soak.soak {
        return super::soak::run(&args.serving, &args.soak);
    }
    if args.serving.url().is_some() {
        return super::serving_bench::run(args.serving);
    }
    if args.embeddings {
        return super::bench_embeddings::run(
            args.embedding_model.as_deref(),
            args.embedding_inputs,
            args.embedding_tokens,
            &args.embedding_batches,
        );
    }
    if args.kernels {
        let depths = if args.depths.is_empty() { vec![512, 1024, 4096] } else { args.depths.clone() };
        anyhow::ensure!(!depths.contains(&0), "--depths: every depth must be at least one token");
        let ctx = args.model.open_gpu()?;
        super::bench_kernels::run(&ctx, args.kernel_rows, args.kernel_cols, args.kernel_dispatches)?;
        return super::bench_attention::run(&ctx, ctx.kernels(), &depths, args.kernel_dispatches);
    }
    let loaded = args.model.load()?;
    let vocab = loaded.model.vocab_size();
    let mut core = args.model.engine(loaded)?;
    // Warm-up: first dispatches of each pipeline pay for driver-side setup.
    run(&mut core, requests(1, 16, 4, vocab))?;
    if args.structured {
        return super::bench_structured::run_structured(&mut core, args.gen_tokens, &args.batches, vocab);
    }

    let weight_bytes = core.model().matmul_weight_bytes();
    let copy_rate = 1.0 / copy_seconds(core.model().gpu(), weight_bytes)?;
    println!(
        "baseline, copying the {:.1} MiB of matmul weights: {copy_rate:.1} copies/s",
        weight_bytes as f64 / (1 << 20) as f64
    );
    if args.profile {
        let baselines =
            super::bench_profile::Baselines { copy_bytes_per_second: copy_rate * weight_bytes as f64 };
        return super::bench_profile::run(core.model(), args.prompt_tokens, &args.batches, &baselines);
    }

    if !args.depths.is_empty() {
        return depths(&mut core, &args, vocab);
    }
    let timeline = run(&mut core, requests(1, args.prompt_tokens, 1, vocab))?;
    println!(
        "prompt, {} tokens: {:.1} tok/s",
        args.prompt_tokens,
        args.prompt_tokens as f64 / timeline.elapsed().as_secs_f64().max(1e-9)
    );
    let rate = run(&mut core, requests(1, 16, args.gen_tokens, vocab))?.decode_rate();
    println!("generation, batch 1: {rate:.1} tok/s ({:.2}x the copy rate)", rate / copy_rate);
    for &batch in &args.batches {
        let rate = run(&mut core, requests(batch, 16, args.gen_tokens, vocab))?.decode_rate();
        println!("generation, batch {batch}: {rate:.1} tok/s aggregate");
    }
    if args.offline_requests > 0 {
        offline(&mut core, &args, vocab)?;
    }
    Ok(())
}

/// At each depth, one request: a prompt of that many tokens (its rate up
/// to the first token), then `--gen-tokens` tokens (the decode rate after
/// it). Each prompt differs, so none comes from the prefix cache.
fn depths(core: &mut EngineCore, args: &BenchArgs, vocab: usize) -> anyhow::Result<()> {
    let mut first: Option<(f64, f64)> = None;
    for (salt, &depth) in args.depths.iter().enumerate() {
        let depth = depth.max(1);
        let params = SamplingParams { max_tokens: Some(args.gen_tokens.max(2)), ..SamplingParams::default() };
        let timeline = run(core, vec![GenerateRequest::new(prompt(depth, 1000 + salt, vocab), params)])?;
        let first_token = timeline.tokens[0].first().copied().unwrap_or(timeline.started);
        let prompt_rate = depth as f64 / (first_token - timeline.started).as_secs_f64().max(1e-9);
        let decode_rate = timeline.decode_rate();
        let (prompt_base, decode_base) = *first.get_or_insert((prompt_rate, decode_rate));
        println!(
            "depth {depth}: prompt {prompt_rate:.1} tok/s ({:.2}x), then generation {decode_rate:.1} tok/s ({:.2}x)",
            prompt_rate / prompt_base,
            decode_rate / decode_base
        );
    }
    Ok(())
}

/// Many requests at once against the same requests one at a time.
fn offline(core: &mut EngineCore, args: &BenchArgs, vocab: usize) -> anyhow::Result<()> {
    let count = args.offline_requests;
    let all = requests(count, 128, 128, vocab);
    let sample = args.sequential_sample.clamp(1, count);
    let mut sequential = Duration::ZERO;
    for request in all.iter().take(sample) {
        sequential += run(core, vec![request.clone()])?.elapsed();
    }
    let sequential_estimate = sequential.as_secs_f64() * count as f64 / sample as f64;
    let together = run(core, all)?;
    let seconds = together.elapsed().as_secs_f64().max(1e-9);
    println!(
        "offline, {count} requests: {:.2} req/s, {:.1} tok/s, speed-up {:.1}x (one after another: {sample} run, {:.0} s estimated for all)",
        count as f64 / seconds,
        together.total_tokens() as f64 / seconds,
        sequential_estimate / seconds,
        sequential_estimate
    );
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

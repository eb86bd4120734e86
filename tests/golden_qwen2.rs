//! Qwen2.5-Coder-0.5B-Instruct (GGUF: Q4_K, Q5_0, Q6_K, Q8_0, and a
//! separate Q8_0 output matrix larger than one binding) against Hugging
//! Face transformers' f32 forward of the same file
//! (`scripts/make_qwen2_reference.py` made the fixture): greedy tokens
//! equal, each prompt alone and all batched. The prompts are code, English,
//! several scripts, and two chats rendered by the file's own template.

mod common;

use std::sync::Arc;

use common::golden::{cases, check_greedy_alone_and_batched, model_path};
use wgserve::model::LoadOptions;
use wgserve::model::llama::Llama;

pub const QWEN2: &str = "models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf";

#[test]
fn greedy_tokens_match_transformers_alone_and_batched() {
    let ctx = Arc::new(common::gpu::context_from_env());
    let path = model_path(QWEN2);
    let options = LoadOptions { max_batch_tokens: 256, ..Default::default() };
    let model = Llama::load(ctx, &path, &options).unwrap();
    let cases = cases("qwen2_reference.json");
    check_greedy_alone_and_batched(Box::new(model), &path, &cases);
}

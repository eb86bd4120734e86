//! Golden tests against transformers: a fixture of prompts with the
//! greedy tokens Hugging Face generated (`scripts/make_*reference.py`), and
//! the check that our engine gives the same tokens, each prompt alone and
//! all in one varlen batch.

use std::path::{Path, PathBuf};

use serde_json::Value;
use wgserve::engine::core::{EngineConfig, EngineCore};
use wgserve::engine::request::GenerateRequest;
use wgserve::engine::sampler::SamplingParams;
use wgserve::formats::gguf::GgufFile;
use wgserve::model::causal_lm::CausalLm;
use wgserve::model::vocab::vocab_from_gguf;
use wgserve::text::Tokenizer;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A model file `scripts/setup.sh --test` fetches.
pub fn model_path(relative: &str) -> PathBuf {
    let path = root().join(relative);
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh --test`", path.display());
    path
}

pub struct Case {
    pub name: String,
    pub prompt_ids: Vec<u32>,
    pub generated_ids: Vec<u32>,
    pub top2_gaps: Vec<f64>,
}

pub fn cases(fixture: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(root().join("tests/fixtures").join(fixture)).unwrap();
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

/// An engine with default settings over `model` and the tokenizer of `gguf`.
pub fn engine(model: Box<dyn CausalLm>, gguf: &Path) -> EngineCore {
    let tokenizer = Tokenizer::from_vocab(vocab_from_gguf(&GgufFile::open(gguf).unwrap()).unwrap()).unwrap();
    EngineCore::new(model, tokenizer, vec![], &EngineConfig::default()).unwrap()
}

/// Each case's greedy tokens, run one at a time.
pub fn greedy_alone(core: &mut EngineCore, cases: &[Case]) -> Vec<Vec<u32>> {
    cases
        .iter()
        .map(|case| {
            let outputs = core.generate_all(vec![request(case)], |_, _| {}).unwrap();
            eprintln!("{}: ours {:?}\n   ref  {:?}", case.name, outputs[0].token_ids, case.generated_ids);
            outputs[0].token_ids.clone()
        })
        .collect()
}

/// Our greedy tokens equal the reference's for every case alone, and the
/// batched run equals the runs alone. The batched run finds every prompt
/// in the prefix cache (the runs alone left it there), so it also checks
/// that cached blocks give the same tokens; returns the prompt tokens it
/// took from the cache.
pub fn check_greedy_alone_and_batched(model: Box<dyn CausalLm>, gguf: &Path, cases: &[Case]) -> u64 {
    let mut core = engine(model, gguf);
    let alone = greedy_alone(&mut core, cases);
    for (case, ours) in cases.iter().zip(&alone) {
        assert_eq!(
            ours, &case.generated_ids,
            "{}: greedy tokens differ from transformers (gaps {:?})",
            case.name, case.top2_gaps
        );
    }
    let hits_before = core.metrics().scheduler.prefix_cache_hits;
    let requests: Vec<GenerateRequest> = cases.iter().map(request).collect();
    let batched = core.generate_all(requests, |_, _| {}).unwrap();
    for ((case, alone), batched) in cases.iter().zip(&alone).zip(&batched) {
        assert_eq!(&batched.token_ids, alone, "{}: batched output differs from alone", case.name);
    }
    core.check_invariants().unwrap();
    core.metrics().scheduler.prefix_cache_hits - hits_before
}

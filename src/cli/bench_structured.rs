//! `wgserve bench --structured`: what constrained decoding costs. At each
//! batch size, the decode rate of free greedy requests (the baseline,
//! measured in the same run; their tokens are picked on the GPU), then the
//! step time, as a ratio to it, of: the same requests reading their logits
//! back (`logprobs`; a constrained request reads them too, to mask them),
//! the batch with half its requests held to a JSON grammar (every request
//! shares each step, so its step time is what the free half pays), and
//! with all of them held to it. The grammar is an endless list of JSON
//! objects, so that every request runs its whole `--gen-tokens` and the
//! batch stays full. Last, the time one mask takes, as a share of a batch-1
//! step: for the JSON grammar, and for a tool request in `auto` (free text
//! that may not contain a call's start), each walking a text of its kind.

use std::time::Instant;

use wgserve::engine::constraint::{FunctionSpec, GrammarCompiler, OutputConstraint, ToolGrammar, ToolMode};
use wgserve::engine::core::EngineCore;
use wgserve::engine::request::GenerateRequest;
use wgserve::engine::sampler::SamplingParams;
use wgserve::text::tool_calls::ToolCallFormat;

use super::bench::{prompt, run};

const ENDLESS_JSON: &str = r#"start: "[" item (", " item)*
item: %json {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}, "count": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3}}, "required": ["name", "count", "tags"], "additionalProperties": false}"#;

pub fn run_structured(
    core: &mut EngineCore,
    gen_tokens: usize,
    batches: &[usize],
    vocab: usize,
) -> anyhow::Result<()> {
    let compiler = GrammarCompiler::new(core.tokenizer(), vocab, core.eos_token_ids())
        .map_err(|e| anyhow::anyhow!("this model cannot carry constraints: {e}"))?;
    let grammar = OutputConstraint::Grammar(ENDLESS_JSON.to_string());
    let batch_sizes: Vec<usize> = std::iter::once(1).chain(batches.iter().copied()).collect();
    let mut step_seconds = f64::NAN;
    for batch in batch_sizes {
        let requests = |constrained: usize, logprobs: bool| -> anyhow::Result<Vec<GenerateRequest>> {
            (0..batch)
                .map(|salt| {
                    let params = SamplingParams {
                        max_tokens: Some(gen_tokens),
                        ignore_eos: true,
                        logprobs,
                        ..SamplingParams::default()
                    };
                    let constraint = if salt < constrained {
                        Some(compiler.compile(&grammar).map_err(|e| anyhow::anyhow!("grammar: {e}"))?)
                    } else {
                        None
                    };
                    Ok(GenerateRequest {
                        constraint,
                        ..GenerateRequest::new(prompt(16, salt, vocab), params)
                    })
                })
                .collect()
        };
        let free = run(core, requests(0, false)?)?.decode_rate();
        let logits = run(core, requests(0, true)?)?.decode_rate();
        let mut line = format!(
            "structured, batch {batch}: free {free:.1} tok/s; free reading logits: step time {:.2}x",
            free / logits
        );
        if batch > 1 {
            let mixed = run(core, requests(batch / 2, false)?)?.decode_rate();
            line += &format!("; half held to JSON: step time {:.2}x", free / mixed);
        }
        let constrained = run(core, requests(batch, false)?)?.decode_rate();
        line += &format!("; all held to JSON: step time {:.2}x", free / constrained);
        println!("{line}");
        if batch == 1 {
            step_seconds = 1.0 / free;
        }
    }
    let tools = OutputConstraint::ToolCalls(ToolGrammar {
        format: ToolCallFormat::Hermes,
        functions: vec![FunctionSpec {
            name: "get_weather".into(),
            parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }],
        mode: ToolMode::Auto { parallel: true },
    });
    let json_text = r#"[{"name": "apple", "count": 3, "tags": ["red"]}, {"name": "sky", "count": 1, "tags": ["blue", "green"]}, {"name": "leaf", "count": 12, "tags": []}"#;
    let prose = "The weather in Paris is mild today, with a light breeze from the west and a few clouds. \
                 Tomorrow should bring some rain in the morning, clearing by the afternoon.";
    for (what, constraint, text) in [("JSON", &grammar, json_text), ("auto tools", &tools, prose)] {
        let mut matcher = compiler.compile(constraint).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        let ids = core.tokenizer().encode(text, false)?;
        let mut logits = vec![0.0f32; vocab];
        let started = Instant::now();
        for &id in &ids {
            matcher.mask(&mut logits).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            matcher.consume(id).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        }
        let per_mask = started.elapsed().as_secs_f64() / ids.len().max(1) as f64;
        println!(
            "mask, {what}: {:.2} ms per token ({:.1}% of a batch-1 step)",
            per_mask * 1e3,
            100.0 * per_mask / step_seconds
        );
    }
    Ok(())
}

//! `wgserve bench --structured`: what constrained decoding costs. At each
//! batch size, the decode rate of free greedy requests (the baseline,
//! measured in the same run; their tokens are picked on the GPU), then the
//! step time, as a ratio to it, of: the same requests reading their logits
//! back (`logprobs`; a constrained request reads them too, to mask them),
//! the batch with half its requests held to a JSON grammar (every request
//! shares each step, so its step time is what the free half pays), and
//! with all of them held to it. The grammar is an endless list of JSON
//! objects, so that every request runs its whole `--gen-tokens` and the
//! batch stays full.

use wgserve::engine::constraint::{GrammarCompiler, OutputConstraint};
use wgserve::engine::core::EngineCore;
use wgserve::engine::request::GenerateRequest;
use wgserve::engine::sampler::SamplingParams;

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
    }
    Ok(())
}

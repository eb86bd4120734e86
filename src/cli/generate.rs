//! `wgserve generate`: one prompt, streamed to stdout as it is generated.

use std::io::Write;

use anyhow::Context;
use clap::Args;
use std::time::Instant;

use wgserve::engine::request::{GenerateRequest, RequestOutput};
use wgserve::engine::sampler::SamplingParams;
use wgserve::text::ChatMessage;

use super::ModelArgs;

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt text (a user message with --chat).
    #[arg(long)]
    prompt: String,
    /// Render the prompt with the model's chat template.
    #[arg(long)]
    chat: bool,
    /// A system message (with --chat).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Most tokens to generate (fewer if the model ends its turn).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_tokens: u32,
    /// Sampling temperature, 0 to 2; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus sampling: draw from the most likely tokens that together
    /// reach this probability, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Seed of the sampling RNG, for a reproducible sample (default: random).
    #[arg(long)]
    seed: Option<u64>,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..=2.0).contains(&args.temperature), "--temperature must be within 0..=2");
    anyhow::ensure!(args.top_p > 0.0 && args.top_p <= 1.0, "--top-p must be within (0, 1]");
    let loaded = args.model.load()?;
    let prompt_text = if args.chat {
        let template =
            loaded.chat_template.as_ref().context("this model has no chat template; drop --chat")?;
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system.as_str()));
        }
        messages.push(ChatMessage::new("user", args.prompt.as_str()));
        template.render(&messages, true)?
    } else {
        args.prompt.clone()
    };
    let prompt = loaded.tokenizer.encode(&prompt_text, true)?;
    let request = GenerateRequest::new(
        prompt,
        SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
            max_tokens: Some(args.max_tokens as usize),
            ..SamplingParams::default()
        },
    );
    let mut core = args.model.engine(loaded)?;
    let mut stdout = std::io::stdout().lock();
    let started = Instant::now();
    let mut first_token_at = None;
    let completions = core.generate_all(vec![request], |_, output| {
        let text = match output {
            RequestOutput::Token(token) => {
                first_token_at.get_or_insert_with(Instant::now);
                &token.text
            }
            RequestOutput::Finished { text, .. } => text,
        };
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    })?;
    writeln!(stdout)?;
    let usage = completions[0].usage;
    let first = first_token_at.unwrap_or(started);
    eprintln!(
        "prompt: {} tokens, {:.1} tok/s; generation: {} tokens, {:.1} tok/s",
        usage.prompt_tokens,
        usage.prompt_tokens as f64 / (first - started).as_secs_f64().max(1e-9),
        usage.completion_tokens,
        // The first token comes out of the prefill step.
        usage.completion_tokens.saturating_sub(1) as f64 / first.elapsed().as_secs_f64().max(1e-9)
    );
    Ok(())
}

//! What a client hands the engine and what it gets back, one request at a
//! time: a stream of tokens (with their text and optional logprobs), then
//! exactly one final message with the finish reason and usage counts.

use super::sampler::SamplingParams;

pub type RequestId = u64;

/// A tokenized prompt and how to continue it.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    /// An earlier request with the same prompt (another choice of one
    /// client request, `n`): this one waits until that one has computed
    /// the prompt, then shares its KV blocks instead of computing them.
    pub shares_prompt_with: Option<RequestId>,
}

impl GenerateRequest {
    pub fn new(prompt: Vec<u32>, params: SamplingParams) -> Self {
        Self { prompt, params, shares_prompt_with: None }
    }
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOutput {
    pub id: u32,
    /// Newly completed text; empty while a character is incomplete or a
    /// possible stop string is held back. Never splits a UTF-8 character.
    pub text: String,
    pub logprob: Option<f32>,
    /// The most likely alternatives, most likely first.
    pub top_logprobs: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// Aborted by the client or by shutdown.
    Abort,
    /// The engine failed; the message says why.
    Error,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
            FinishReason::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RequestOutput {
    Token(TokenOutput),
    /// The last message of every request.
    Finished {
        reason: FinishReason,
        usage: Usage,
        text: String,
        error: Option<String>,
    },
}

//! What a client hands the engine and what it gets back, one request at a
//! time: a stream of tokens (with their text and optional logprobs), then
//! exactly one final message with the finish reason and usage counts.

use super::constraint::Constraint;
use super::sampler::SamplingParams;
use super::scheduler::SchedulerConfig;

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
    /// What the output must be (a JSON schema, a regex, ...), compiled.
    pub constraint: Option<Constraint>,
}

impl GenerateRequest {
    pub fn new(prompt: Vec<u32>, params: SamplingParams) -> Self {
        Self { prompt, params, shares_prompt_with: None, constraint: None }
    }

    /// Everything the engine can check before a request is queued: the
    /// prompt's token ids against the vocabulary, the sampling parameters'
    /// ranges, and whether prompt and output fit the context and the KV
    /// pool. A request that passes cannot fail the engine by its input.
    pub fn validate(
        &self,
        id: RequestId,
        vocab_size: usize,
        limits: &SchedulerConfig,
    ) -> Result<(), InvalidRequest> {
        if self.prompt.is_empty() {
            return Err(InvalidRequest::EmptyPrompt);
        }
        if let Some(index) = self.prompt.iter().position(|&id| id as usize >= vocab_size) {
            return Err(InvalidRequest::TokenOutsideVocabulary {
                index,
                token_id: self.prompt[index],
                vocab_size,
            });
        }
        self.params.validate(vocab_size)?;
        let max_tokens = limits.max_tokens_for(self.prompt.len(), self.params.max_tokens);
        limits.check_fits(id, self.prompt.len(), max_tokens)?;
        Ok(())
    }
}

/// Why a request can never run; the server turns each into a 400 that
/// names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// `index` is the position in the prompt's token ids.
    #[error("token id {token_id} at position {index} is outside the vocabulary of {vocab_size}")]
    TokenOutsideVocabulary { index: usize, token_id: u32, vocab_size: usize },
    #[error(transparent)]
    Params(#[from] super::sampler::SamplingError),
    #[error(transparent)]
    DoesNotFit(#[from] super::scheduler::SchedulerError),
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
    /// The request failed; its `RequestError` says why.
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
        error: Option<RequestError>,
    },
}

/// Why a request ended with `FinishReason::Error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// This request alone failed (in its sampling, detokenization or stop
    /// checks); the others in its batch ran on unaffected.
    #[error("the request failed: {0}")]
    Request(String),
    /// The engine failed (the device or a forward pass): every request open
    /// at that moment ends with this, and the engine restarts if it may.
    #[error("the engine failed: {0}")]
    Engine(String),
}

//! What the scheduler is configured with (the step budget, the KV pool,
//! the prompt caps while sequences decode) and the requests it refuses:
//! the scheduler's contract, checked also outside the engine thread when a
//! request is submitted.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most sequences running (holding blocks) at once.
    pub max_num_seqs: usize,
    /// Token budget of one step (prefill chunks plus decodes).
    pub max_num_batched_tokens: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Blocks in the KV pool.
    pub num_blocks: usize,
    pub enable_prefix_caching: bool,
    /// Longest sequence (prompt + generated tokens) the model takes.
    pub max_model_len: usize,
    /// While a sequence decodes, the most prompt tokens one sequence runs
    /// in a step; `None`: up to the whole budget.
    pub long_prefill_token_threshold: Option<usize>,
    /// While a sequence decodes, the most sequences that run a prompt chunk
    /// in one step (at least 1).
    pub max_num_partial_prefills: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 64,
            max_num_batched_tokens: 512,
            block_size: 16,
            num_blocks: 1024,
            enable_prefix_caching: true,
            max_model_len: 2048,
            long_prefill_token_threshold: DEFAULT_LONG_PREFILL_TOKEN_THRESHOLD,
            max_num_partial_prefills: DEFAULT_MAX_NUM_PARTIAL_PREFILLS,
        }
    }
}

/// Chosen by measurement on lavapipe (README, Performance -> Serving).
pub const DEFAULT_LONG_PREFILL_TOKEN_THRESHOLD: Option<usize> = Some(64);
pub const DEFAULT_MAX_NUM_PARTIAL_PREFILLS: usize = 1;

impl SchedulerConfig {
    /// A request's `max_tokens`; left open, the rest of the context.
    pub fn max_tokens_for(&self, prompt_len: usize, requested: Option<usize>) -> usize {
        requested.unwrap_or(self.max_model_len.saturating_sub(prompt_len))
    }

    /// Rejects a request that could never run: empty, or longer than the
    /// context or the whole KV pool. Callers outside the engine thread use
    /// it to refuse a request at submission.
    pub fn check_fits(&self, id: u64, prompt_len: usize, max_tokens: usize) -> Result<(), SchedulerError> {
        if prompt_len == 0 {
            return Err(SchedulerError::EmptyPrompt { id });
        }
        if max_tokens == 0 {
            return Err(SchedulerError::ZeroMaxTokens { id });
        }
        let max_model_len = self.max_model_len;
        if prompt_len + max_tokens > max_model_len {
            return Err(SchedulerError::TooLong { id, prompt_len, max_tokens, max_model_len });
        }
        let num_blocks_needed = (prompt_len + max_tokens).div_ceil(self.block_size);
        if num_blocks_needed > self.num_blocks {
            let num_blocks = self.num_blocks;
            return Err(SchedulerError::TooManyBlocks {
                id,
                prompt_len,
                max_tokens,
                num_blocks_needed,
                num_blocks,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    #[error("invalid scheduler config: {0}")]
    InvalidConfig(String),
    #[error("request {id}: the prompt is empty")]
    EmptyPrompt { id: u64 },
    #[error("request {id}: max_tokens must be at least 1")]
    ZeroMaxTokens { id: u64 },
    #[error(
        "request {id}: {prompt_len} prompt tokens + {max_tokens} max_tokens exceed the \
         context length of {max_model_len} tokens"
    )]
    TooLong { id: u64, prompt_len: usize, max_tokens: usize, max_model_len: usize },
    #[error(
        "request {id}: {prompt_len} prompt tokens + {max_tokens} max_tokens need \
         {num_blocks_needed} KV blocks, but the whole cache has {num_blocks}"
    )]
    TooManyBlocks {
        id: u64,
        prompt_len: usize,
        max_tokens: usize,
        num_blocks_needed: usize,
        num_blocks: usize,
    },
    #[error("request {id} is already scheduled")]
    DuplicateId { id: u64 },
    #[error("no sequence {id} in the scheduler")]
    UnknownSequence { id: u64 },
}

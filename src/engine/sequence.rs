//! One request as the scheduler sees it: token ids (prompt, then generated),
//! how many of them have their K/V in the cache, and the block table that
//! holds them. Plain data: the block manager fills `block_table`, the
//! scheduler moves `status` and `num_computed_tokens`; sampling parameters,
//! stop strings and text live with the engine, not here.

/// Where a sequence is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceStatus {
    /// In the waiting queue: new, or preempted and to be recomputed.
    Waiting,
    /// Holds blocks and is scheduled every step it fits in the budget.
    Running,
    /// Finished or aborted; its blocks are freed.
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub id: u64,
    /// Prompt tokens followed by generated tokens.
    pub token_ids: Vec<u32>,
    pub prompt_len: usize,
    /// Tokens whose K/V are in the cache (the first `num_computed_tokens`).
    pub num_computed_tokens: usize,
    /// Tokens found in the prefix cache at the last allocation.
    pub num_cached_tokens: usize,
    /// Block ids holding this sequence's K/V, in position order.
    pub block_table: Vec<u32>,
    /// Hash chain of the leading full, computed blocks (prefix caching).
    pub block_hashes: Vec<u64>,
    pub status: SequenceStatus,
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Order of arrival at the scheduler (set by `Scheduler::add`).
    pub arrival: u64,
    /// A sequence with the same prompt whose prompt blocks this one takes
    /// over by reference instead of computing them (see the scheduler).
    pub shares_prompt_with: Option<u64>,
}

impl Sequence {
    pub fn new(id: u64, prompt: Vec<u32>, max_tokens: usize) -> Self {
        Self {
            id,
            prompt_len: prompt.len(),
            token_ids: prompt,
            num_computed_tokens: 0,
            num_cached_tokens: 0,
            block_table: Vec::new(),
            block_hashes: Vec::new(),
            status: SequenceStatus::Waiting,
            max_tokens,
            arrival: 0,
            shares_prompt_with: None,
        }
    }

    pub fn num_tokens(&self) -> usize {
        self.token_ids.len()
    }

    /// Tokens still to be run through the model before the next sample.
    pub fn num_uncomputed(&self) -> usize {
        self.num_tokens() - self.num_computed_tokens
    }

    /// The prompt is not fully in the cache yet (also after a preemption).
    pub fn is_prefill(&self) -> bool {
        self.num_computed_tokens < self.prompt_len
    }

    pub fn prompt(&self) -> &[u32] {
        &self.token_ids[..self.prompt_len]
    }

    pub fn generated(&self) -> &[u32] {
        &self.token_ids[self.prompt_len..]
    }

    pub fn num_generated(&self) -> usize {
        self.num_tokens() - self.prompt_len
    }

    /// Tokens of block `index` of the table (a partial block if it is the last).
    pub fn block_tokens(&self, index: usize, block_size: usize) -> &[u32] {
        let start = (index * block_size).min(self.num_tokens());
        let end = ((index + 1) * block_size).min(self.num_tokens());
        &self.token_ids[start..end]
    }
}

//! Continuous batching over the paged KV cache, after vLLM v1's scheduler
//! (and FastDeploy's `ResourceManagerV1`). Each `step` picks the sequences
//! to run under a token budget: running ones first (a decode is one token, an
//! unfinished prefill continues in a chunk), then waiting ones in arrival
//! order. When a running sequence cannot get its next block, the most
//! recently started running sequence is preempted (blocks freed, recomputed
//! later from the front of the waiting queue).
//!
//! A sequence gets blocks for all its tokens when admitted (prefix-cache
//! hits first), so a prefill chunk never waits for a block; a decode may
//! need one more (`append_slot`), which is where preemption happens.
//!
//! It owns the sequences, the queues and the block manager; it works on
//! token ids and block ids only. Running the model, sampling and deciding
//! when a sequence stops are the engine's: it reports each step's sampled
//! tokens back through `on_step_done`.
//!
//! The tail of inter-token latency: a step that carries a long prompt chunk
//! makes every decoding stream wait for it. So while any running sequence
//! decodes, prompt work in a step is capped, as vLLM's
//! `long_prefill_token_threshold` and `max_num_partial_prefills` do: at most
//! `max_num_partial_prefills` sequences run a prompt chunk (the oldest
//! first), each of at most `long_prefill_token_threshold` tokens. With
//! nothing decoding, prompts take the whole budget (no stream waits).
//! Recomputing a preempted sequence counts as a prefill.
//!
//! Progress: the first running sequence is never preempted by another, and
//! a request is accepted only if it fits the whole pool alone, so the
//! oldest sequence always advances and every request finishes.

use std::collections::{HashMap, VecDeque};

pub use super::scheduler_config::{
    DEFAULT_LONG_PREFILL_TOKEN_THRESHOLD, DEFAULT_MAX_NUM_PARTIAL_PREFILLS, SchedulerConfig, SchedulerError,
};

use super::block_manager::BlockManager;
use super::sequence::{Sequence, SequenceStatus};

/// The prompt work one step may carry while a sequence decodes.
#[derive(Debug, Clone, Copy)]
struct PrefillCap {
    num_tokens_per_seq: usize,
    num_seqs: usize,
}

/// One sequence's part of a step: what the engine feeds the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub seq_id: u64,
    /// Tokens to run now, at positions `start_position..`.
    pub token_ids: Vec<u32>,
    pub start_position: usize,
    /// The sequence's whole block table (covers every position run now).
    pub block_table: Vec<u32>,
    /// The last new token is the sequence's last: sample from its logits.
    /// False for a mid-prompt chunk.
    pub sample: bool,
}

impl ScheduledSeq {
    pub fn num_new_tokens(&self) -> usize {
        self.token_ids.len()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerOutput {
    /// Running sequences first, then newly admitted ones.
    pub scheduled: Vec<ScheduledSeq>,
    /// Sequences preempted in this step: they will be recomputed.
    pub preempted: Vec<u64>,
    pub num_batched_tokens: usize,
}

impl SchedulerOutput {
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }
}

/// A token the engine sampled for a scheduled sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampledToken {
    pub seq_id: u64,
    pub token_id: u32,
    /// The engine's stop checks ended the sequence with this token.
    pub finished: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerMetrics {
    pub num_running: usize,
    pub num_waiting: usize,
    pub num_blocks_used: usize,
    pub num_blocks_total: usize,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_cache_queries: u64,
    /// Of those, tokens found.
    pub prefix_cache_hits: u64,
    pub num_preemptions: u64,
}

/// The sequence runs one token after its prompt: a stream waits on it.
/// Anything else it runs (a prompt, a recomputation) is a prefill.
pub fn is_decode(seq: &Sequence) -> bool {
    !seq.is_prefill() && seq.num_uncomputed() == 1
}

/// What a waiting sequence may take over from the one it shares a prompt with.
enum PromptSharing {
    None,
    /// The other is still computing the blocks.
    Wait,
    /// Block ids with their prefix-cache hashes.
    Blocks(Vec<(u32, Option<u64>)>),
}

#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    block_manager: BlockManager,
    seqs: HashMap<u64, Sequence>,
    waiting: VecDeque<u64>,
    /// In start order: the last one is the first to be preempted.
    running: Vec<u64>,
    /// (seq id, num_new_tokens) of the step awaiting `on_step_done`.
    in_flight: Vec<(u64, usize)>,
    next_arrival: u64,
    num_preemptions: u64,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Result<Self, SchedulerError> {
        let invalid = |what: &str| Err(SchedulerError::InvalidConfig(what.to_string()));
        if config.block_size == 0 || config.num_blocks == 0 || config.max_num_seqs == 0 {
            return invalid("block_size, num_blocks and max_num_seqs must be positive");
        }
        if config.max_num_batched_tokens < config.max_num_seqs {
            return invalid("max_num_batched_tokens must be at least max_num_seqs");
        }
        if config.long_prefill_token_threshold == Some(0) || config.max_num_partial_prefills == 0 {
            return invalid("long_prefill_token_threshold and max_num_partial_prefills must be positive");
        }
        let block_manager =
            BlockManager::new(config.num_blocks, config.block_size, config.enable_prefix_caching);
        Ok(Self {
            config,
            block_manager,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            in_flight: Vec::new(),
            next_arrival: 0,
            num_preemptions: 0,
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Queues a new request, or rejects one that could never run. All of
    /// `seq.token_ids` is taken as its prompt.
    pub fn add(&mut self, mut seq: Sequence) -> Result<(), SchedulerError> {
        let id = seq.id;
        seq.prompt_len = seq.token_ids.len();
        let (prompt_len, max_tokens) = (seq.prompt_len, seq.max_tokens);
        if self.seqs.contains_key(&id) {
            return Err(SchedulerError::DuplicateId { id });
        }
        self.config.check_fits(id, prompt_len, max_tokens)?;
        seq.num_computed_tokens = 0;
        seq.block_table.clear();
        seq.block_hashes.clear();
        seq.status = SequenceStatus::Waiting;
        seq.arrival = self.next_arrival;
        self.next_arrival += 1;
        self.seqs.insert(id, seq);
        self.waiting.push_back(id);
        Ok(())
    }

    /// Picks the next step's batch. A previous step never reported through
    /// `on_step_done` counts as not run: its tokens are scheduled again.
    pub fn step(&mut self) -> SchedulerOutput {
        self.in_flight.clear();
        let mut budget = self.config.max_num_batched_tokens;
        let cap = self.prefill_cap();
        let mut num_prefills = 0;
        let mut preempted = Vec::new();
        let mut index = 0;
        while index < self.running.len() && budget > 0 {
            let id = self.running[index];
            let is_prefill = self.seqs.get(&id).is_some_and(|s| !is_decode(s));
            if is_prefill && cap.is_some_and(|cap| num_prefills >= cap.num_seqs) {
                index += 1; // waits for an older prefill to finish
                continue;
            }
            if !self.reserve_slot(id, &mut preempted) {
                break; // preempted itself: everything after it is gone too
            }
            let mut num_new_tokens = self.seqs.get(&id).map_or(0, |s| s.num_uncomputed()).min(budget);
            if is_prefill {
                num_prefills += 1;
                num_new_tokens = num_new_tokens.min(cap.map_or(usize::MAX, |cap| cap.num_tokens_per_seq));
            }
            debug_assert!(num_new_tokens > 0, "running sequence {id} has nothing to compute");
            if num_new_tokens > 0 {
                budget -= num_new_tokens;
                self.in_flight.push((id, num_new_tokens));
            }
            index += 1;
        }
        // As vLLM: no admissions in a step that had to preempt.
        if preempted.is_empty() {
            while budget > 0
                && self.running.len() < self.config.max_num_seqs
                && cap.is_none_or(|cap| num_prefills < cap.num_seqs)
            {
                let chunk = cap.map_or(budget, |cap| budget.min(cap.num_tokens_per_seq));
                let Some(num_new_tokens) = self.admit_next(chunk) else { break };
                budget -= num_new_tokens;
                num_prefills += 1;
            }
        }
        let scheduled: Vec<ScheduledSeq> =
            self.in_flight.iter().filter_map(|&(id, n)| self.view(id, n)).collect();
        let num_batched_tokens = self.config.max_num_batched_tokens - budget;
        SchedulerOutput { scheduled, preempted, num_batched_tokens }
    }

    /// The cap on this step's prompt work: only while a sequence decodes.
    fn prefill_cap(&self) -> Option<PrefillCap> {
        let decoding = self.running.iter().filter_map(|id| self.seqs.get(id)).any(is_decode);
        decoding.then(|| PrefillCap {
            num_tokens_per_seq: self.config.long_prefill_token_threshold.unwrap_or(usize::MAX),
            num_seqs: self.config.max_num_partial_prefills,
        })
    }

    /// Records a step's results: every scheduled token is now computed, the
    /// sampled tokens are appended, and full blocks join the prefix cache.
    /// Returns the sequences that finished, their blocks freed: those the
    /// engine marked `finished` (a stop) and those that reached `max_tokens`
    /// (the engine tells the two apart by its own stop check). Tokens of
    /// sequences aborted since `step` are ignored.
    pub fn on_step_done(&mut self, sampled: &[SampledToken]) -> Vec<Sequence> {
        for (id, num_new_tokens) in std::mem::take(&mut self.in_flight) {
            if let Some(seq) = self.seqs.get_mut(&id) {
                seq.num_computed_tokens += num_new_tokens;
                debug_assert!(seq.num_computed_tokens <= seq.num_tokens());
                self.block_manager.cache_full_blocks(seq);
            }
        }
        let mut finished = Vec::new();
        for token in sampled {
            let Some(seq) = self.seqs.get_mut(&token.seq_id) else { continue };
            debug_assert_eq!(seq.num_uncomputed(), 0, "sequence {} sampled mid-prompt", seq.id);
            if seq.status != SequenceStatus::Running || seq.num_uncomputed() != 0 {
                continue;
            }
            seq.token_ids.push(token.token_id);
            let at_limit =
                seq.num_generated() >= seq.max_tokens || seq.num_tokens() >= self.config.max_model_len;
            if token.finished || at_limit {
                finished.extend(self.remove(token.seq_id));
            }
        }
        finished
    }

    /// Removes a sequence in any state and frees its blocks.
    pub fn abort(&mut self, id: u64) -> Result<Sequence, SchedulerError> {
        self.in_flight.retain(|&(x, _)| x != id);
        self.remove(id).ok_or(SchedulerError::UnknownSequence { id })
    }

    pub fn get(&self, id: u64) -> Option<&Sequence> {
        self.seqs.get(&id)
    }

    pub fn has_unfinished(&self) -> bool {
        !self.seqs.is_empty()
    }

    /// Running sequence ids, in start order.
    pub fn running_ids(&self) -> &[u64] {
        &self.running
    }

    /// Waiting sequence ids, next to be admitted first.
    pub fn waiting_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.waiting.iter().copied()
    }

    pub fn block_manager(&self) -> &BlockManager {
        &self.block_manager
    }

    pub fn metrics(&self) -> SchedulerMetrics {
        SchedulerMetrics {
            num_running: self.running.len(),
            num_waiting: self.waiting.len(),
            num_blocks_used: self.block_manager.num_used_blocks(),
            num_blocks_total: self.block_manager.num_blocks(),
            prefix_cache_queries: self.block_manager.prefix_cache_queries(),
            prefix_cache_hits: self.block_manager.prefix_cache_hits(),
            num_preemptions: self.num_preemptions,
        }
    }

    /// Makes sure running sequence `id` has a slot for its next token,
    /// preempting from the back of `running` until it does. False when `id`
    /// itself was preempted.
    fn reserve_slot(&mut self, id: u64, preempted: &mut Vec<u64>) -> bool {
        loop {
            let Some(seq) = self.seqs.get_mut(&id) else { return false };
            if self.block_manager.can_append_slot(seq) && self.block_manager.append_slot(seq).is_ok() {
                return true;
            }
            let Some(victim) = self.running.pop() else { return false };
            self.preempt(victim);
            preempted.push(victim);
            if victim == id {
                return false;
            }
        }
    }

    fn preempt(&mut self, id: u64) {
        if let Some(seq) = self.seqs.get_mut(&id) {
            self.block_manager.free(seq);
            seq.num_computed_tokens = 0;
            seq.status = SequenceStatus::Waiting;
        }
        self.waiting.push_front(id);
        self.num_preemptions += 1;
    }

    /// Admits the front of the waiting queue if its blocks fit; returns the
    /// tokens it runs this step.
    fn admit_next(&mut self, budget: usize) -> Option<usize> {
        let id = *self.waiting.front()?;
        let shared = match self.shared_prompt_blocks(id) {
            PromptSharing::Wait => return None,
            PromptSharing::Blocks(shared) => shared,
            PromptSharing::None => Vec::new(),
        };
        let seq = self.seqs.get_mut(&id)?;
        let allocated = if shared.is_empty() {
            self.block_manager.can_allocate(seq) && self.block_manager.allocate(seq).is_ok()
        } else {
            self.block_manager.can_allocate_shared(seq, shared.len())
                && self.block_manager.allocate_shared(seq, &shared).is_ok()
        };
        if !allocated {
            return None;
        }
        seq.status = SequenceStatus::Running;
        let num_new_tokens = seq.num_uncomputed().min(budget);
        self.waiting.pop_front();
        self.running.push(id);
        self.in_flight.push((id, num_new_tokens));
        Some(num_new_tokens)
    }

    /// Whether waiting sequence `id` can take over another's prompt blocks:
    /// the full blocks before its last prompt token (that token's logits
    /// are its own to compute). While the other is still computing them,
    /// `id` waits (at the front of the queue, so the order stays
    /// first-come first-served); once the other is gone or was preempted,
    /// `id` is allocated as usual.
    fn shared_prompt_blocks(&self, id: u64) -> PromptSharing {
        let Some(seq) = self.seqs.get(&id) else { return PromptSharing::None };
        let Some(source) = seq.shares_prompt_with.and_then(|source| self.seqs.get(&source)) else {
            return PromptSharing::None;
        };
        let block_size = self.config.block_size;
        let num_blocks = (seq.prompt_len.saturating_sub(1) / block_size).min(source.block_table.len());
        let shared_tokens = num_blocks * block_size;
        if source.status != SequenceStatus::Running
            || num_blocks == 0
            || source.prompt_len < shared_tokens
            || source.token_ids[..shared_tokens] != seq.token_ids[..shared_tokens]
        {
            return PromptSharing::None;
        }
        if source.num_computed_tokens < shared_tokens {
            return PromptSharing::Wait;
        }
        PromptSharing::Blocks(
            (0..num_blocks).map(|i| (source.block_table[i], source.block_hashes.get(i).copied())).collect(),
        )
    }

    fn view(&self, id: u64, num_new_tokens: usize) -> Option<ScheduledSeq> {
        let seq = self.seqs.get(&id)?;
        let start = seq.num_computed_tokens;
        Some(ScheduledSeq {
            seq_id: id,
            token_ids: seq.token_ids[start..start + num_new_tokens].to_vec(),
            start_position: start,
            block_table: seq.block_table.clone(),
            sample: start + num_new_tokens == seq.num_tokens(),
        })
    }

    fn remove(&mut self, id: u64) -> Option<Sequence> {
        let mut seq = self.seqs.remove(&id)?;
        match seq.status {
            SequenceStatus::Running => self.running.retain(|&x| x != id),
            SequenceStatus::Waiting => self.waiting.retain(|&x| x != id),
            SequenceStatus::Finished => {}
        }
        self.block_manager.free(&mut seq);
        seq.status = SequenceStatus::Finished;
        Some(seq)
    }

    /// Checks queues and blocks: every sequence is in exactly one queue
    /// matching its status, and the block manager's invariants hold.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.running.len() > self.config.max_num_seqs {
            return Err(format!("{} running > max_num_seqs", self.running.len()));
        }
        if self.running.len() + self.waiting.len() != self.seqs.len() {
            return Err(format!(
                "{} running + {} waiting != {} sequences",
                self.running.len(),
                self.waiting.len(),
                self.seqs.len()
            ));
        }
        let queued = self.running.iter().map(|id| (id, SequenceStatus::Running));
        let queued = queued.chain(self.waiting.iter().map(|id| (id, SequenceStatus::Waiting)));
        let mut seen = std::collections::HashSet::new();
        for (id, status) in queued {
            let seq = self.seqs.get(id).ok_or(format!("queued sequence {id} is unknown"))?;
            if !seen.insert(*id) || seq.status != status {
                return Err(format!("sequence {id} queued twice or as {status:?} but is {:?}", seq.status));
            }
            let bm = &self.block_manager;
            let table_ok = match status {
                SequenceStatus::Waiting => seq.block_table.is_empty() && seq.num_computed_tokens == 0,
                _ => {
                    let len = seq.block_table.len();
                    len >= bm.blocks_for(seq.num_computed_tokens) && len <= bm.blocks_for(seq.num_tokens())
                }
            };
            if !table_ok {
                return Err(format!(
                    "sequence {id} ({status:?}) has a block table of {}",
                    seq.block_table.len()
                ));
            }
        }
        self.block_manager.check_invariants(self.seqs.values().map(|s| s.block_table.as_slice()))
    }
}

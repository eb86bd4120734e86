//! One engine step, everything included: the scheduler picks the batch, the
//! runner runs it, each request's sampler picks its token, and the
//! detokenizer and stop checks turn tokens into text and finishes. It owns
//! the per-request state; the thread around it (`worker`) only routes
//! commands in and outputs out, and offline callers drive it directly.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::model::ModelError;
use crate::model::causal_lm::{CausalLm, ForwardOutput, Output};
use crate::text::{TextError, Tokenizer};

use super::fault::FaultPlan;
use super::request::{
    FinishReason, GenerateRequest, InvalidRequest, RequestError, RequestId, RequestOutput, Usage,
};
use super::request_state::{RequestState, SampleContext, finish_text, next_token};
use super::runner::ModelRunner;
use super::scheduler::{
    DEFAULT_LONG_PREFILL_TOKEN_THRESHOLD, DEFAULT_MAX_NUM_PARTIAL_PREFILLS, SampledToken, ScheduledSeq,
    Scheduler, SchedulerConfig, SchedulerError, SchedulerMetrics,
};
use super::sequence::Sequence;
use super::worker::panic_detail;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The request can never run: its input is invalid or too large.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    #[error("{waiting} requests are waiting already, the most this server queues; retry later")]
    QueueFull { waiting: usize },
    #[error(transparent)]
    Text(#[from] TextError),
    /// The request's grammar failed it (a request's own error).
    #[error("structured output: {0}")]
    Constraint(String),
    #[error("injected fault: {0}")]
    InjectedFault(String),
    #[error("the engine has failed: {0}")]
    Failed(String),
    #[error("the engine is restarting after a failure: {0}")]
    Restarting(String),
    #[error("the engine has stopped")]
    Stopped,
}

/// Batching limits; the KV pool size and block size come from the model.
/// The prefill caps are the scheduler's (see `SchedulerConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub enable_prefix_caching: bool,
    pub long_prefill_token_threshold: Option<usize>,
    pub max_num_partial_prefills: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 64,
            max_num_batched_tokens: 512,
            enable_prefix_caching: true,
            long_prefill_token_threshold: DEFAULT_LONG_PREFILL_TOKEN_THRESHOLD,
            max_num_partial_prefills: DEFAULT_MAX_NUM_PARTIAL_PREFILLS,
        }
    }
}

/// Counters since start, plus the scheduler's current state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineMetrics {
    pub scheduler: SchedulerMetrics,
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    pub requests_finished: u64,
    pub requests_aborted: u64,
    /// Requests that failed alone (`RequestError::Request`).
    pub requests_failed: u64,
    /// Times the engine thread re-created a failed engine (set by the
    /// thread, which outlives each engine).
    pub engine_restarts: u64,
    /// Checks of the engine's bookkeeping when it fell idle, and how many
    /// found it broken (set by the thread).
    pub self_checks: u64,
    pub self_check_failures: u64,
    pub steps: u64,
    pub step_time_total: Duration,
    pub last_step_time: Duration,
}

impl EngineMetrics {
    /// These counters on top of `earlier`'s, an engine that failed before
    /// this one: counters keep counting across restarts, gauges are now's.
    pub fn after(self, earlier: &EngineMetrics) -> EngineMetrics {
        let scheduler = SchedulerMetrics {
            prefix_cache_queries: earlier.scheduler.prefix_cache_queries
                + self.scheduler.prefix_cache_queries,
            prefix_cache_hits: earlier.scheduler.prefix_cache_hits + self.scheduler.prefix_cache_hits,
            num_preemptions: earlier.scheduler.num_preemptions + self.scheduler.num_preemptions,
            ..self.scheduler
        };
        EngineMetrics {
            scheduler,
            prompt_tokens_total: earlier.prompt_tokens_total + self.prompt_tokens_total,
            generation_tokens_total: earlier.generation_tokens_total + self.generation_tokens_total,
            requests_finished: earlier.requests_finished + self.requests_finished,
            requests_aborted: earlier.requests_aborted + self.requests_aborted,
            requests_failed: earlier.requests_failed + self.requests_failed,
            engine_restarts: earlier.engine_restarts + self.engine_restarts,
            // Counted by the thread, which outlives each engine.
            self_checks: self.self_checks,
            self_check_failures: self.self_check_failures,
            steps: earlier.steps + self.steps,
            step_time_total: earlier.step_time_total + self.step_time_total,
            last_step_time: self.last_step_time,
        }
    }
}

pub struct EngineCore {
    runner: ModelRunner,
    scheduler: Scheduler,
    tokenizer: Tokenizer,
    /// End-of-generation tokens added to every request's stop ids.
    eos_token_ids: Vec<u32>,
    requests: HashMap<RequestId, RequestState>,
    metrics: EngineMetrics,
    faults: FaultPlan,
}

impl EngineCore {
    pub fn new(
        model: Box<dyn CausalLm>,
        tokenizer: Tokenizer,
        eos_token_ids: Vec<u32>,
        config: &EngineConfig,
    ) -> Result<Self, EngineError> {
        let options = model.options();
        let scheduler = Scheduler::new(SchedulerConfig {
            max_num_seqs: config.max_num_seqs.min(options.max_seqs),
            max_num_batched_tokens: config.max_num_batched_tokens.min(options.max_batch_tokens),
            block_size: model.block_size(),
            num_blocks: model.num_kv_blocks(),
            enable_prefix_caching: config.enable_prefix_caching,
            max_model_len: model.max_model_len(),
            long_prefill_token_threshold: config.long_prefill_token_threshold,
            max_num_partial_prefills: config.max_num_partial_prefills,
        })?;
        Ok(Self {
            runner: ModelRunner::new(model),
            scheduler,
            tokenizer,
            eos_token_ids,
            requests: HashMap::new(),
            metrics: EngineMetrics::default(),
            faults: FaultPlan::default(),
        })
    }

    pub fn model(&self) -> &dyn CausalLm {
        self.runner.model()
    }

    /// The ids that end every generation that does not ignore EOS.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn scheduler_config(&self) -> &SchedulerConfig {
        self.scheduler.config()
    }

    /// Faults to inject from now on (tests only; see `fault`).
    pub fn inject_faults(&mut self, faults: FaultPlan) {
        self.faults = faults;
    }

    pub fn vocab_size(&self) -> usize {
        self.model().vocab_size()
    }

    /// Queues a request, or says why it can never run.
    pub fn add_request(&mut self, id: RequestId, request: GenerateRequest) -> Result<(), EngineError> {
        request.validate(id, self.vocab_size(), self.scheduler.config())?;
        let params = request.params;
        let max_tokens = self.scheduler.config().max_tokens_for(request.prompt.len(), params.max_tokens);
        let mut seq = Sequence::new(id, request.prompt, max_tokens);
        seq.shares_prompt_with = request.shares_prompt_with;
        self.scheduler.add(seq)?;
        self.requests.insert(id, RequestState::new(params, &self.eos_token_ids, request.constraint));
        Ok(())
    }

    /// Removes a request in any state; its blocks are free from now on.
    pub fn abort(&mut self, id: RequestId) -> Option<RequestOutput> {
        self.requests.remove(&id)?;
        let seq = self.scheduler.abort(id).ok()?;
        self.metrics.requests_aborted += 1;
        Some(RequestOutput::Finished {
            reason: FinishReason::Abort,
            usage: usage_of(&seq),
            text: String::new(),
            error: None,
        })
    }

    pub fn has_work(&self) -> bool {
        self.scheduler.has_unfinished()
    }

    /// The scheduler's and block manager's invariants (ref counts, free
    /// list, prefix-cache index): `Err` says which one broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.scheduler.check_invariants()
    }

    pub fn metrics(&self) -> EngineMetrics {
        EngineMetrics { scheduler: self.scheduler.metrics(), ..self.metrics }
    }

    /// Runs one step and returns what each request produced in it.
    ///
    /// An error returned here is engine-wide (the forward pass, the
    /// device): every open request is lost with it. What goes wrong for
    /// one request after the forward pass (its sampler, detokenizer, stop
    /// checks, a panic in any of them) ends that request alone with
    /// `RequestError::Request`; the others' tokens are as if it had never
    /// been in the batch.
    pub fn step(&mut self) -> Result<Vec<(RequestId, RequestOutput)>, EngineError> {
        let started = Instant::now();
        let output = self.scheduler.step();
        if output.is_empty() {
            return Ok(Vec::new());
        }
        let needs_logits = output
            .scheduled
            .iter()
            .any(|s| s.sample && self.requests.get(&s.seq_id).is_some_and(RequestState::needs_logits));
        if self.faults.fails_device_at(self.metrics.steps + 1) {
            return Err(EngineError::InjectedFault("the device was lost (injected)".into()));
        }
        let wanted = if needs_logits { Output::Logits } else { Output::TokenIds };
        let forward = execute_with_masks(&mut self.runner, &mut self.requests, &output.scheduled, wanted)?;
        let vocab_size = self.runner.model().vocab_size();
        let mut outputs = Vec::new();
        let mut sampled = Vec::new();
        let mut failed = Vec::new();
        for (row, scheduled) in output.scheduled.iter().enumerate() {
            let Some(seq) = self.scheduler.get(scheduled.seq_id) else { continue };
            // Prompt positions computed in this step (recomputation included).
            let prompt_part =
                seq.prompt_len.saturating_sub(scheduled.start_position).min(scheduled.num_new_tokens());
            self.metrics.prompt_tokens_total += prompt_part as u64;
            if !scheduled.sample {
                continue;
            }
            let Some(state) = self.requests.get_mut(&scheduled.seq_id) else { continue };
            let context =
                SampleContext { forward: &forward, row, seq, tokenizer: &self.tokenizer, vocab_size };
            let faults = &self.faults;
            match catch_unwind(AssertUnwindSafe(|| {
                faults.check_sample(seq.id, seq.num_generated());
                next_token(state, &context)
            })) {
                Ok(Ok(token)) => {
                    self.metrics.generation_tokens_total += 1;
                    sampled.push(SampledToken {
                        seq_id: scheduled.seq_id,
                        token_id: token.id,
                        finished: state.stopped,
                    });
                    outputs.push((scheduled.seq_id, RequestOutput::Token(token)));
                }
                Ok(Err(e)) => failed.push((scheduled.seq_id, e.to_string())),
                Err(panic) => failed.push((
                    scheduled.seq_id,
                    format!("panic while sampling: {}", panic_detail(panic.as_ref())),
                )),
            }
        }
        for seq in self.scheduler.on_step_done(&sampled) {
            let Some(state) = self.requests.remove(&seq.id) else { continue };
            match catch_unwind(AssertUnwindSafe(|| finish_text(state, &self.tokenizer))) {
                Ok(Ok((reason, text))) => {
                    self.metrics.requests_finished += 1;
                    outputs.push((
                        seq.id,
                        RequestOutput::Finished { reason, usage: usage_of(&seq), text, error: None },
                    ));
                }
                Ok(Err(e)) => {
                    self.metrics.requests_failed += 1;
                    outputs.push(failure(&seq, e.to_string()));
                }
                Err(panic) => {
                    self.metrics.requests_failed += 1;
                    let cause = format!("panic while finishing the text: {}", panic_detail(panic.as_ref()));
                    outputs.push(failure(&seq, cause));
                }
            }
        }
        // After `on_step_done`: the failed request's KV (valid, computed
        // this step) is cached like any other before its blocks are freed.
        for (id, cause) in failed {
            tracing::warn!(request = id, %cause, "a request failed; the others go on");
            self.metrics.requests_failed += 1;
            self.requests.remove(&id);
            if let Ok(seq) = self.scheduler.abort(id) {
                outputs.push(failure(&seq, cause));
            }
        }
        let elapsed = started.elapsed();
        self.metrics.steps += 1;
        self.metrics.step_time_total += elapsed;
        self.metrics.last_step_time = elapsed;
        Ok(outputs)
    }

    /// Runs `requests` to completion (offline use: the CLI, benchmarks,
    /// tests), calling `on_output` with every output as it is produced.
    /// Request `i` gets id `i`.
    pub fn generate_all(
        &mut self,
        requests: Vec<GenerateRequest>,
        mut on_output: impl FnMut(RequestId, &RequestOutput),
    ) -> Result<Vec<Completion>, EngineError> {
        let mut completions: Vec<Completion> = requests.iter().map(|_| Completion::default()).collect();
        for (id, request) in requests.into_iter().enumerate() {
            self.add_request(id as RequestId, request)?;
        }
        while self.has_work() {
            for (id, output) in self.step()? {
                on_output(id, &output);
                let completion = &mut completions[id as usize];
                match output {
                    RequestOutput::Token(token) => {
                        completion.token_ids.push(token.id);
                        completion.text.push_str(&token.text);
                    }
                    RequestOutput::Finished { reason, usage, text, .. } => {
                        completion.text.push_str(&text);
                        completion.finish_reason = Some(reason);
                        completion.usage = usage;
                    }
                }
            }
        }
        Ok(completions)
    }
}

/// What one request produced, gathered (offline use).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: Option<FinishReason>,
    pub usage: Usage,
}

/// The last output of a request that failed on its own.
fn failure(seq: &Sequence, cause: String) -> (RequestId, RequestOutput) {
    let output = RequestOutput::Finished {
        reason: FinishReason::Error,
        usage: usage_of(seq),
        text: String::new(),
        error: Some(RequestError::Request(cause)),
    };
    (seq.id, output)
}

fn usage_of(seq: &Sequence) -> Usage {
    Usage {
        prompt_tokens: seq.prompt_len,
        completion_tokens: seq.num_generated(),
        cached_tokens: seq.num_cached_tokens,
    }
}
/// Runs the forward pass; meanwhile, on another thread, the constrained
/// requests that sample this step compute their next masks (they depend
/// only on tokens already chosen), so a grammar costs its request little
/// more than the mask's application and the others nothing.
fn execute_with_masks(
    runner: &mut ModelRunner,
    requests: &mut HashMap<RequestId, RequestState>,
    scheduled: &[ScheduledSeq],
    wanted: Output,
) -> Result<ForwardOutput, EngineError> {
    if !requests.values().any(|state| state.constraint.is_some()) {
        return Ok(runner.execute(scheduled, wanted)?);
    }
    let mut constrained: Vec<&mut RequestState> = Vec::new();
    let sampling: std::collections::HashSet<RequestId> =
        scheduled.iter().filter(|s| s.sample).map(|s| s.seq_id).collect();
    for (id, state) in requests.iter_mut() {
        if state.constraint.is_some() && sampling.contains(id) {
            constrained.push(state);
        }
    }
    if constrained.is_empty() {
        return Ok(runner.execute(scheduled, wanted)?);
    }
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for state in constrained {
                if let Some(constraint) = &mut state.constraint {
                    constraint.prepare_mask();
                }
            }
        });
        Ok(runner.execute(scheduled, wanted)?)
    })
}

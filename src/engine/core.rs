//! One engine step, everything included: the scheduler picks the batch, the
//! runner runs it, each request's sampler picks its token, and the
//! detokenizer and stop checks turn tokens into text and finishes. It owns
//! the per-request state; the thread around it (`worker`) only routes
//! commands in and outputs out, and offline callers drive it directly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::ModelError;
use crate::model::llama::{ForwardOutput, Llama, Output};
use crate::text::{Detokenizer, TextError, Tokenizer};

use super::request::{FinishReason, GenerateRequest, RequestId, RequestOutput, TokenOutput, Usage};
use super::runner::ModelRunner;
use super::sampler::{Sampler, SamplingError};
use super::scheduler::{SampledToken, Scheduler, SchedulerConfig, SchedulerError, SchedulerMetrics};
use super::sequence::Sequence;
use super::stop::StopMatcher;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Rejected(#[from] SchedulerError),
    #[error(transparent)]
    InvalidParams(#[from] SamplingError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("the engine has failed: {0}")]
    Failed(String),
    #[error("the engine has stopped")]
    Stopped,
}

/// Batching limits; the KV pool size and block size come from the model.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub enable_prefix_caching: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { max_num_seqs: 64, max_num_batched_tokens: 512, enable_prefix_caching: true }
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
    pub steps: u64,
    pub step_time_total: Duration,
    pub last_step_time: Duration,
}

struct RequestState {
    sampler: Sampler,
    detokenizer: Detokenizer,
    stop: StopMatcher,
    stop_token_ids: Vec<u32>,
    stopped: bool,
}

pub struct EngineCore {
    runner: ModelRunner,
    scheduler: Scheduler,
    tokenizer: Tokenizer,
    /// End-of-generation tokens added to every request's stop ids.
    eos_token_ids: Vec<u32>,
    requests: HashMap<RequestId, RequestState>,
    metrics: EngineMetrics,
}

impl EngineCore {
    pub fn new(
        model: Llama,
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
            max_model_len: model.config.max_position_embeddings,
        })?;
        Ok(Self {
            runner: ModelRunner::new(model),
            scheduler,
            tokenizer,
            eos_token_ids,
            requests: HashMap::new(),
            metrics: EngineMetrics::default(),
        })
    }

    pub fn model(&self) -> &Llama {
        self.runner.model()
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn scheduler_config(&self) -> &SchedulerConfig {
        self.scheduler.config()
    }

    /// Queues a request, or says why it can never run.
    pub fn add_request(&mut self, id: RequestId, request: GenerateRequest) -> Result<(), EngineError> {
        let params = request.params;
        params.validate(self.model().config.vocab_size)?;
        let max_tokens = self.scheduler.config().max_tokens_for(request.prompt.len(), params.max_tokens);
        let mut seq = Sequence::new(id, request.prompt, max_tokens);
        seq.shares_prompt_with = request.shares_prompt_with;
        self.scheduler.add(seq)?;
        let mut stop_token_ids = params.stop_token_ids.clone();
        if !params.ignore_eos {
            stop_token_ids.extend(&self.eos_token_ids);
        }
        let state = RequestState {
            stop: StopMatcher::new(params.stop.clone()),
            sampler: Sampler::new(params),
            detokenizer: Detokenizer::new(true),
            stop_token_ids,
            stopped: false,
        };
        self.requests.insert(id, state);
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

    pub fn metrics(&self) -> EngineMetrics {
        EngineMetrics { scheduler: self.scheduler.metrics(), ..self.metrics }
    }

    /// Runs one step and returns what each request produced in it.
    pub fn step(&mut self) -> Result<Vec<(RequestId, RequestOutput)>, EngineError> {
        let started = Instant::now();
        let output = self.scheduler.step();
        if output.is_empty() {
            return Ok(Vec::new());
        }
        let needs_logits = output.scheduled.iter().any(|s| {
            s.sample && self.requests.get(&s.seq_id).is_some_and(|r| r.sampler.params().needs_logits())
        });
        let forward = self
            .runner
            .execute(&output.scheduled, if needs_logits { Output::Logits } else { Output::TokenIds })?;
        let vocab = self.model().config.vocab_size;
        let mut outputs = Vec::new();
        let mut sampled = Vec::new();
        for (row, scheduled) in output.scheduled.iter().enumerate() {
            let (Some(seq), Some(state)) =
                (self.scheduler.get(scheduled.seq_id), self.requests.get_mut(&scheduled.seq_id))
            else {
                continue;
            };
            // Prompt positions computed in this step (recomputation included).
            let prompt_part =
                seq.prompt_len.saturating_sub(scheduled.start_position).min(scheduled.num_new_tokens());
            self.metrics.prompt_tokens_total += prompt_part as u64;
            if !scheduled.sample {
                continue;
            }
            let sampled_token = match &forward {
                ForwardOutput::TokenIds(ids) => {
                    super::sampler::SampledToken { id: ids[row], logprob: None, top_logprobs: Vec::new() }
                }
                ForwardOutput::Logits(logits) => state.sampler.sample(
                    &logits[row * vocab..(row + 1) * vocab],
                    seq.prompt(),
                    seq.generated(),
                ),
            };
            let token = sampled_token.id;
            let mut text = String::new();
            if state.stop_token_ids.contains(&token) {
                state.stopped = true;
            } else {
                let delta = state.detokenizer.step(&self.tokenizer, token)?;
                let result = state.stop.push(&delta);
                text = result.emit;
                state.stopped = result.stopped;
            }
            self.metrics.generation_tokens_total += 1;
            sampled.push(SampledToken { seq_id: scheduled.seq_id, token_id: token, finished: state.stopped });
            outputs.push((
                scheduled.seq_id,
                RequestOutput::Token(TokenOutput {
                    id: token,
                    text,
                    logprob: sampled_token.logprob,
                    top_logprobs: sampled_token.top_logprobs,
                }),
            ));
        }
        for seq in self.scheduler.on_step_done(&sampled) {
            let Some(mut state) = self.requests.remove(&seq.id) else { continue };
            let (reason, text) = if state.stopped {
                (FinishReason::Stop, String::new())
            } else {
                // Length: release what was held back for a possible stop string.
                let tail = state.detokenizer.flush(&self.tokenizer)?;
                let mut text = state.stop.push(&tail).emit;
                text.push_str(&state.stop.flush());
                (FinishReason::Length, text)
            };
            self.metrics.requests_finished += 1;
            outputs
                .push((seq.id, RequestOutput::Finished { reason, usage: usage_of(&seq), text, error: None }));
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

fn usage_of(seq: &Sequence) -> Usage {
    Usage {
        prompt_tokens: seq.prompt_len,
        completion_tokens: seq.num_generated(),
        cached_tokens: seq.num_cached_tokens,
    }
}

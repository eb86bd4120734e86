//! The block manager and scheduler without a GPU: a fake engine runs each
//! step on a simulated paged KV cache (each slot holds the token and
//! position written to it) and "generates" a token that depends only on the
//! context it reads back through the block table. So a wrong block table,
//! a bad prefix-cache hit or a block overwritten while shared shows up as a
//! wrong token, and a preempted sequence must end with the tokens it would
//! have produced alone.
//!
//! proptest runs without its `std` feature (see Cargo.toml): the seed is
//! fixed and panics are not shrunk, so the checks return `Err` instead.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use wgserve::engine::scheduler::{SampledToken, Scheduler, SchedulerConfig, SchedulerError};
use wgserve::engine::sequence::Sequence;

const VOCAB: u64 = 1000;

/// The fake model: the next token is a hash of the whole context.
fn next_token(context: &[u32]) -> u32 {
    let mut hasher = DefaultHasher::new();
    context.hash(&mut hasher);
    (hasher.finish() % VOCAB) as u32
}

#[derive(Debug, Clone)]
struct Request {
    arrival_step: usize,
    prompt: Vec<u32>,
    max_tokens: usize,
}

/// What the request generates when run alone: until EOS or a limit.
fn reference(request: &Request, eos_modulus: u32, max_model_len: usize) -> Vec<u32> {
    let mut tokens = request.prompt.clone();
    let mut generated = Vec::new();
    loop {
        let token = next_token(&tokens);
        tokens.push(token);
        generated.push(token);
        if token.is_multiple_of(eos_modulus)
            || generated.len() >= request.max_tokens
            || tokens.len() >= max_model_len
        {
            return generated;
        }
    }
}

/// The fake engine: the simulated KV cache and the outputs so far.
struct FakeEngine {
    config: SchedulerConfig,
    eos_modulus: u32,
    /// [num_blocks * block_size] (token, position) written to each slot
    kv: Vec<Option<(u32, usize)>>,
    finished: HashMap<u64, Vec<u32>>,
    aborted: HashMap<u64, Vec<u32>>,
}

impl FakeEngine {
    fn new(config: &SchedulerConfig, eos_modulus: u32) -> Self {
        Self {
            config: config.clone(),
            eos_modulus,
            kv: vec![None; config.num_blocks * config.block_size],
            finished: HashMap::new(),
            aborted: HashMap::new(),
        }
    }

    fn slot(&self, block_table: &[u32], position: usize) -> Result<usize, String> {
        let bs = self.config.block_size;
        let block = block_table.get(position / bs).ok_or(format!("no block for position {position}"))?;
        Ok(*block as usize * bs + position % bs)
    }

    /// Runs one scheduler step through the fake model and checks it;
    /// returns the number of tokens run.
    fn step(&mut self, sched: &mut Scheduler) -> Result<usize, String> {
        let out = sched.step();
        let config = &self.config;
        let num_tokens: usize = out.scheduled.iter().map(|s| s.num_new_tokens()).sum();
        if num_tokens != out.num_batched_tokens || num_tokens > config.max_num_batched_tokens {
            return Err(format!("{num_tokens} tokens in a step (reported {})", out.num_batched_tokens));
        }
        if out.scheduled.len() > config.max_num_seqs {
            return Err(format!("{} sequences in a step", out.scheduled.len()));
        }
        let mut ids = HashSet::new();
        let mut written = HashSet::new();
        // The KV write of every new token precedes attention, as on the GPU.
        for s in &out.scheduled {
            let seq = sched.get(s.seq_id).ok_or(format!("scheduled unknown sequence {}", s.seq_id))?;
            let end = s.start_position + s.num_new_tokens();
            if !ids.insert(s.seq_id)
                || s.num_new_tokens() == 0
                || s.start_position != seq.num_computed_tokens
                || seq.token_ids.get(s.start_position..end) != Some(&s.token_ids[..])
                || s.block_table != seq.block_table
                || s.sample != (end == seq.num_tokens())
            {
                return Err(format!("bad scheduled entry {s:?} for {seq:?}"));
            }
            for (i, &token) in s.token_ids.iter().enumerate() {
                let slot = self.slot(&s.block_table, s.start_position + i)?;
                if !written.insert(slot) {
                    return Err(format!("slot {slot} written twice in one step"));
                }
                self.kv[slot] = Some((token, s.start_position + i));
            }
        }
        let mut sampled = Vec::new();
        for s in &out.scheduled {
            let seq = sched.get(s.seq_id).ok_or("vanished")?;
            let end = s.start_position + s.num_new_tokens();
            let mut context = Vec::with_capacity(end);
            for position in 0..end {
                match self.kv[self.slot(&s.block_table, position)?] {
                    Some((token, p)) if p == position && token == seq.token_ids[position] => {
                        context.push(token)
                    }
                    other => return Err(format!("seq {} position {position} reads {other:?}", s.seq_id)),
                }
            }
            if s.sample {
                let token_id = next_token(&context);
                sampled.push(SampledToken {
                    seq_id: s.seq_id,
                    token_id,
                    finished: token_id.is_multiple_of(self.eos_modulus),
                });
            }
        }
        for seq in sched.on_step_done(&sampled) {
            self.finished.insert(seq.id, seq.generated().to_vec());
        }
        sched.check_invariants()?;
        Ok(num_tokens)
    }

    fn abort(&mut self, sched: &mut Scheduler, id: u64) -> Result<(), String> {
        if let Ok(seq) = sched.abort(id) {
            self.aborted.insert(id, seq.generated().to_vec());
        }
        sched.check_invariants()
    }
}

fn expected_rejection(config: &SchedulerConfig, request: &Request) -> Option<&'static str> {
    let total = request.prompt.len() + request.max_tokens;
    if request.prompt.is_empty() {
        Some("EmptyPrompt")
    } else if request.max_tokens == 0 {
        Some("ZeroMaxTokens")
    } else if total > config.max_model_len {
        Some("TooLong")
    } else if total.div_ceil(config.block_size) > config.num_blocks {
        Some("TooManyBlocks")
    } else {
        None
    }
}

fn rejection_name(error: &SchedulerError) -> &'static str {
    match error {
        SchedulerError::EmptyPrompt { .. } => "EmptyPrompt",
        SchedulerError::ZeroMaxTokens { .. } => "ZeroMaxTokens",
        SchedulerError::TooLong { .. } => "TooLong",
        SchedulerError::TooManyBlocks { .. } => "TooManyBlocks",
        _ => "other",
    }
}

#[derive(Debug, Clone)]
struct Case {
    config: SchedulerConfig,
    eos_modulus: u32,
    requests: Vec<Request>,
    /// (step, request index): abort that request at that step if alive.
    aborts: Vec<(usize, usize)>,
}

#[derive(Debug, Default)]
struct Totals {
    cases: usize,
    accepted: usize,
    steps: usize,
    preemptions: u64,
    prefix_cache_hits: u64,
    chunked_steps: usize,
}

/// Runs a case to the end, checking every step; returns its metrics.
fn run_case(case: &Case) -> Result<Totals, String> {
    let config = &case.config;
    let mut sched = Scheduler::new(config.clone()).map_err(|e| e.to_string())?;
    let mut engine = FakeEngine::new(config, case.eos_modulus);
    let mut accepted = Vec::new();
    let mut bound = 2;
    // The oldest running sequence advances every step, so each request is
    // done within (its tokens) steps once it is the oldest.
    for r in &case.requests {
        bound = bound.max(r.arrival_step + 2);
        if expected_rejection(config, r).is_none() {
            bound += r.prompt.len() + r.max_tokens;
        }
    }
    let mut step = 0;
    let mut totals = Totals::default();
    loop {
        for (i, r) in case.requests.iter().enumerate().filter(|(_, r)| r.arrival_step == step) {
            let result = sched.add(Sequence::new(i as u64, r.prompt.clone(), r.max_tokens));
            let got = result.as_ref().err().map(rejection_name);
            if got != expected_rejection(config, r) {
                return Err(format!("request {i}: add gave {result:?}"));
            }
            if result.is_ok() {
                accepted.push(i);
            }
        }
        for &(_, i) in case.aborts.iter().filter(|(s, _)| *s == step) {
            engine.abort(&mut sched, i as u64)?;
        }
        let arrivals_left = case.requests.iter().any(|r| r.arrival_step > step);
        if !arrivals_left && !sched.has_unfinished() {
            break;
        }
        if sched.has_unfinished() && sched.running_ids().is_empty() && sched.waiting_ids().next().is_none() {
            return Err("unfinished sequences in no queue".into());
        }
        let had_work = sched.has_unfinished();
        if engine.step(&mut sched)? == 0 && had_work {
            return Err(format!("step {step}: nothing scheduled with work pending"));
        }
        step += 1;
        if step > bound {
            return Err(format!("not finished after {bound} steps: {:?}", sched.metrics()));
        }
    }
    let metrics = sched.metrics();
    if metrics.num_blocks_used != 0 || sched.block_manager().num_free_blocks() != config.num_blocks {
        return Err(format!("blocks leaked: {metrics:?}"));
    }
    for &i in &accepted {
        let expected = reference(&case.requests[i], case.eos_modulus, config.max_model_len);
        let id = i as u64;
        match (engine.finished.get(&id), engine.aborted.get(&id)) {
            (Some(got), None) if *got == expected => {}
            (None, Some(got)) if expected.starts_with(got) => {}
            other => return Err(format!("request {i}: expected {expected:?}, got {other:?}")),
        }
    }
    totals.cases = 1;
    totals.accepted = accepted.len();
    totals.steps = step;
    totals.preemptions = metrics.num_preemptions;
    totals.prefix_cache_hits = metrics.prefix_cache_hits;
    totals.chunked_steps =
        usize::from(case.requests.iter().any(|r| r.prompt.len() > config.max_num_batched_tokens));
    Ok(totals)
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let config = (
        prop::sample::select(vec![1usize, 2, 4, 8, 16]),
        1usize..48,
        1usize..8,
        0usize..48,
        8usize..160,
        any::<bool>(),
    )
        .prop_map(|(block_size, num_blocks, max_num_seqs, extra_tokens, max_model_len, prefix)| {
            SchedulerConfig {
                max_num_seqs,
                max_num_batched_tokens: max_num_seqs + extra_tokens,
                block_size,
                num_blocks,
                enable_prefix_caching: prefix,
                max_model_len,
            }
        });
    let prefixes = prop::collection::vec(prop::collection::vec(0u32..1000, 0..40), 3);
    let requests = prop::collection::vec(
        (0usize..30, 0usize..4, prop::collection::vec(0u32..1000, 0..24), 0usize..40),
        1..14,
    );
    let aborts = prop::collection::vec((0usize..60, 0usize..14), 0..4);
    (config, 3u32..60, prefixes, requests, aborts).prop_map(|(config, eos_modulus, prefixes, raw, aborts)| {
        let requests = raw
            .into_iter()
            .map(|(arrival_step, prefix, suffix, max_tokens)| {
                let mut prompt = prefixes.get(prefix).cloned().unwrap_or_default();
                prompt.extend(suffix);
                Request { arrival_step, prompt, max_tokens }
            })
            .collect();
        Case { config, eos_modulus, requests, aborts }
    })
}

#[test]
fn random_arrivals_steps_finishes_and_aborts_keep_every_invariant() {
    let totals = std::cell::RefCell::new(Totals::default());
    let mut runner = TestRunner::new(Config { cases: 2000, ..Config::default() });
    let result = runner.run(&case_strategy(), |case| {
        let t = run_case(&case).map_err(TestCaseError::fail)?;
        let mut all = totals.borrow_mut();
        all.cases += t.cases;
        all.accepted += t.accepted;
        all.steps += t.steps;
        all.preemptions += t.preemptions;
        all.prefix_cache_hits += t.prefix_cache_hits;
        all.chunked_steps += t.chunked_steps;
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    // The generator must reach the interesting paths, not only easy cases.
    let totals = totals.into_inner();
    eprintln!("{totals:?}");
    assert!(totals.preemptions > 0, "{totals:?}");
    assert!(totals.prefix_cache_hits > 0, "{totals:?}");
    assert!(totals.chunked_steps > 0, "{totals:?}");
}

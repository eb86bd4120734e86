//! The block manager and scheduler without a GPU: a fake engine runs each
//! step on a simulated paged KV cache (each slot holds the token and
//! position written to it) and "generates" a token that depends only on the
//! context it reads back through the block table. So a wrong block table,
//! a bad prefix-cache hit or a block overwritten while shared shows up as a
//! wrong token, and a preempted sequence must end with the tokens it would
//! have produced alone.
//!
//! While a sequence decodes, a step's prompt work stays under the prefill
//! caps (`long_prefill_token_threshold`, `max_num_partial_prefills`), and
//! still every request finishes within a bound on steps.
//!
//! proptest runs without its `std` feature (see Cargo.toml): the seed is
//! fixed and panics are not shrunk, so the checks return `Err` instead.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use wgserve::engine::block_manager::BlockManager;
use wgserve::engine::scheduler::{
    SampledToken, ScheduledSeq, Scheduler, SchedulerConfig, SchedulerError, SchedulerOutput,
};
use wgserve::engine::sequence::{Sequence, SequenceStatus};

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
    /// Another choice of an earlier request (same prompt, same arrival):
    /// it takes over that one's prompt blocks.
    shares_with: Option<usize>,
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
    /// Steps in which two scheduled sequences held the same block without
    /// the prefix cache: prompt blocks shared between choices.
    shared_block_steps: usize,
    /// Steps with a decode in which the prefill caps cut prompt work.
    capped_steps: usize,
}

impl FakeEngine {
    fn new(config: &SchedulerConfig, eos_modulus: u32) -> Self {
        Self {
            config: config.clone(),
            eos_modulus,
            kv: vec![None; config.num_blocks * config.block_size],
            finished: HashMap::new(),
            aborted: HashMap::new(),
            shared_block_steps: 0,
            capped_steps: 0,
        }
    }

    fn slot(&self, block_table: &[u32], position: usize) -> Result<usize, String> {
        let bs = self.config.block_size;
        let block = block_table.get(position / bs).ok_or(format!("no block for position {position}"))?;
        Ok(*block as usize * bs + position % bs)
    }

    /// Runs one scheduler step through the fake model and checks it;
    /// returns the number of tokens run.
    /// `aborts` are aborted after the forward pass, before `on_step_done`.
    fn step(&mut self, sched: &mut Scheduler, aborts: &[u64]) -> Result<usize, String> {
        let running_before: HashSet<u64> = sched.running_ids().iter().copied().collect();
        let out = sched.step();
        self.check_prefill_caps(sched, &out, &running_before)?;
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
        let mut held = HashSet::new();
        if out.scheduled.iter().flat_map(|s| s.block_table.iter()).any(|&block| !held.insert(block))
            && !config.enable_prefix_caching
        {
            self.shared_block_steps += 1;
        }
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
        for &id in aborts {
            self.abort(sched, id)?;
        }
        for seq in sched.on_step_done(&sampled) {
            self.finished.insert(seq.id, seq.generated().to_vec());
        }
        sched.check_invariants()?;
        Ok(num_tokens)
    }

    /// While any sequence that was running decodes, at most
    /// `max_num_partial_prefills` prompt chunks run, each of at most
    /// `long_prefill_token_threshold` tokens. (A preempted sequence whose
    /// blocks all come back from the prefix cache may decode in the step
    /// that admits it: the caps were settled before.) Counts the steps the
    /// caps cut.
    fn check_prefill_caps(
        &mut self,
        sched: &Scheduler,
        out: &SchedulerOutput,
        running_before: &HashSet<u64>,
    ) -> Result<(), String> {
        let mut num_decodes = 0;
        let mut chunks = Vec::new();
        for s in &out.scheduled {
            let seq = sched.get(s.seq_id).ok_or(format!("scheduled unknown sequence {}", s.seq_id))?;
            let end = s.start_position + s.num_new_tokens();
            if s.start_position >= seq.prompt_len && s.num_new_tokens() == 1 && end == seq.num_tokens() {
                num_decodes += usize::from(running_before.contains(&s.seq_id));
            } else {
                chunks.push((s.num_new_tokens(), seq.num_tokens() - end));
            }
        }
        if num_decodes == 0 {
            return Ok(());
        }
        let config = &self.config;
        let threshold = config.long_prefill_token_threshold.unwrap_or(usize::MAX);
        if chunks.len() > config.max_num_partial_prefills || chunks.iter().any(|&(n, _)| n > threshold) {
            return Err(format!("{num_decodes} decodes beside prompt chunks {chunks:?} over the caps"));
        }
        let left_over = out.num_batched_tokens < config.max_num_batched_tokens;
        let held_back =
            chunks.len() == config.max_num_partial_prefills && sched.waiting_ids().next().is_some();
        if left_over && (held_back || chunks.iter().any(|&(_, rest)| rest > 0)) {
            self.capped_steps += 1;
        }
        Ok(())
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
    /// (step, request index, mid-step): abort that request at that step if
    /// alive, before the step or while it is in flight.
    aborts: Vec<(usize, usize, bool)>,
}

#[derive(Debug, Default)]
struct Totals {
    cases: usize,
    accepted: usize,
    steps: usize,
    preemptions: u64,
    prefix_cache_hits: u64,
    chunked_cases: usize,
    shared_block_steps: usize,
    capped_steps: usize,
}

/// Runs a case to the end, checking every step; returns its metrics.
fn run_case(case: &Case) -> Result<Totals, String> {
    let config = &case.config;
    let mut sched = Scheduler::new(config.clone()).map_err(|e| e.to_string())?;
    let mut engine = FakeEngine::new(config, case.eos_modulus);
    let mut accepted = Vec::new();
    let mut bound = 2;
    // The oldest running sequence advances every step (the prefill caps
    // let the oldest prompt chunk run, of at least one token), so each
    // request is done within (its tokens) steps once it is the oldest: no
    // prefill starves behind decodes.
    for r in &case.requests {
        bound = bound.max(r.arrival_step + 2);
        if expected_rejection(config, r).is_none() {
            bound += r.prompt.len() + r.max_tokens;
        }
    }
    let mut step = 0;
    loop {
        for (i, r) in case.requests.iter().enumerate().filter(|(_, r)| r.arrival_step == step) {
            let mut seq = Sequence::new(i as u64, r.prompt.clone(), r.max_tokens);
            seq.shares_prompt_with = r.shares_with.map(|j| j as u64);
            let result = sched.add(seq);
            let got = result.as_ref().err().map(rejection_name);
            if got != expected_rejection(config, r) {
                return Err(format!("request {i}: add gave {result:?}"));
            }
            if result.is_ok() {
                accepted.push(i);
            }
        }
        let mut mid_step_aborts = Vec::new();
        for &(_, i, mid_step) in case.aborts.iter().filter(|a| a.0 == step) {
            if mid_step {
                mid_step_aborts.push(i as u64);
            } else {
                engine.abort(&mut sched, i as u64)?;
            }
        }
        let arrivals_left = case.requests.iter().any(|r| r.arrival_step > step);
        if !arrivals_left && !sched.has_unfinished() {
            break;
        }
        let had_work = sched.has_unfinished();
        if engine.step(&mut sched, &mid_step_aborts)? == 0 && had_work {
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
    Ok(Totals {
        cases: 1,
        accepted: accepted.len(),
        steps: step,
        preemptions: metrics.num_preemptions,
        prefix_cache_hits: metrics.prefix_cache_hits,
        chunked_cases: usize::from(
            case.requests.iter().any(|r| r.prompt.len() > config.max_num_batched_tokens),
        ),
        shared_block_steps: engine.shared_block_steps,
        capped_steps: engine.capped_steps,
    })
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let config = (
        prop::sample::select(vec![1usize, 2, 4, 8, 16]),
        1usize..48,
        1usize..8,
        0usize..48,
        8usize..160,
        any::<bool>(),
        (prop::option::weighted(0.7, 1usize..12), 1usize..4),
    )
        .prop_map(|(block_size, num_blocks, max_num_seqs, extra_tokens, max_model_len, prefix, caps)| {
            SchedulerConfig {
                max_num_seqs,
                max_num_batched_tokens: max_num_seqs + extra_tokens,
                block_size,
                num_blocks,
                enable_prefix_caching: prefix,
                max_model_len,
                long_prefill_token_threshold: caps.0,
                max_num_partial_prefills: caps.1,
            }
        });
    let prefixes = prop::collection::vec(prop::collection::vec(0u32..1000, 0..40), 3);
    let requests = prop::collection::vec(
        (
            0usize..30,
            0usize..4,
            prop::collection::vec(0u32..1000, 0..24),
            0usize..40,
            prop::option::weighted(0.3, 0usize..14),
        ),
        1..14,
    );
    let aborts = prop::collection::vec((0usize..60, 0usize..14, any::<bool>()), 0..4);
    (config, 3u32..60, prefixes, requests, aborts).prop_map(|(config, eos_modulus, prefixes, raw, aborts)| {
        let mut requests: Vec<Request> = Vec::with_capacity(raw.len());
        for (arrival_step, prefix, suffix, max_tokens, copy_of) in raw {
            let request = match copy_of.filter(|&j| j < requests.len()) {
                Some(j) => Request { max_tokens, shares_with: Some(j), ..requests[j].clone() },
                None => {
                    let mut prompt = prefixes.get(prefix).cloned().unwrap_or_default();
                    prompt.extend(suffix);
                    Request { arrival_step, prompt, max_tokens, shares_with: None }
                }
            };
            requests.push(request);
        }
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
        all.chunked_cases += t.chunked_cases;
        all.shared_block_steps += t.shared_block_steps;
        all.capped_steps += t.capped_steps;
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
    assert!(totals.chunked_cases > 0, "{totals:?}");
    assert!(totals.shared_block_steps > 0, "{totals:?}");
    assert!(totals.capped_steps > 0, "{totals:?}");
}

// Focused tests of single behaviours.

fn config(block_size: usize, num_blocks: usize, max_num_seqs: usize, budget: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_num_seqs,
        max_num_batched_tokens: budget,
        block_size,
        num_blocks,
        enable_prefix_caching: true,
        max_model_len: 256,
        long_prefill_token_threshold: None,
        max_num_partial_prefills: max_num_seqs,
    }
}

/// Marks every token computed, as after the step that ran them.
fn compute_all(bm: &mut BlockManager, seq: &mut Sequence) {
    seq.num_computed_tokens = seq.num_tokens();
    bm.cache_full_blocks(seq);
}

#[test]
fn prefix_cache_hit_reuses_blocks_and_reports_hit_tokens() {
    let mut bm = BlockManager::new(16, 4, true);
    let mut a = Sequence::new(0, (0..10).collect(), 1);
    bm.allocate(&mut a).unwrap();
    assert_eq!((a.block_table.len(), a.num_cached_tokens), (3, 0));
    compute_all(&mut bm, &mut a);
    let mut b = Sequence::new(1, (0..8).chain([99, 98, 97]).collect(), 1);
    assert!(bm.can_allocate(&b));
    bm.allocate(&mut b).unwrap();
    assert_eq!(b.block_table[..2], a.block_table[..2]);
    assert_ne!(b.block_table[2], a.block_table[2]);
    assert_eq!((b.num_cached_tokens, b.num_computed_tokens), (8, 8));
    assert_eq!((bm.prefix_cache_queries(), bm.prefix_cache_hits()), (10 + 11, 8));
    assert_eq!(bm.num_used_blocks(), 4); // two shared, one private each
    bm.check_invariants([a.block_table.as_slice(), b.block_table.as_slice()]).unwrap();
    bm.free(&mut a);
    bm.free(&mut b);
    assert_eq!((bm.num_used_blocks(), bm.num_evictable_blocks()), (0, 2));
    bm.check_invariants([]).unwrap();
}

#[test]
fn whole_prompt_is_never_a_cache_hit() {
    let mut bm = BlockManager::new(8, 4, true);
    let mut a = Sequence::new(0, (0..8).collect(), 1);
    bm.allocate(&mut a).unwrap();
    compute_all(&mut bm, &mut a);
    bm.free(&mut a);
    // Same 8 tokens: both blocks are cached, but the last token's logits
    // are needed, so only the first block is a hit.
    let mut again = Sequence::new(1, (0..8).collect(), 1);
    bm.allocate(&mut again).unwrap();
    assert_eq!((again.num_cached_tokens, again.num_uncomputed()), (4, 4));
}

#[test]
fn lru_evicts_least_recently_released_blocks_first() {
    let mut bm = BlockManager::new(6, 2, true);
    let mut a = Sequence::new(0, vec![1, 2, 3, 4, 5], 1);
    let mut b = Sequence::new(1, vec![11, 12, 13, 14, 15], 1);
    bm.allocate(&mut a).unwrap();
    bm.allocate(&mut b).unwrap();
    compute_all(&mut bm, &mut a);
    compute_all(&mut bm, &mut b);
    let (a_table, b_table) = (a.block_table.clone(), b.block_table.clone());
    bm.free(&mut a); // released first: evicted first
    bm.free(&mut b);
    assert_eq!((bm.num_free_blocks(), bm.num_evictable_blocks()), (6, 4));
    // 4 blocks: the 2 uncached partial blocks, then A's cached ones, tail first.
    let mut c = Sequence::new(2, (21..28).collect(), 1);
    bm.allocate(&mut c).unwrap();
    assert_eq!(c.block_table, [a_table[2], b_table[2], a_table[1], a_table[0]]);
    bm.free(&mut c);
    let mut b_again = Sequence::new(3, vec![11, 12, 13, 14, 15], 1);
    bm.allocate(&mut b_again).unwrap();
    assert_eq!(b_again.num_cached_tokens, 4);
    assert_eq!(b_again.block_table[..2], b_table[..2]);
    let mut a_again = Sequence::new(4, vec![1, 2, 3, 4, 5], 1);
    bm.allocate(&mut a_again).unwrap();
    assert_eq!(a_again.num_cached_tokens, 0);
    bm.check_invariants([b_again.block_table.as_slice(), a_again.block_table.as_slice()]).unwrap();
}

#[test]
fn a_sequences_tail_is_evicted_before_its_head() {
    let mut bm = BlockManager::new(3, 2, true);
    let mut a = Sequence::new(0, vec![1, 2, 3, 4, 5], 1);
    bm.allocate(&mut a).unwrap();
    compute_all(&mut bm, &mut a);
    bm.free(&mut a);
    let mut x = Sequence::new(1, vec![9, 9, 9, 9], 1); // the free block + one eviction
    bm.allocate(&mut x).unwrap();
    bm.free(&mut x);
    let mut probe = Sequence::new(2, vec![1, 2, 3], 1);
    bm.allocate(&mut probe).unwrap();
    assert_eq!(probe.num_cached_tokens, 2);
}

#[test]
fn prefix_cache_through_the_scheduler_gives_the_same_tokens() {
    let system: Vec<u32> = (100..132).collect();
    let requests: Vec<Request> = [(0, 1u32), (12, 2), (12, 3)]
        .into_iter()
        .map(|(arrival_step, user)| Request {
            arrival_step,
            prompt: system.iter().copied().chain([user, user + 7]).collect(),
            max_tokens: 6,
            shares_with: None,
        })
        .collect();
    let mut case = Case { config: config(16, 32, 4, 64), eos_modulus: 10_000, requests, aborts: Vec::new() };
    // The first request is done by step 12; the later two hit both 16-token blocks.
    assert_eq!(run_case(&case).unwrap().prefix_cache_hits, 2 * 32);
    case.config.enable_prefix_caching = false;
    assert_eq!(run_case(&case).unwrap().prefix_cache_hits, 0);
}

#[test]
fn tiny_pool_preempts_and_every_request_still_finishes() {
    // Each request needs the whole pool (11 tokens in 6 blocks of 2) by its end.
    let requests = (0..3)
        .map(|i| Request { arrival_step: 0, prompt: vec![i, i + 1, i + 2], max_tokens: 8, shares_with: None })
        .collect();
    let case = Case { config: config(2, 6, 4, 16), eos_modulus: 10_000, requests, aborts: Vec::new() };
    let totals = run_case(&case).unwrap();
    assert!(totals.preemptions > 0, "{totals:?}");
}

fn sample_all(sched: &mut Scheduler, out: &SchedulerOutput) -> Vec<Sequence> {
    let sampled: Vec<SampledToken> = out
        .scheduled
        .iter()
        .filter(|s| s.sample)
        .map(|s| SampledToken { seq_id: s.seq_id, token_id: 7, finished: false })
        .collect();
    sched.on_step_done(&sampled)
}

#[test]
fn later_choices_take_over_the_first_ones_computed_prompt_blocks() {
    let mut config = config(16, 32, 4, 64);
    config.enable_prefix_caching = false;
    let mut sched = Scheduler::new(config).unwrap();
    let prompt: Vec<u32> = (0..40).collect();
    sched.add(Sequence::new(0, prompt.clone(), 10)).unwrap();
    let mut choice = Sequence::new(1, prompt.clone(), 10);
    choice.shares_prompt_with = Some(0);
    sched.add(choice).unwrap();
    // The budget fits both prompts, but the choice waits for the first's blocks.
    let out = sched.step();
    assert_eq!(out.scheduled.iter().map(|s| s.seq_id).collect::<Vec<_>>(), [0]);
    sample_all(&mut sched, &out);
    let out = sched.step();
    let [first, choice] = &out.scheduled[..] else { panic!("{out:?}") };
    assert_eq!((first.seq_id, first.num_new_tokens()), (0, 1));
    // Two full blocks shared; the 8 tokens of the partial block computed again.
    assert_eq!((choice.seq_id, choice.start_position, choice.num_new_tokens()), (1, 32, 8));
    assert_eq!(choice.block_table[..2], first.block_table[..2]);
    assert_ne!(choice.block_table[2], first.block_table[2]);
    assert_eq!(sched.metrics().num_blocks_used, 4);
    sample_all(&mut sched, &out);
    sched.check_invariants().unwrap();
    // The first finishing early leaves the shared blocks to the choice.
    sched.abort(0).unwrap();
    assert_eq!(sched.metrics().num_blocks_used, 3);
    sched.abort(1).unwrap();
    assert_eq!(sched.metrics().num_blocks_used, 0);
}

#[test]
fn chunked_prefill_splits_a_long_prompt_between_decodes() {
    let mut sched = Scheduler::new(config(4, 64, 2, 8)).unwrap();
    sched.add(Sequence::new(0, vec![1, 2], 10)).unwrap();
    let out = sched.step();
    sample_all(&mut sched, &out);
    sched.add(Sequence::new(1, (0..20).collect(), 10)).unwrap();
    let mut chunks = Vec::new();
    for _ in 0..3 {
        let out = sched.step();
        let [decode, chunk] = &out.scheduled[..] else { panic!("{out:?}") };
        assert_eq!((decode.seq_id, decode.num_new_tokens(), decode.sample), (0, 1, true));
        assert_eq!(chunk.seq_id, 1);
        assert_eq!(
            chunk.token_ids,
            (chunk.start_position as u32..).take(chunk.num_new_tokens()).collect::<Vec<_>>()
        );
        chunks.push((chunk.start_position, chunk.num_new_tokens(), chunk.sample));
        sample_all(&mut sched, &out);
        sched.check_invariants().unwrap();
    }
    assert_eq!(chunks, [(0, 7, false), (7, 7, false), (14, 6, true)]);
    assert_eq!(sched.get(1).unwrap().generated(), [7]);
}

/// (seq id, start position, num_new_tokens) of each scheduled entry.
fn chunks_of(out: &SchedulerOutput) -> Vec<(u64, usize, usize)> {
    out.scheduled.iter().map(|s| (s.seq_id, s.start_position, s.num_new_tokens())).collect()
}

#[test]
fn prefill_caps_cut_prompt_work_only_while_a_sequence_decodes() {
    let cfg = SchedulerConfig {
        long_prefill_token_threshold: Some(5),
        max_num_partial_prefills: 1,
        ..config(4, 64, 4, 64)
    };
    let mut sched = Scheduler::new(cfg).unwrap();
    sched.add(Sequence::new(0, (0..20).collect(), 20)).unwrap();
    sched.add(Sequence::new(1, (0..30).collect(), 20)).unwrap();
    // Nothing decodes yet: both prompts take the budget, uncapped.
    let out = sched.step();
    assert_eq!(chunks_of(&out), [(0, 0, 20), (1, 0, 30)]);
    sample_all(&mut sched, &out);
    sched.add(Sequence::new(2, (100..112).collect(), 20)).unwrap();
    sched.add(Sequence::new(3, (200..203).collect(), 20)).unwrap();
    // Two decode; one prompt at a time runs, in chunks of 5, the oldest first.
    let mut steps = Vec::new();
    for _ in 0..4 {
        let out = sched.step();
        steps.push(chunks_of(&out));
        sample_all(&mut sched, &out);
        sched.check_invariants().unwrap();
    }
    assert_eq!(
        steps,
        [
            vec![(0, 20, 1), (1, 30, 1), (2, 0, 5)],
            vec![(0, 21, 1), (1, 31, 1), (2, 5, 5)],
            vec![(0, 22, 1), (1, 32, 1), (2, 10, 2)],
            vec![(0, 23, 1), (1, 33, 1), (2, 12, 1), (3, 0, 3)],
        ]
    );
}

#[test]
fn a_preempted_sequence_is_recomputed_under_the_caps() {
    // Blocks of 2: sequence 1 preempts 2 when it needs a fourth block.
    let cfg = SchedulerConfig {
        long_prefill_token_threshold: Some(2),
        max_num_partial_prefills: 1,
        ..config(2, 7, 4, 16)
    };
    let mut sched = Scheduler::new(cfg).unwrap();
    sched.add(Sequence::new(1, vec![1, 2, 3], 10)).unwrap();
    sched.add(Sequence::new(2, vec![4, 5, 6], 10)).unwrap();
    let mut preempted = false;
    for _ in 0..30 {
        if !sched.has_unfinished() {
            break;
        }
        let out = sched.step();
        preempted |= !out.preempted.is_empty();
        let prompt_len = |s: &ScheduledSeq| sched.get(s.seq_id).map_or(0, |seq| seq.prompt_len);
        let is_decode =
            |s: &ScheduledSeq| s.start_position >= prompt_len(s) && s.num_new_tokens() == 1 && s.sample;
        let prompt_chunks: Vec<usize> =
            out.scheduled.iter().filter(|s| !is_decode(s)).map(|s| s.num_new_tokens()).collect();
        if out.scheduled.iter().any(is_decode) {
            assert!(prompt_chunks.len() <= 1 && prompt_chunks.iter().all(|&n| n <= 2), "{out:?}");
        }
        sample_all(&mut sched, &out);
        sched.check_invariants().unwrap();
    }
    assert!(preempted);
    assert!(!sched.has_unfinished(), "{:?}", sched.metrics());
}

#[test]
fn requests_that_can_never_fit_are_rejected_at_add() {
    let mut cfg = config(4, 8, 2, 8);
    cfg.max_model_len = 64;
    let mut sched = Scheduler::new(cfg).unwrap();
    let too_long = sched.add(Sequence::new(0, vec![1; 60], 10)).unwrap_err();
    assert!(matches!(too_long, SchedulerError::TooLong { .. }));
    assert!(too_long.to_string().contains("60 prompt tokens + 10 max_tokens"), "{too_long}");
    let too_big = sched.add(Sequence::new(1, vec![1; 20], 20)).unwrap_err();
    assert!(matches!(too_big, SchedulerError::TooManyBlocks { num_blocks_needed: 10, num_blocks: 8, .. }));
    assert!(too_big.to_string().contains("need 10 KV blocks"), "{too_big}");
    assert!(matches!(sched.add(Sequence::new(2, vec![], 5)), Err(SchedulerError::EmptyPrompt { id: 2 })));
    assert!(matches!(sched.add(Sequence::new(3, vec![1], 0)), Err(SchedulerError::ZeroMaxTokens { id: 3 })));
    assert!(!sched.has_unfinished());
    sched.add(Sequence::new(4, vec![1; 16], 16)).unwrap(); // exactly the whole pool
    assert!(matches!(sched.add(Sequence::new(4, vec![1], 1)), Err(SchedulerError::DuplicateId { id: 4 })));
    let bad = SchedulerConfig { max_num_batched_tokens: 1, ..config(4, 8, 2, 8) };
    assert!(matches!(Scheduler::new(bad), Err(SchedulerError::InvalidConfig(_))));
    let bad = SchedulerConfig { long_prefill_token_threshold: Some(0), ..config(4, 8, 2, 8) };
    assert!(matches!(Scheduler::new(bad), Err(SchedulerError::InvalidConfig(_))));
    let bad = SchedulerConfig { max_num_partial_prefills: 0, ..config(4, 8, 2, 8) };
    assert!(matches!(Scheduler::new(bad), Err(SchedulerError::InvalidConfig(_))));
}

#[test]
fn abort_frees_blocks_in_any_state() {
    let mut sched = Scheduler::new(config(4, 16, 2, 64)).unwrap();
    for id in 0..3 {
        sched.add(Sequence::new(id, vec![id as u32; 9], 4)).unwrap();
    }
    let out = sched.step(); // 0 and 1 run, 2 waits (max_num_seqs)
    assert_eq!(sched.running_ids(), [0, 1]);
    assert_eq!(sched.block_manager().num_used_blocks(), 6);
    // Aborted while its step is in flight: its sampled token is ignored.
    assert_eq!(sched.abort(1).unwrap().status, SequenceStatus::Finished);
    sample_all(&mut sched, &out);
    assert_eq!(sched.block_manager().num_used_blocks(), 3);
    sched.abort(2).unwrap();
    sched.check_invariants().unwrap();
    assert!(matches!(sched.abort(2), Err(SchedulerError::UnknownSequence { id: 2 })));
    sched.abort(0).unwrap();
    assert!(!sched.has_unfinished());
    assert_eq!(sched.metrics().num_blocks_used, 0);
    sched.check_invariants().unwrap();
}

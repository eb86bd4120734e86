//! The engine thread without a GPU: a stand-in core that fails lets us check
//! that a failure reaches every open request with its first cause, makes the
//! engine unhealthy, and never leaves a caller waiting; that a failed engine
//! is rebuilt (with back-off, a bounded number of times in a row) and serves
//! again; and that invalid requests and a full waiting queue are refused at
//! submission, before they reach the thread.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wgserve::engine::core::{EngineError, EngineMetrics};
use wgserve::engine::request::{
    FinishReason, GenerateRequest, InvalidRequest, RequestError, RequestId, RequestOutput, TokenOutput, Usage,
};
use wgserve::engine::sampler::SamplingParams;
use wgserve::engine::scheduler::{SchedulerConfig, SchedulerMetrics};
use wgserve::engine::worker::{EngineHandle, Health, Restart, StepEngine, WorkerOptions};

enum Failure {
    Panic,
    Error,
}

/// Emits token 7 for every open request each step; fails at the first
/// step with `fail_with_open` requests open.
struct FailingCore {
    open: BTreeMap<RequestId, usize>,
    fail_with_open: usize,
    failure: Failure,
    config: SchedulerConfig,
    /// This many requests stay waiting (no steps run for them): a queue
    /// that never drains, to fill the bound on waiting requests.
    hold_waiting: usize,
    /// What its self-check reports.
    broken_invariants: bool,
}

impl FailingCore {
    fn new(fail_with_open: usize, failure: Failure) -> Self {
        Self {
            open: BTreeMap::new(),
            fail_with_open,
            failure,
            config: SchedulerConfig::default(),
            hold_waiting: 0,
            broken_invariants: false,
        }
    }
}

impl StepEngine for FailingCore {
    fn add_request(&mut self, id: RequestId, _request: GenerateRequest) -> Result<(), EngineError> {
        self.open.insert(id, 0);
        Ok(())
    }
    fn abort(&mut self, id: RequestId) -> Option<RequestOutput> {
        self.open.remove(&id).map(|n| RequestOutput::Finished {
            reason: FinishReason::Abort,
            usage: Usage { prompt_tokens: 1, completion_tokens: n, cached_tokens: 0 },
            text: String::new(),
            error: None,
        })
    }
    fn has_work(&self) -> bool {
        self.open.len() > self.hold_waiting
    }
    fn step(&mut self) -> Result<Vec<(RequestId, RequestOutput)>, EngineError> {
        if self.open.len() >= self.fail_with_open {
            let cause = format!("device lost with {} requests open", self.open.len());
            match self.failure {
                Failure::Panic => panic!("{cause}"),
                Failure::Error => return Err(EngineError::Failed(cause)),
            }
        }
        let token = RequestOutput::Token(TokenOutput {
            id: 7,
            text: "x".into(),
            logprob: None,
            top_logprobs: vec![],
        });
        for generated in self.open.values_mut() {
            *generated += 1;
        }
        Ok(self.open.keys().map(|&id| (id, token.clone())).collect())
    }
    fn metrics(&self) -> EngineMetrics {
        // Waiting: whatever `hold_waiting` keeps from running.
        let num_waiting = self.open.len().min(self.hold_waiting);
        EngineMetrics {
            scheduler: SchedulerMetrics { num_waiting, ..Default::default() },
            ..Default::default()
        }
    }
    fn scheduler_config(&self) -> &SchedulerConfig {
        &self.config
    }
    fn vocab_size(&self) -> usize {
        100
    }
    fn check_invariants(&self) -> Result<(), String> {
        if self.broken_invariants { Err("block 3 has 2 owners".into()) } else { Ok(()) }
    }
}

fn request() -> GenerateRequest {
    GenerateRequest::new(vec![1, 2, 3], SamplingParams { max_tokens: Some(10), ..SamplingParams::default() })
}

/// Reads a stream to its end and returns its final output.
fn final_output(stream: &mut wgserve::engine::worker::RequestStream) -> RequestOutput {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "stream never ended");
        match stream.blocking_next() {
            Some(output @ RequestOutput::Finished { .. }) => return output,
            Some(RequestOutput::Token(_)) => {}
            None => panic!("stream closed without a final output"),
        }
    }
}

fn assert_failed_with_cause(failure: Failure) {
    // The first request streams alone; the step after the second arrives fails.
    let (handle, thread) = EngineHandle::spawn(FailingCore::new(2, failure));
    let mut first = handle.submit(request()).unwrap();
    let mut second = handle.submit(request()).unwrap();
    for stream in [&mut first, &mut second] {
        match final_output(stream) {
            RequestOutput::Finished {
                reason: FinishReason::Error,
                error: Some(RequestError::Engine(cause)),
                ..
            } => assert!(cause.contains("device lost with 2 requests open"), "cause lost: {cause}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    match handle.health() {
        Health::Failed(cause) => assert!(cause.contains("device lost with 2 requests open"), "{cause}"),
        other => panic!("engine still reports {other:?}"),
    }
    let refused = handle.submit(request()).err().expect("a failed engine accepted a request");
    assert!(refused.to_string().contains("device lost with 2 requests open"), "{refused}");
    handle.shutdown();
    thread.join().expect("engine thread panicked past its guard");
}

#[test]
fn a_panic_in_a_step_fails_every_open_request_with_its_cause() {
    assert_failed_with_cause(Failure::Panic);
}

#[test]
fn an_error_in_a_step_fails_every_open_request_with_its_cause() {
    assert_failed_with_cause(Failure::Error);
}

#[test]
fn shutdown_aborts_requests_in_flight() {
    let (handle, thread) = EngineHandle::spawn(FailingCore::new(usize::MAX, Failure::Error));
    let mut stream = handle.submit(GenerateRequest::new(vec![1], SamplingParams::default())).unwrap();
    assert!(matches!(stream.blocking_next(), Some(RequestOutput::Token(_))));
    handle.shutdown();
    match final_output(&mut stream) {
        RequestOutput::Finished { reason, .. } => assert_eq!(reason, FinishReason::Abort),
        other => panic!("expected abort, got {other:?}"),
    }
    thread.join().unwrap();
    assert_eq!(handle.health(), Health::Stopped);
}

/// A restarting worker whose engines are `FailingCore`s failing at
/// `fail_with_open` open requests; the first `broken_builds` rebuilds fail.
fn restarting(max_restarts: u32, broken_builds: u32) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let mut builds = 0;
    let restart = Restart {
        build: Box::new(move || {
            builds += 1;
            if builds <= broken_builds {
                return Err(format!("no device (attempt {builds})"));
            }
            Ok(FailingCore::new(2, Failure::Error))
        }),
        max_restarts,
        first_backoff: Duration::from_millis(20),
    };
    let options = WorkerOptions { restart: Some(restart), ..WorkerOptions::default() };
    EngineHandle::spawn_with(FailingCore::new(2, Failure::Panic), options)
}

/// A request is accepted and streams a token (then its client leaves).
fn assert_serves(handle: &EngineHandle) {
    let mut stream = handle.submit(request()).unwrap();
    assert!(matches!(stream.blocking_next(), Some(RequestOutput::Token(_))));
}

/// Polls until `done` or fails after 30 s.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Two requests fail the engine; returns the cause each stream got.
fn fail_engine(handle: &EngineHandle) -> Vec<String> {
    let mut streams = [handle.submit(request()).unwrap(), handle.submit(request()).unwrap()];
    streams
        .iter_mut()
        .map(|stream| match final_output(stream) {
            RequestOutput::Finished { error: Some(RequestError::Engine(cause)), .. } => cause,
            other => panic!("expected an engine error, got {other:?}"),
        })
        .collect()
}

#[test]
fn a_failed_engine_is_rebuilt_and_serves_again() {
    let (handle, thread) = restarting(3, 1);
    for cause in fail_engine(&handle) {
        assert!(cause.contains("device lost with 2 requests open"), "{cause}");
    }
    // One broken build, then a good one: ready again, one restart counted.
    wait_for("the restart", || handle.health() == Health::Ready);
    assert_eq!(handle.metrics().engine_restarts, 1);
    // Served again: a lone request streams tokens to its end.
    assert_serves(&handle);
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn the_engine_thread_gives_up_after_its_restarts_and_ends() {
    let (handle, thread) = restarting(2, u32::MAX);
    fail_engine(&handle);
    // Both attempts fail to build: the thread ends by itself, health says
    // why, and new requests are refused with the cause.
    thread.join().unwrap();
    match handle.health() {
        Health::Failed(cause) => {
            assert!(cause.contains("device lost") && cause.contains("gave up after 2 restarts"), "{cause}");
            assert!(cause.contains("no device (attempt 2)"), "last error lost: {cause}");
        }
        other => panic!("expected a final failure, got {other:?}"),
    }
    assert_eq!(handle.metrics().engine_restarts, 0);
    assert!(matches!(handle.submit(request()), Err(EngineError::Failed(_))));
}

#[test]
fn submissions_while_restarting_are_refused_not_queued() {
    let restart = Restart {
        build: Box::new(|| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(FailingCore::new(2, Failure::Error))
        }),
        max_restarts: 1,
        first_backoff: Duration::from_millis(1),
    };
    let options = WorkerOptions { restart: Some(restart), ..WorkerOptions::default() };
    let (handle, thread) = EngineHandle::spawn_with(FailingCore::new(2, Failure::Error), options);
    fail_engine(&handle);
    assert!(matches!(handle.health(), Health::Restarting(_)), "{:?}", handle.health());
    assert!(matches!(handle.submit(request()), Err(EngineError::Restarting(_))));
    wait_for("the restart", || handle.health() == Health::Ready);
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn invalid_requests_are_refused_at_submission_naming_the_cause() {
    let (handle, thread) = EngineHandle::spawn(FailingCore::new(usize::MAX, Failure::Error));
    let bad_token = GenerateRequest::new(vec![1, 2, 100, 3], SamplingParams::default());
    match handle.submit(bad_token) {
        Err(EngineError::Invalid(InvalidRequest::TokenOutsideVocabulary {
            index: 2,
            token_id: 100,
            vocab_size: 100,
        })) => {}
        other => panic!("expected token 100 at 2 refused, got {:?}", other.err()),
    }
    let empty = GenerateRequest::new(vec![], SamplingParams::default());
    assert!(matches!(handle.submit(empty), Err(EngineError::Invalid(InvalidRequest::EmptyPrompt))));
    let hot = SamplingParams { temperature: f32::NAN, ..SamplingParams::default() };
    assert!(matches!(
        handle.submit(GenerateRequest::new(vec![1], hot)),
        Err(EngineError::Invalid(InvalidRequest::Params(e))) if e.param == "temperature"
    ));
    let too_long = SamplingParams { max_tokens: Some(1 << 20), ..SamplingParams::default() };
    assert!(matches!(
        handle.submit(GenerateRequest::new(vec![1], too_long)),
        Err(EngineError::Invalid(InvalidRequest::DoesNotFit(_)))
    ));
    // None of them reached the engine: it is healthy and serves.
    assert_eq!(handle.health(), Health::Ready);
    assert_serves(&handle);
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn a_full_waiting_queue_refuses_new_requests_until_it_drains() {
    let mut core = FailingCore::new(usize::MAX, Failure::Error);
    core.hold_waiting = usize::MAX;
    let options = WorkerOptions { max_waiting_requests: 3, ..WorkerOptions::default() };
    let (handle, thread) = EngineHandle::spawn_with(core, options);
    let mut waiting: Vec<_> = (0..3).map(|_| handle.submit(request()).unwrap()).collect();
    match handle.submit(request()) {
        Err(EngineError::QueueFull { waiting: 3 }) => {}
        other => panic!("expected a full queue, got {:?}", other.err()),
    }
    // A client leaving frees its place once the engine has seen the abort.
    waiting.pop();
    wait_for("a free place in the queue", || handle.submit(request()).map(|s| waiting.push(s)).is_ok());
    assert_eq!(waiting.len(), 3);
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn a_failed_self_check_when_idle_rebuilds_the_engine() {
    let restart = Restart {
        build: Box::new(|| Ok(FailingCore::new(usize::MAX, Failure::Error))),
        max_restarts: 1,
        first_backoff: Duration::from_millis(1),
    };
    let mut broken = FailingCore::new(usize::MAX, Failure::Error);
    broken.broken_invariants = true;
    let options = WorkerOptions { restart: Some(restart), ..WorkerOptions::default() };
    let (handle, thread) = EngineHandle::spawn_with(broken, options);
    // Work, then idle: the check runs once the client has left.
    assert_serves(&handle);
    wait_for("the rebuilt engine", || handle.metrics().engine_restarts == 1);
    wait_for("health", || handle.health() == Health::Ready);
    let metrics = handle.metrics();
    assert_eq!((metrics.self_checks, metrics.self_check_failures), (1, 1), "{metrics:?}");
    // The rebuilt engine passes its checks.
    assert_serves(&handle);
    wait_for("a passing self-check", || handle.metrics().self_checks == 2);
    assert_eq!(handle.metrics().self_check_failures, 1);
    handle.shutdown();
    thread.join().unwrap();
}

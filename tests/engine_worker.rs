//! The engine thread without a GPU: a stand-in core that fails lets us check
//! that a failure reaches every open request with its first cause, makes the
//! engine unhealthy, and never leaves a caller waiting.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wgserve::engine::core::{EngineError, EngineMetrics};
use wgserve::engine::request::{FinishReason, GenerateRequest, RequestId, RequestOutput, TokenOutput, Usage};
use wgserve::engine::sampler::SamplingParams;
use wgserve::engine::scheduler::SchedulerConfig;
use wgserve::engine::worker::{EngineHandle, Health, StepEngine};

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
}

impl FailingCore {
    fn new(fail_with_open: usize, failure: Failure) -> Self {
        Self { open: BTreeMap::new(), fail_with_open, failure, config: SchedulerConfig::default() }
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
        !self.open.is_empty()
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
        EngineMetrics::default()
    }
    fn scheduler_config(&self) -> &SchedulerConfig {
        &self.config
    }
    fn vocab_size(&self) -> usize {
        100
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
            RequestOutput::Finished { reason: FinishReason::Error, error: Some(cause), .. } => {
                assert!(cause.contains("device lost with 2 requests open"), "cause lost: {cause}")
            }
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

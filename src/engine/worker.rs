//! The engine thread and the handle the rest of the program talks to.
//!
//! One thread owns the model, the GPU and the KV cache (inside
//! `EngineCore`). Callers send commands and read their own request's output
//! stream (one request, many responses, decoupled from the call that
//! submitted it). Dropping a stream aborts its request; its blocks are
//! freed before the next step. A failure in a step, an error or a panic,
//! is recorded with its first cause, sent to every open stream, and makes
//! the engine unhealthy; nothing waits forever.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::core::{EngineCore, EngineError, EngineMetrics};
use super::request::{FinishReason, GenerateRequest, RequestId, RequestOutput, Usage};
use super::scheduler::SchedulerConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The first cause of the failure.
    Failed(String),
    Stopped,
}

enum Command {
    Submit { id: RequestId, request: Box<GenerateRequest>, output: mpsc::UnboundedSender<RequestOutput> },
    Abort(RequestId),
    Shutdown,
}

struct Shared {
    health: Mutex<Health>,
    metrics: Mutex<EngineMetrics>,
}

/// What the engine thread drives: `EngineCore`, or a stand-in in tests
/// (a core that fails, to check that failures reach every request).
pub trait StepEngine: Send + 'static {
    fn add_request(&mut self, id: RequestId, request: GenerateRequest) -> Result<(), EngineError>;
    fn abort(&mut self, id: RequestId) -> Option<RequestOutput>;
    fn has_work(&self) -> bool;
    fn step(&mut self) -> Result<Vec<(RequestId, RequestOutput)>, EngineError>;
    fn metrics(&self) -> EngineMetrics;
    /// The limits `submit` checks before a request reaches the thread.
    fn scheduler_config(&self) -> &SchedulerConfig;
    fn vocab_size(&self) -> usize;
}

impl StepEngine for EngineCore {
    fn add_request(&mut self, id: RequestId, request: GenerateRequest) -> Result<(), EngineError> {
        EngineCore::add_request(self, id, request)
    }
    fn abort(&mut self, id: RequestId) -> Option<RequestOutput> {
        EngineCore::abort(self, id)
    }
    fn has_work(&self) -> bool {
        EngineCore::has_work(self)
    }
    fn step(&mut self) -> Result<Vec<(RequestId, RequestOutput)>, EngineError> {
        EngineCore::step(self)
    }
    fn metrics(&self) -> EngineMetrics {
        EngineCore::metrics(self)
    }
    fn scheduler_config(&self) -> &SchedulerConfig {
        EngineCore::scheduler_config(self)
    }
    fn vocab_size(&self) -> usize {
        self.model().config.vocab_size
    }
}

/// Cheap to clone; every clone talks to the same engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    commands: std_mpsc::Sender<Command>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    scheduler_config: SchedulerConfig,
    vocab_size: usize,
}

/// The outputs of one request. Dropping it before the final output aborts
/// the request.
pub struct RequestStream {
    id: RequestId,
    receiver: mpsc::UnboundedReceiver<RequestOutput>,
    commands: std_mpsc::Sender<Command>,
    finished: bool,
}

impl RequestStream {
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The next output; `None` after the final one.
    pub async fn next(&mut self) -> Option<RequestOutput> {
        if self.finished {
            return None;
        }
        let output = self.receiver.recv().await;
        self.note(output)
    }

    /// As `next`, for a hand-written future or body (an SSE response body
    /// that owns its stream, so that dropping the body aborts the request).
    pub fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<RequestOutput>> {
        if self.finished {
            return std::task::Poll::Ready(None);
        }
        match self.receiver.poll_recv(cx) {
            std::task::Poll::Ready(output) => std::task::Poll::Ready(self.note(output)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// As `next`, for callers outside an async runtime.
    pub fn blocking_next(&mut self) -> Option<RequestOutput> {
        if self.finished {
            return None;
        }
        let output = self.receiver.blocking_recv();
        self.note(output)
    }

    fn note(&mut self, output: Option<RequestOutput>) -> Option<RequestOutput> {
        match &output {
            Some(RequestOutput::Finished { .. }) | None => self.finished = true,
            Some(RequestOutput::Token(_)) => {}
        }
        output
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.commands.send(Command::Abort(self.id));
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them half-written
    // (plain assignments), so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EngineHandle {
    /// Starts the engine thread around `core`.
    pub fn spawn<E: StepEngine>(core: E) -> (EngineHandle, JoinHandle<()>) {
        let (commands, receiver) = std_mpsc::channel();
        let shared =
            Arc::new(Shared { health: Mutex::new(Health::Ready), metrics: Mutex::new(core.metrics()) });
        let handle = EngineHandle {
            commands,
            shared: shared.clone(),
            next_id: Arc::new(AtomicU64::new(1)),
            scheduler_config: core.scheduler_config().clone(),
            vocab_size: core.vocab_size(),
        };
        let thread = std::thread::Builder::new()
            .name("wgserve-engine".into())
            .spawn(move || run(core, receiver, shared))
            .unwrap_or_else(|e| panic!("cannot start the engine thread: {e}"));
        (handle, thread)
    }

    /// Queues a request and returns its output stream, or says at once why
    /// it can never run.
    pub fn submit(&self, request: GenerateRequest) -> Result<RequestStream, EngineError> {
        match self.health() {
            Health::Ready => {}
            Health::Failed(cause) => return Err(EngineError::Failed(cause)),
            Health::Stopped => return Err(EngineError::Stopped),
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.params.validate(self.vocab_size)?;
        let max_tokens =
            self.scheduler_config.max_tokens_for(request.prompt.len(), request.params.max_tokens);
        self.scheduler_config.check_fits(id, request.prompt.len(), max_tokens)?;
        let (output, receiver) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Submit { id, request: Box::new(request), output })
            .map_err(|_| EngineError::Stopped)?;
        Ok(RequestStream { id, receiver, commands: self.commands.clone(), finished: false })
    }

    pub fn abort(&self, id: RequestId) {
        let _ = self.commands.send(Command::Abort(id));
    }

    /// Stops the engine: open requests end with `abort`.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }

    pub fn health(&self) -> Health {
        lock(&self.shared.health).clone()
    }

    /// As of the last step.
    pub fn metrics(&self) -> EngineMetrics {
        *lock(&self.shared.metrics)
    }

    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler_config
    }
}

/// The engine thread's loop: commands in, one step, outputs out.
fn run<E: StepEngine>(mut core: E, commands: std_mpsc::Receiver<Command>, shared: Arc<Shared>) {
    let mut streams: HashMap<RequestId, mpsc::UnboundedSender<RequestOutput>> = HashMap::new();
    let mut failure: Option<String> = None;
    loop {
        // Idle: sleep until a command arrives. Busy: take what is queued.
        let mut pending = Vec::new();
        if !core.has_work() || failure.is_some() {
            match commands.recv() {
                Ok(command) => pending.push(command),
                Err(_) => break,
            }
        }
        pending.extend(commands.try_iter());
        for command in pending {
            match command {
                Command::Submit { id, request, output } => {
                    if let Some(cause) = &failure {
                        let _ = output.send(error_output(cause));
                    } else if let Err(e) = core.add_request(id, *request) {
                        let _ = output.send(error_output(&e.to_string()));
                    } else {
                        streams.insert(id, output);
                    }
                }
                Command::Abort(id) => {
                    if let Some(stream) = streams.remove(&id)
                        && let Some(output) = core.abort(id)
                    {
                        let _ = stream.send(output);
                    }
                }
                Command::Shutdown => {
                    for (id, stream) in streams.drain() {
                        if let Some(output) = core.abort(id) {
                            let _ = stream.send(output);
                        }
                    }
                    *lock(&shared.health) = Health::Stopped;
                    *lock(&shared.metrics) = core.metrics();
                    return;
                }
            }
        }
        if failure.is_some() || !core.has_work() {
            *lock(&shared.metrics) = core.metrics();
            continue;
        }
        let result = catch_unwind(AssertUnwindSafe(|| core.step()));
        let cause = match result {
            Ok(Ok(outputs)) => {
                // Before the outputs: a client that saw its request end
                // finds it counted.
                *lock(&shared.metrics) = core.metrics();
                route(&mut core, &mut streams, outputs);
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(format!("panic in an engine step: {}", panic_detail(panic.as_ref()))),
        };
        if let Some(cause) = cause {
            tracing::error!(%cause, "engine step failed; failing every open request");
            *lock(&shared.health) = Health::Failed(cause.clone());
            for (_, stream) in streams.drain() {
                let _ = stream.send(error_output(&cause));
            }
            failure = Some(cause);
        }
        *lock(&shared.metrics) = core.metrics();
    }
}

/// Sends each output to its stream; a stream whose reader is gone aborts
/// its request at once, so its blocks are free for the next step.
fn route<E: StepEngine>(
    core: &mut E,
    streams: &mut HashMap<RequestId, mpsc::UnboundedSender<RequestOutput>>,
    outputs: Vec<(RequestId, RequestOutput)>,
) {
    for (id, output) in outputs {
        let last = matches!(output, RequestOutput::Finished { .. });
        let delivered = streams.get(&id).is_some_and(|stream| stream.send(output).is_ok());
        if last || !delivered {
            streams.remove(&id);
        }
        if !delivered && !last {
            core.abort(id);
        }
    }
}

fn error_output(cause: &str) -> RequestOutput {
    RequestOutput::Finished {
        reason: FinishReason::Error,
        usage: Usage::default(),
        text: String::new(),
        error: Some(cause.to_string()),
    }
}

/// The message a panic was raised with.
pub(super) fn panic_detail(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

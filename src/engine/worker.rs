//! The engine thread and the handle the rest of the program talks to.
//!
//! One thread owns the model, the GPU and the KV cache (inside
//! `EngineCore`). Callers send commands and read their own request's output
//! stream (one request, many responses, decoupled from the call that
//! submitted it). Dropping a stream aborts its request; its blocks are
//! freed before the next step.
//!
//! Failure containment: `submit` refuses what can never run (invalid
//! input, too long, a full waiting queue) before it reaches the thread; a
//! request that fails inside a step ends alone (the core sees to that).
//! Only an engine-wide failure, an error or a panic out of a step (the
//! device, the forward pass), reaches every open stream with its cause and
//! makes the engine unhealthy. With a `Restart`, the thread then drops the
//! engine and builds a new one (a new device, the model reloaded) with
//! back-off, and serves again; when the restarts are spent it ends, and
//! its owner (the server) exits so that a supervisor can restart the
//! process. Nothing waits forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use super::core::{EngineCore, EngineError, EngineMetrics};
use super::engine_thread::EngineThread;
use super::request::{GenerateRequest, RequestId, RequestOutput};
use super::scheduler::SchedulerConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The engine failed with this first cause and is being rebuilt.
    Restarting(String),
    /// The first cause of the failure; no restart will follow.
    Failed(String),
    Stopped,
}

pub(super) enum Command {
    Submit { id: RequestId, request: Box<GenerateRequest>, output: mpsc::UnboundedSender<RequestOutput> },
    Abort(RequestId),
    Shutdown,
}

pub(super) struct Shared {
    pub(super) health: Mutex<Health>,
    pub(super) metrics: Mutex<EngineMetrics>,
    pub(super) admission: Mutex<Admission>,
}

/// How many requests wait, counted so that `submit` can bound it without
/// asking the engine thread: the engine's waiting queue as of its last
/// look, plus the submissions it has not taken from the channel yet.
#[derive(Debug, Default)]
pub(super) struct Admission {
    submitted: u64,
    pub(super) taken: u64,
    pub(super) waiting_in_engine: usize,
}

impl Admission {
    pub(super) fn waiting(&self) -> usize {
        self.waiting_in_engine + (self.submitted - self.taken) as usize
    }
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
    /// The engine's bookkeeping (blocks, ref counts, prefix-cache index)
    /// is consistent; `Err` says what broke.
    fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }
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
        EngineCore::vocab_size(self)
    }
    fn check_invariants(&self) -> Result<(), String> {
        EngineCore::check_invariants(self)
    }
}

/// How the engine thread runs its engine.
pub struct WorkerOptions<E> {
    /// `submit` refuses a request (`QueueFull`) while this many wait.
    pub max_waiting_requests: usize,
    /// How to rebuild a failed engine; `None`: a failure is final.
    pub restart: Option<Restart<E>>,
}

impl<E> Default for WorkerOptions<E> {
    fn default() -> Self {
        Self { max_waiting_requests: usize::MAX, restart: None }
    }
}

/// Rebuilding a failed engine, a bounded number of times.
pub struct Restart<E> {
    /// A fresh engine: a new device, the model loaded again. The rebuilt
    /// engine must take the same requests (same limits and vocabulary):
    /// the handle checked them against the first one.
    pub build: Box<dyn FnMut() -> Result<E, String> + Send>,
    /// Restarts in a row (failures less than `HEALTHY_RUN` apart) before
    /// the thread gives up.
    pub max_restarts: u32,
    /// The wait before the first attempt; it doubles with each attempt.
    pub first_backoff: Duration,
}

/// Cheap to clone; every clone talks to the same engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    commands: std_mpsc::Sender<Command>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    scheduler_config: SchedulerConfig,
    vocab_size: usize,
    max_waiting_requests: usize,
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
    /// Starts the engine thread around `core`; a failure is final.
    pub fn spawn<E: StepEngine>(core: E) -> (EngineHandle, JoinHandle<()>) {
        Self::spawn_with(core, WorkerOptions::default())
    }

    /// Starts the engine thread around `core`. The thread ends on
    /// `shutdown`, or when a failed engine cannot be rebuilt.
    pub fn spawn_with<E: StepEngine>(core: E, options: WorkerOptions<E>) -> (EngineHandle, JoinHandle<()>) {
        let (commands, receiver) = std_mpsc::channel();
        let shared = Arc::new(Shared {
            health: Mutex::new(Health::Ready),
            metrics: Mutex::new(core.metrics()),
            admission: Mutex::new(Admission::default()),
        });
        let handle = EngineHandle {
            commands,
            shared: shared.clone(),
            next_id: Arc::new(AtomicU64::new(1)),
            scheduler_config: core.scheduler_config().clone(),
            vocab_size: core.vocab_size(),
            max_waiting_requests: options.max_waiting_requests,
        };
        let thread = std::thread::Builder::new()
            .name("wgserve-engine".into())
            .spawn(move || EngineThread::new(core, receiver, shared, options.restart).run())
            .unwrap_or_else(|e| panic!("cannot start the engine thread: {e}"));
        (handle, thread)
    }

    /// Queues a request and returns its output stream, or says at once why
    /// it cannot run: invalid input, too long, the engine unavailable, or
    /// the waiting queue full.
    pub fn submit(&self, request: GenerateRequest) -> Result<RequestStream, EngineError> {
        match self.health() {
            Health::Ready => {}
            Health::Restarting(cause) => return Err(EngineError::Restarting(cause)),
            Health::Failed(cause) => return Err(EngineError::Failed(cause)),
            Health::Stopped => return Err(EngineError::Stopped),
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.validate(id, self.vocab_size, &self.scheduler_config)?;
        let (output, receiver) = mpsc::unbounded_channel();
        {
            // Held across the send, so that the thread cannot take this
            // submission before it is counted.
            let mut admission = lock(&self.shared.admission);
            let waiting = admission.waiting();
            if waiting >= self.max_waiting_requests {
                return Err(EngineError::QueueFull { waiting });
            }
            self.commands
                .send(Command::Submit { id, request: Box::new(request), output })
                .map_err(|_| EngineError::Stopped)?;
            admission.submitted += 1;
        }
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

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
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

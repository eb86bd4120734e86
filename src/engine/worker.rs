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

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::core::{EngineCore, EngineError, EngineMetrics};
use super::request::{FinishReason, GenerateRequest, RequestError, RequestId, RequestOutput, Usage};
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

enum Command {
    Submit { id: RequestId, request: Box<GenerateRequest>, output: mpsc::UnboundedSender<RequestOutput> },
    Abort(RequestId),
    Shutdown,
}

struct Shared {
    health: Mutex<Health>,
    metrics: Mutex<EngineMetrics>,
    admission: Mutex<Admission>,
}

/// How many requests wait, counted so that `submit` can bound it without
/// asking the engine thread: the engine's waiting queue as of its last
/// look, plus the submissions it has not taken from the channel yet.
#[derive(Debug, Default)]
struct Admission {
    submitted: u64,
    taken: u64,
    waiting_in_engine: usize,
}

impl Admission {
    fn waiting(&self) -> usize {
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

/// A failure this long after the last (re)start begins a new series of
/// restarts: a device lost once a week must not add up to giving up.
const HEALTHY_RUN: Duration = Duration::from_secs(300);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
            .spawn(move || Worker::new(core, receiver, shared, options.restart).run())
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

/// The engine thread: commands in, one step, outputs out; and after an
/// engine-wide failure, the restarts.
struct Worker<E: StepEngine> {
    core: Option<E>,
    commands: std_mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    streams: HashMap<RequestId, mpsc::UnboundedSender<RequestOutput>>,
    restart: Option<Restart<E>>,
    /// Set while no engine runs: the cause, for submissions meanwhile.
    failure: Option<String>,
    /// Counters of the engines that failed before this one.
    earlier: EngineMetrics,
    /// When the current engine started, and restarts in a row so far.
    started: Instant,
    restarts_in_a_row: u32,
    /// Steps ran since the last self-check.
    stepped: bool,
    /// Self-checks run and failed (they outlive each engine).
    self_checks: u64,
    self_check_failures: u64,
}

enum Flow {
    Continue,
    Stop,
}

impl<E: StepEngine> Worker<E> {
    fn new(
        core: E,
        commands: std_mpsc::Receiver<Command>,
        shared: Arc<Shared>,
        restart: Option<Restart<E>>,
    ) -> Self {
        Self {
            core: Some(core),
            commands,
            shared,
            streams: HashMap::new(),
            restart,
            failure: None,
            earlier: EngineMetrics::default(),
            started: Instant::now(),
            restarts_in_a_row: 0,
            stepped: false,
            self_checks: 0,
            self_check_failures: 0,
        }
    }

    fn run(mut self) {
        loop {
            let busy = self.core.as_ref().is_some_and(StepEngine::has_work);
            // Idle: sleep until a command arrives. Busy: take what is queued.
            let mut pending = Vec::new();
            if !busy {
                match self.commands.recv() {
                    Ok(command) => pending.push(command),
                    Err(_) => return,
                }
            }
            pending.extend(self.commands.try_iter());
            if let Flow::Stop = self.handle_commands(pending) {
                return;
            }
            let Some(core) = self.core.as_mut() else { continue };
            if !core.has_work() {
                if let Some(cause) = self.self_check()
                    && let Flow::Stop = self.fail(cause)
                {
                    return;
                }
                self.publish();
                continue;
            }
            self.stepped = true;
            let result = catch_unwind(AssertUnwindSafe(|| core.step()));
            let cause = match result {
                Ok(Ok(outputs)) => {
                    // Before the outputs: a client that saw its request end
                    // finds it counted.
                    self.publish();
                    self.route(outputs);
                    None
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(panic) => Some(format!("panic in an engine step: {}", panic_detail(panic.as_ref()))),
            };
            // The step that ended the last request: check now, not when
            // the next command wakes the thread.
            let cause = match cause {
                None if self.core.as_ref().is_some_and(|core| !core.has_work()) => self.self_check(),
                cause => cause,
            };
            self.publish();
            if let Some(cause) = cause
                && let Flow::Stop = self.fail(cause)
            {
                return;
            }
        }
    }

    fn handle_commands(&mut self, commands: Vec<Command>) -> Flow {
        let mut taken = 0;
        for command in commands {
            match command {
                Command::Submit { id, request, output } => {
                    taken += 1;
                    let added = match (&mut self.core, &self.failure) {
                        (Some(core), None) => {
                            core.add_request(id, *request).map_err(|e| RequestError::Request(e.to_string()))
                        }
                        (_, Some(cause)) => Err(RequestError::Engine(cause.clone())),
                        (None, None) => Err(RequestError::Engine("the engine is not running".into())),
                    };
                    match added {
                        Ok(()) => {
                            self.streams.insert(id, output);
                        }
                        Err(error) => {
                            let _ = output.send(error_output(error));
                        }
                    }
                }
                Command::Abort(id) => {
                    if let Some(stream) = self.streams.remove(&id)
                        && let Some(output) = self.core.as_mut().and_then(|core| core.abort(id))
                    {
                        let _ = stream.send(output);
                    }
                }
                Command::Shutdown => {
                    for (id, stream) in std::mem::take(&mut self.streams) {
                        if let Some(output) = self.core.as_mut().and_then(|core| core.abort(id)) {
                            let _ = stream.send(output);
                        }
                    }
                    *lock(&self.shared.health) = Health::Stopped;
                    self.publish();
                    return Flow::Stop;
                }
            }
        }
        let mut admission = lock(&self.shared.admission);
        admission.taken += taken;
        admission.waiting_in_engine =
            self.core.as_ref().map_or(0, |core| core.metrics().scheduler.num_waiting);
        Flow::Continue
    }

    /// Each time the engine falls idle after work, its bookkeeping is
    /// checked (cheap then: no sequences, only the block pool). A broken
    /// invariant is a bug that would corrupt later answers, so it fails
    /// the engine, which is rebuilt clean; `Some(cause)` then.
    fn self_check(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.stepped) {
            return None;
        }
        let core = self.core.as_ref()?;
        self.self_checks += 1;
        let result = catch_unwind(AssertUnwindSafe(|| core.check_invariants()));
        let cause = match result {
            Ok(Ok(())) => return None,
            Ok(Err(broken)) => broken,
            Err(panic) => format!("panic: {}", panic_detail(panic.as_ref())),
        };
        self.self_check_failures += 1;
        Some(format!("the engine's self-check failed: {cause}"))
    }

    /// The metrics and the waiting count as of now.
    fn publish(&self) {
        let metrics = match &self.core {
            Some(core) => core.metrics().after(&self.earlier),
            None => self.earlier,
        };
        lock(&self.shared.admission).waiting_in_engine = metrics.scheduler.num_waiting;
        *lock(&self.shared.metrics) = EngineMetrics {
            self_checks: self.self_checks,
            self_check_failures: self.self_check_failures,
            ..metrics
        };
    }

    /// An engine-wide failure: every open request gets the cause; then the
    /// engine is rebuilt if it may be.
    fn fail(&mut self, cause: String) -> Flow {
        tracing::error!(%cause, "engine step failed; failing every open request");
        // Health first: a client that sees its request fail finds the
        // engine unhealthy.
        *lock(&self.shared.health) = match &self.restart {
            Some(_) => Health::Restarting(cause.clone()),
            None => Health::Failed(cause.clone()),
        };
        for (_, stream) in self.streams.drain() {
            let _ = stream.send(error_output(RequestError::Engine(cause.clone())));
        }
        if let Some(core) = self.core.take() {
            // Counters go on from here in the next engine; the dead one's
            // queue and blocks are gone with it.
            let mut last = core.metrics().after(&self.earlier);
            last.scheduler = Default::default();
            self.earlier = last;
        }
        self.failure = Some(cause.clone());
        {
            let mut admission = lock(&self.shared.admission);
            admission.waiting_in_engine = 0;
        }
        let Some(restart) = &self.restart else {
            self.publish();
            return Flow::Continue;
        };
        if self.started.elapsed() >= HEALTHY_RUN {
            self.restarts_in_a_row = 0;
        }
        let max_restarts = restart.max_restarts;
        let mut backoff = restart.first_backoff;
        self.publish();
        let mut last_error = cause.clone();
        while self.restarts_in_a_row < max_restarts {
            self.restarts_in_a_row += 1;
            tracing::warn!(
                attempt = self.restarts_in_a_row,
                max_restarts,
                "restarting the engine in {backoff:?}"
            );
            if let Flow::Stop = self.wait(backoff) {
                return Flow::Stop;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let Some(restart) = &mut self.restart else { break };
            match catch_unwind(AssertUnwindSafe(|| (restart.build)())) {
                Ok(Ok(core)) => {
                    self.core = Some(core);
                    self.failure = None;
                    self.started = Instant::now();
                    self.earlier.engine_restarts += 1;
                    tracing::warn!("the engine restarted after: {cause}");
                    self.publish();
                    *lock(&self.shared.health) = Health::Ready;
                    return Flow::Continue;
                }
                Ok(Err(e)) => last_error = e,
                Err(panic) => {
                    last_error = format!("panic while rebuilding: {}", panic_detail(panic.as_ref()))
                }
            }
            tracing::error!(cause = %last_error, "the engine could not be rebuilt");
        }
        let cause = format!("{cause} (gave up after {max_restarts} restarts in a row; last: {last_error})");
        tracing::error!(%cause, "the engine is down for good");
        *lock(&self.shared.health) = Health::Failed(cause);
        Flow::Stop
    }

    /// Sleeps for `duration` while answering commands: submissions get the
    /// failure, a shutdown ends the wait.
    fn wait(&mut self, duration: Duration) -> Flow {
        let deadline = Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Flow::Continue;
            }
            match self.commands.recv_timeout(left) {
                Ok(command) => {
                    if let Flow::Stop = self.handle_commands(vec![command]) {
                        return Flow::Stop;
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => return Flow::Continue,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return Flow::Stop,
            }
        }
    }

    /// Sends each output to its stream; a stream whose reader is gone
    /// aborts its request at once, so its blocks are free for the next step.
    fn route(&mut self, outputs: Vec<(RequestId, RequestOutput)>) {
        for (id, output) in outputs {
            let last = matches!(output, RequestOutput::Finished { .. });
            let delivered = self.streams.get(&id).is_some_and(|stream| stream.send(output).is_ok());
            if last || !delivered {
                self.streams.remove(&id);
            }
            if !delivered
                && !last
                && let Some(core) = self.core.as_mut()
            {
                core.abort(id);
            }
        }
    }
}

fn error_output(error: RequestError) -> RequestOutput {
    RequestOutput::Finished {
        reason: FinishReason::Error,
        usage: Usage::default(),
        text: String::new(),
        error: Some(error),
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

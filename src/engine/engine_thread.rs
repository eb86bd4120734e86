//! The engine thread's loop, behind the handle in `worker`: commands in,
//! one step, outputs out; after an engine-wide failure, every open stream
//! gets the cause and the engine is rebuilt with back-off (a `Restart`),
//! until restarts in a row are spent and the thread ends.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::core::EngineMetrics;
use super::request::{FinishReason, RequestError, RequestId, RequestOutput, Usage};
use super::worker::{Command, Health, Restart, Shared, StepEngine, lock, panic_detail};

/// A failure this long after the last (re)start begins a new series of
/// restarts: a device lost once a week must not add up to giving up.
const HEALTHY_RUN: Duration = Duration::from_secs(300);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The engine thread: commands in, one step, outputs out; and after an
/// engine-wide failure, the restarts.
pub(super) struct EngineThread<E: StepEngine> {
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

impl<E: StepEngine> EngineThread<E> {
    pub(super) fn new(
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

    pub(super) fn run(mut self) {
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

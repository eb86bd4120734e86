//! The embedding worker: one thread owns the encoder (with its own GPU
//! device) and answers embedding requests. It does not go through the chat
//! engine's scheduler: an encoder has no KV cache and no decode steps, and
//! one forward pass answers every input in it. Inputs of all queued
//! requests share each pass, taken one per request in turn (so a small
//! request does not wait behind a large one) up to the encoder's token and
//! input limits. A request whose receiver is dropped (the client went away)
//! is skipped. A failed pass, an error or a panic, fails every queued
//! request with its cause and every later one at once.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::model::batch::EncoderBatch;
use crate::model::bert::Bert;

use super::worker::{Health, lock, panic_detail};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddingError {
    #[error("there is nothing to embed")]
    NoInputs,
    /// Input `index` cannot run; the message says why, with the numbers.
    /// `position`: the offending token's place in the input, if one is.
    #[error("input {index}: {message}")]
    InvalidInput { index: usize, position: Option<usize>, message: String },
    #[error("the embedding model has failed: {0}")]
    Failed(String),
    #[error("the embedding model has stopped")]
    Stopped,
}

/// What the worker needs of an encoder (a stand-in in tests, without a GPU).
pub trait Encoder: Send + 'static {
    fn limits(&self) -> EncoderLimits;
    /// One vector per input, in order; the inputs fit the limits.
    fn encode(&mut self, inputs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderLimits {
    /// Most tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Most inputs in one forward pass.
    pub max_batch_inputs: usize,
    /// Most tokens of one input (at most `max_batch_tokens`).
    pub max_input_tokens: usize,
    pub vocab_size: usize,
    /// Length of each vector.
    pub dimensions: usize,
}

impl Encoder for Bert {
    fn limits(&self) -> EncoderLimits {
        EncoderLimits {
            max_batch_tokens: self.options().max_batch_tokens,
            max_batch_inputs: self.options().max_seqs,
            max_input_tokens: self.sentence.max_seq_length,
            vocab_size: self.config.vocab_size,
            dimensions: self.dimensions(),
        }
    }

    fn encode(&mut self, inputs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let mut batch = EncoderBatch::default();
        for input in inputs {
            batch.push_sequence(input);
        }
        let flat = self.forward(&batch).map_err(|e| e.to_string())?;
        Ok(flat.chunks(self.dimensions()).map(<[f32]>::to_vec).collect())
    }
}

/// One vector per input, in input order; or why there are none.
pub type Embeddings = Result<Vec<Vec<f32>>, EmbeddingError>;

/// Where a submitted request's vectors arrive.
pub type EmbeddingReceiver = oneshot::Receiver<Embeddings>;

type Reply = oneshot::Sender<Embeddings>;

enum Command {
    Embed { inputs: Vec<Vec<u32>>, reply: Reply },
    Shutdown,
}

/// One request in the worker: its inputs and the vectors of the first
/// `done.len()` of them.
struct Job {
    inputs: Vec<Vec<u32>>,
    done: Vec<Vec<f32>>,
    reply: Reply,
}

/// Cheap to clone; every clone talks to the same worker thread.
#[derive(Clone)]
pub struct EmbeddingHandle {
    commands: std_mpsc::Sender<Command>,
    health: Arc<Mutex<Health>>,
    limits: EncoderLimits,
}

impl EmbeddingHandle {
    /// Starts the worker thread around `encoder`.
    pub fn spawn<E: Encoder>(encoder: E) -> (EmbeddingHandle, JoinHandle<()>) {
        let (commands, receiver) = std_mpsc::channel();
        let health = Arc::new(Mutex::new(Health::Ready));
        let handle = EmbeddingHandle { commands, health: health.clone(), limits: encoder.limits() };
        let thread = std::thread::Builder::new()
            .name("wgserve-embed".into())
            .spawn(move || run(encoder, receiver, health))
            .unwrap_or_else(|e| panic!("cannot start the embedding thread: {e}"));
        (handle, thread)
    }

    pub fn limits(&self) -> &EncoderLimits {
        &self.limits
    }

    pub fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// Queues `inputs` (token ids each) and returns where the vectors will
    /// come, in input order; or says at once why they can never run.
    pub fn submit(&self, inputs: Vec<Vec<u32>>) -> Result<EmbeddingReceiver, EmbeddingError> {
        match self.health() {
            Health::Ready => {}
            Health::Failed(cause) | Health::Restarting(cause) => return Err(EmbeddingError::Failed(cause)),
            Health::Stopped => return Err(EmbeddingError::Stopped),
        }
        self.check(&inputs)?;
        let (reply, receiver) = oneshot::channel();
        self.commands.send(Command::Embed { inputs, reply }).map_err(|_| EmbeddingError::Stopped)?;
        Ok(receiver)
    }

    fn check(&self, inputs: &[Vec<u32>]) -> Result<(), EmbeddingError> {
        if inputs.is_empty() {
            return Err(EmbeddingError::NoInputs);
        }
        let limits = &self.limits;
        for (index, input) in inputs.iter().enumerate() {
            let invalid =
                |message: String| Err(EmbeddingError::InvalidInput { index, position: None, message });
            if input.is_empty() {
                return invalid("an input needs at least one token".into());
            }
            if input.len() > limits.max_input_tokens {
                return invalid(format!(
                    "{} tokens; the model takes at most {}",
                    input.len(),
                    limits.max_input_tokens
                ));
            }
            if let Some(position) = input.iter().position(|&id| id as usize >= limits.vocab_size) {
                return Err(EmbeddingError::InvalidInput {
                    index,
                    position: Some(position),
                    message: format!(
                        "token id {} is outside the vocabulary of {}",
                        input[position], limits.vocab_size
                    ),
                });
            }
        }
        Ok(())
    }

    /// Stops the worker: queued requests get `Stopped`.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// The worker's loop: take what is queued, run one pass, answer the
/// requests it completed.
fn run<E: Encoder>(mut encoder: E, commands: std_mpsc::Receiver<Command>, health: Arc<Mutex<Health>>) {
    let limits = encoder.limits();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut failure: Option<String> = None;
    loop {
        let mut pending = Vec::new();
        if queue.is_empty() {
            match commands.recv() {
                Ok(command) => pending.push(command),
                Err(_) => return,
            }
        }
        pending.extend(commands.try_iter());
        for command in pending {
            match command {
                Command::Embed { inputs, reply } => match &failure {
                    Some(cause) => {
                        let _ = reply.send(Err(EmbeddingError::Failed(cause.clone())));
                    }
                    None => queue.push_back(Job { inputs, done: Vec::new(), reply }),
                },
                Command::Shutdown => {
                    *lock(&health) = Health::Stopped;
                    for job in queue.drain(..) {
                        let _ = job.reply.send(Err(EmbeddingError::Stopped));
                    }
                    return;
                }
            }
        }
        queue.retain(|job| !job.reply.is_closed());
        if queue.is_empty() {
            continue;
        }
        let plan = plan_batch(&queue, &limits);
        let inputs: Vec<&[u32]> =
            plan.iter().map(|&(job, input)| queue[job].inputs[input].as_slice()).collect();
        let result = if plan.is_empty() {
            // Only when an encoder's limits contradict themselves.
            Ok(Err(format!("an input does not fit in one pass under {limits:?}")))
        } else {
            catch_unwind(AssertUnwindSafe(|| encoder.encode(&inputs)))
        };
        let cause = match result {
            Ok(Ok(vectors)) if vectors.len() == plan.len() => {
                for (&(job, _), vector) in plan.iter().zip(vectors) {
                    queue[job].done.push(vector);
                }
                answer_finished(&mut queue);
                continue;
            }
            Ok(Ok(vectors)) => format!("{} vectors for {} inputs", vectors.len(), plan.len()),
            Ok(Err(cause)) => cause,
            Err(panic) => format!("panic in an embedding pass: {}", panic_detail(panic.as_ref())),
        };
        tracing::error!(%cause, "an embedding pass failed; failing every queued request");
        *lock(&health) = Health::Failed(cause.clone());
        for job in queue.drain(..) {
            let _ = job.reply.send(Err(EmbeddingError::Failed(cause.clone())));
        }
        failure = Some(cause);
    }
}

/// The (request, input) pairs of the next pass: the next input of each
/// queued request in turn, until the token or input limit is reached.
/// Each request's inputs go in order, so its vectors come back in order.
fn plan_batch(queue: &VecDeque<Job>, limits: &EncoderLimits) -> Vec<(usize, usize)> {
    let mut next: Vec<usize> = queue.iter().map(|job| job.done.len()).collect();
    let mut plan = Vec::new();
    let mut tokens = 0;
    loop {
        let mut took_any = false;
        for (j, job) in queue.iter().enumerate() {
            let Some(input) = job.inputs.get(next[j]) else { continue };
            if plan.len() == limits.max_batch_inputs || tokens + input.len() > limits.max_batch_tokens {
                return plan;
            }
            tokens += input.len();
            plan.push((j, next[j]));
            next[j] += 1;
            took_any = true;
        }
        if !took_any {
            return plan;
        }
    }
}

/// Sends the vectors of every request whose inputs are all done.
fn answer_finished(queue: &mut VecDeque<Job>) {
    let mut i = 0;
    while i < queue.len() {
        if queue[i].done.len() == queue[i].inputs.len() {
            if let Some(job) = queue.remove(i) {
                let _ = job.reply.send(Ok(job.done));
            }
        } else {
            i += 1;
        }
    }
}

//! The engine: turns requests into forward steps over the paged KV cache.
//! It works on token ids and never sees wgpu types or HTTP.
//!
//! - `scheduler` (with `block_manager`, `sequence`): which tokens run in
//!   each step, under a token budget, with prefix caching and preemption;
//! - `runner`: a scheduled step -> the model's batch inputs -> its outputs;
//! - `sampler`, `stop`: the next token and when a request ends;
//! - `core`: one step of all of it, per request state included;
//! - `worker`: the handle the server talks to; `engine_thread` the loop
//!   behind it (steps, failures, restarts);
//! - `embedding`: the embedding model's own worker thread and handle
//!   (an encoder needs no scheduler: one pass answers each batch).

pub mod block_manager;
pub mod constraint;
pub mod core;
pub mod embedding;
mod engine_thread;
pub mod fault;
pub mod request;
mod request_state;
pub mod runner;
pub mod sampler;
pub mod sampling_params;
pub mod scheduler;
pub mod scheduler_config;
pub mod sequence;
pub mod stop;
pub mod worker;

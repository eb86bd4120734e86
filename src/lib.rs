//! wgserve: a portable LLM inference server on wgpu.
//!
//! Dependencies point one way: `server -> engine -> model -> gpu`, with
//! `formats` (model file parsing) and `text` (tokenizer, chat template) as
//! leaves that depend on nothing of ours. `tests/architecture.rs` checks it.

pub mod config;
pub mod engine;
pub mod formats;
pub mod gpu;
pub mod model;
pub mod server;
pub mod text;

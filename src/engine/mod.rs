//! The engine: turns requests into forward steps. It works on token ids
//! and never sees wgpu types or HTTP.
//!
//! For now a `Runner` generates for a fixed set of sequences with a simple
//! contiguous block allocation; the scheduler and block manager come next.

pub mod block_manager;
pub mod runner;
pub mod sampler;
pub mod scheduler;
pub mod sequence;

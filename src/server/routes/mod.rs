//! Handlers, one file per group of endpoints. Each parses and validates
//! into a typed request, calls the engine handle or the tokenizer, and
//! shapes the response; nothing else.

pub mod completions;
pub mod embeddings;
pub mod health;
pub mod metrics;
pub mod models;
pub mod tokenize;
pub mod web;

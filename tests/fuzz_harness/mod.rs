//! A stable-toolchain fuzz harness (cargo-fuzz needs nightly): a seeded
//! mutation fuzzer with four targets (the GGUF reader, the safetensors
//! loader with its config.json, the tokenizer and detokenizer, the HTTP
//! request parsing). Every input runs under `catch_unwind`, a counting
//! allocator and a watchdog: a panic, an allocation past the target's
//! bound, or a slow input is a finding; the input is saved and printed.
//!
//! This code lives once and is compiled into two binaries with `#[path]`:
//! `tests/fuzz.rs` (a short seeded run of each target plus the saved
//! regressions, in `make test`) and `examples/fuzz.rs` (the long-run
//! command). Both need the counting allocator as their global allocator,
//! which a library crate could not impose, and running the example from
//! the test as a subprocess would cost a second build in `make test`.

// Each binary uses its own share of the harness (the test replays, the
// example reports progress).
#![allow(dead_code)]

pub mod alloc;
pub mod mutate;
pub mod runner;
pub mod targets;

#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// Valid inputs to start from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Builds what the target shares between inputs (a vocabulary), so
    /// that its allocations are not charged to the first input.
    pub prepare: fn(),
    /// Runs one input. `Ok` carries a short description of the outcome
    /// (the corpus keeps inputs with new ones); `Err` is a broken property
    /// the target checks itself. Errors of the code under test are `Ok`.
    pub run: fn(&[u8]) -> Result<String, String>,
    /// Tokens of the format that the mutator inserts.
    pub dictionary: &'static [&'static [u8]],
    pub max_len: usize,
    /// The allocation bound is this many bytes per input byte plus
    /// `runner::FIXED_ALLOC_BYTES`; each target says why its factor.
    pub alloc_per_input_byte: usize,
}

pub fn targets() -> Vec<Target> {
    vec![
        targets::gguf::target(),
        targets::safetensors::target(),
        targets::tokenizer::target(),
        targets::http::target(),
    ]
}

pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

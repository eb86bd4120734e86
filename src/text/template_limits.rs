//! Limits on a chat template's rendering. The template comes with the model
//! file, from a stranger: it may loop for ever, recurse, or print
//! gigabytes. Each render gets a fixed budget of minijinja instructions
//! (fuel), a recursion depth, and an output size, and a template is tried
//! once on a probe conversation at load, so that a broken or hostile one is
//! refused before the server takes requests.
//!
//! What this cannot stop: one instruction that builds a large value
//! (minijinja caps `'x' * n` at 100 MB and `range` at 100,000 items, but
//! `s ~ s` doubles a string per instruction). Fuel bounds the number of such
//! steps, not their size.

use std::io;

use minijinja::{Error, ErrorKind};

use super::ChatMessage;

/// Instructions (fuel) a render may execute: a base plus a share per
/// message, so that a long conversation may cost more than a short one but
/// never more than a constant per byte of request. SmolLM2's template
/// spends 38 instructions on one message and 23 per further one
/// (`tests/chat_template_limits.rs` measures it), so the per-message share
/// leaves a margin of ~90x, and the base covers long static preambles. A
/// runaway template hits the limit of the 4-message probe (~1M
/// instructions) in ~30 ms here (minijinja runs ~35M instructions/s on this
/// shared machine).
pub const FUEL_BASE: u64 = 1_000_000;
pub const FUEL_PER_MESSAGE: u64 = 2_000;

/// The fuel of a render of `num_messages` messages.
pub fn fuel_for(num_messages: usize) -> u64 {
    FUEL_BASE.saturating_add(FUEL_PER_MESSAGE.saturating_mul(num_messages as u64))
}

/// Nesting depth of loops, ifs and macro calls (a macro call counts ~10).
/// minijinja's own cap is 500; real templates nest fewer than 10 levels, and
/// recursive macros (JSON schemas of tool definitions) a few more.
pub const MAX_RECURSION: usize = 250;

/// The most bytes one render may write. A real template prints the messages
/// plus a few dozen bytes per message, so a 4 MiB request renders to a few
/// MiB; 32 MiB stops a runaway template long before memory is in danger.
pub const MAX_OUTPUT_BYTES: usize = 32 << 20;

/// The conversation every template must render at load: the common shape
/// (system, user, assistant, user) and, for templates that refuse a system
/// role with `raise_exception` (Gemma's), the same without it.
pub fn probe_conversations() -> [Vec<ChatMessage>; 2] {
    let turns = [
        ChatMessage::new("user", "Hello!"),
        ChatMessage::new("assistant", "Hi! How can I help?"),
        ChatMessage::new("user", "Tell me a joke."),
    ];
    let mut with_system = vec![ChatMessage::new("system", "You are a helpful assistant.")];
    with_system.extend(turns.iter().cloned());
    [with_system, turns.to_vec()]
}

/// An `io::Write` into a `Vec` that fails once more than `limit` bytes
/// arrive, so that a runaway render stops at the limit instead of
/// growing a string until memory runs out.
pub struct CappedWriter {
    pub bytes: Vec<u8>,
    limit: usize,
    pub overflowed: bool,
}

impl CappedWriter {
    pub fn new(limit: usize) -> Self {
        Self { bytes: Vec::new(), limit, overflowed: false }
    }
}

impl io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            self.overflowed = true;
            return Err(io::Error::other("chat template output limit reached"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Which limit, if any, stopped a render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Ran out of the fuel it was given.
    Fuel(u64),
    Recursion,
    Output,
}

impl LimitHit {
    /// Classifies minijinja's error; `fuel` is what the render was given,
    /// `overflowed` the writer's flag.
    pub fn of(error: &Error, fuel: u64, overflowed: bool) -> Option<Self> {
        match error.kind() {
            ErrorKind::OutOfFuel => Some(LimitHit::Fuel(fuel)),
            ErrorKind::WriteFailure if overflowed => Some(LimitHit::Output),
            ErrorKind::InvalidOperation if error.detail() == Some("recursion limit exceeded") => {
                Some(LimitHit::Recursion)
            }
            _ => None,
        }
    }

    /// What the client or operator reads.
    pub fn message(self) -> String {
        match self {
            LimitHit::Fuel(fuel) => format!(
                "stopped after {fuel} instructions (the template loops too long for this conversation)"
            ),
            LimitHit::Recursion => {
                format!("stopped at recursion depth {MAX_RECURSION} (the template recurses too deeply)")
            }
            LimitHit::Output => format!("stopped after writing {MAX_OUTPUT_BYTES} bytes (output too large)"),
        }
    }
}

//! Text: tokenizer, chat template, incremental detokenizer. A leaf: knows
//! nothing of model files or the GPU; it is built from plain data (a
//! `tokenizer.json` path, a [`BpeVocab`] or [`SpmVocab`] that the model layer reads
//! out of a GGUF, a template source string).
//!
//! - [`tokenizer`]: text <-> token ids, wrapping the `tokenizers` crate.
//! - [`pre_tokenizers`]: the split rules of byte-level BPE vocabularies,
//!   by the name GGUF gives them (`qwen2`, `llama-bpe`, ...).
//! - [`spm`]: SentencePiece vocabularies (Gemma, Llama 2) as a `tokenizers`
//!   pipeline with byte fallback.
//! - [`chat_template`]: the model's own Jinja chat template, rendered with
//!   minijinja the way Hugging Face renders it.
//! - [`builtin_templates`]: published templates for model files that carry
//!   none (Gemma 3 base models).
//! - [`template_limits`]: the fuel, recursion and output limits every
//!   render runs under, and the probe conversation tried at load.
//! - [`detokenizer`]: token ids -> text one token at a time for streaming,
//!   never emitting half a UTF-8 character.

pub mod builtin_templates;
pub mod chat_template;
pub mod detokenizer;
pub mod pre_tokenizers;
pub mod spm;
pub mod template_limits;
pub mod token_bytes;
pub mod tokenizer;
pub mod tool_call_reader;
pub mod tool_calls;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use detokenizer::Detokenizer;
pub use spm::{SpmStyle, SpmVocab};
pub use tokenizer::{BpeVocab, END_OF_TURN_TOKENS, Tokenizer, Vocab};

/// Errors of the text module. Messages name the offending input so that a
/// server can pass them on to the client.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot load tokenizer from {path}: {message}")]
    Load { path: String, message: String },
    #[error("invalid vocabulary: {0}")]
    InvalidVocab(String),
    #[error(
        "unsupported pre-tokenizer (GGUF `tokenizer.ggml.pre`) {0:?}; supported: {names}",
        names = pre_tokenizers::supported_names().join(", ")
    )]
    UnsupportedPreTokenizer(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("token id {id} is out of range (vocabulary size {vocab_size})")]
    UnknownTokenId { id: u32, vocab_size: usize },
    #[error("chat template: {0}")]
    Template(String),
}

//! Chat templates for model files that carry none. A base model's GGUF
//! (Gemma 3 270M's, for one) has no `tokenizer.chat_template`, yet its
//! vocabulary has the turn tokens its instruct sibling was tuned on; with
//! the family's published template the chat routes can serve it. Which
//! file gets which template is the model layer's call (`model::vocab`);
//! this file only holds the sources, verbatim.

/// Gemma 3's template: the `chat_template` of `google/gemma-3-*-it`'s
/// `tokenizer_config.json`. A system message is folded into the first
/// user turn, `assistant` is spelled `model`, and roles must alternate.
/// tests/gemma3_chat_template.rs renders it against transformers'
/// `apply_chat_template` (fixture from scripts/make_gemma3_reference.sh).
pub const GEMMA3: &str = include_str!("chat_templates/gemma3.jinja");

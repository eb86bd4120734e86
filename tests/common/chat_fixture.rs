//! A chat-template fixture's conversations (made by transformers'
//! `apply_chat_template`, see scripts/greedy_reference.py) checked against
//! our template and tokenizer. Included by path where needed
//! (tests/qwen2_text.rs, tests/gemma3_chat_template.rs): it needs nothing
//! else of `common`.

use serde::Deserialize;
use wgserve::text::{ChatMessage, ChatTemplate, Tokenizer};

/// One conversation as transformers rendered and tokenized it.
#[derive(Deserialize)]
pub struct ChatCase {
    pub name: String,
    pub messages: Vec<ChatMessage>,
    pub add_generation_prompt: bool,
    pub rendered: String,
    pub ids: Vec<u32>,
}

/// Renders every case and encodes the text as the chat route does, adding
/// no special tokens (the template writes any BOS itself); one line per
/// case whose text or ids differ from transformers'.
pub fn chat_case_failures(template: &ChatTemplate, tokenizer: &Tokenizer, cases: &[ChatCase]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let label = format!("{} (add_generation_prompt = {})", case.name, case.add_generation_prompt);
        let rendered = template.render(&case.messages, case.add_generation_prompt).expect("renders");
        if rendered != case.rendered {
            failures.push(format!("{label}: rendered {rendered:?}\n  transformers {:?}", case.rendered));
            continue;
        }
        let ids = tokenizer.encode(&rendered, false).expect("encodes");
        if ids != case.ids {
            failures.push(format!("{label}: ids {ids:?}\n  transformers {:?}", case.ids));
        }
    }
    failures
}

/// Fails with every failure listed, so one run shows them all.
pub fn assert_none_differ(failures: &[String], num_cases: usize) {
    assert!(failures.is_empty(), "{} of {num_cases} differ:\n{}", failures.len(), failures.join("\n"));
}

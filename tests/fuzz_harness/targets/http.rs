//! The HTTP request path without sockets: a JSON body parsed as a
//! completion (chat and legacy) and as an embeddings request by the
//! server's own parser, then validated the way the routes do (messages,
//! prompts, sampling parameters against a vocabulary, `n`, logprobs),
//! the chat rendered with SmolLM2's template, a validated request sampled
//! once and its stop strings matched.
//!
//! Allocation: serde_json builds a `Value` of 32-80 bytes per element for
//! the free-form fields (`logprobs`, embeddings `input`), where an element
//! can be two bytes of JSON (`1,`), and vectors grow by doubling, so 64
//! bytes per input byte.

use std::sync::OnceLock;

use wgserve::engine::sampler::Sampler;
use wgserve::engine::stop::StopMatcher;
use wgserve::server::embedding::{EmbeddingRequest, parse_inputs};
use wgserve::server::generation::Api;
use wgserve::server::json;
use wgserve::server::openai::{CompletionRequest, chat_messages};
use wgserve::text::ChatTemplate;

use super::super::Target;
use super::{brief, outcome};

const VOCAB_SIZE: usize = 64;

/// SmolLM2-135M-Instruct's template, as its GGUF carries it.
const SMOLLM2_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

static TEMPLATE: OnceLock<Option<ChatTemplate>> = OnceLock::new();

pub fn target() -> Target {
    Target {
        name: "http",
        seeds,
        prepare: || {
            template();
        },
        run,
        dictionary: &[
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"\"",
            b"null",
            b"true",
            b"-1",
            b"1e999",
            b"4294967296",
            b"18446744073709551616",
            b"\"\\ud800\"",
            b"\"messages\"",
            b"\"role\"",
            b"\"content\"",
            b"\"prompt\"",
            b"\"input\"",
            b"\"logit_bias\"",
            b"\"logprobs\"",
            b"\"top_logprobs\"",
            b"\"stop\"",
            b"\"n\"",
            b"\"temperature\"",
            b"\"top_k\"",
            b"\"max_tokens\"",
            b"\"stream_options\"",
            b"\"type\": \"text\"",
        ],
        max_len: 16 << 10,
        alloc_per_input_byte: 64,
    }
}

fn template() -> Option<&'static ChatTemplate> {
    TEMPLATE.get_or_init(|| ChatTemplate::new(SMOLLM2_TEMPLATE, "<|im_start|>", "<|im_end|>").ok()).as_ref()
}

fn seeds() -> Vec<Vec<u8>> {
    [
        r#"{"model": "smollm2", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "temperature": 0.7, "top_p": 0.9, "max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}}"#,
        r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]}], "logprobs": true, "top_logprobs": 3, "seed": 42, "n": 2, "stop": ["\n", "END"]}"#,
        r#"{"prompt": "Once upon a time", "max_tokens": 8, "logprobs": 2, "echo": true, "top_k": 5, "min_p": 0.1, "logit_bias": {"7": -100, "12": 5.5}, "stop": "."}"#,
        r#"{"prompt": [[1, 2, 3], [4, 5]], "presence_penalty": 0.5, "frequency_penalty": -0.5, "repetition_penalty": 1.1, "stop_token_ids": [2], "ignore_eos": true}"#,
        r#"{"prompt": ["a", "b"], "n": 3, "max_completion_tokens": 4}"#,
        r#"{"input": ["The food was delicious", "The waiter was rude"], "model": "minilm", "encoding_format": "base64"}"#,
        r#"{"input": [[1, 2, 3], [4]], "dimensions": 384}"#,
        r#"{"input": "one text", "encoding_format": "float"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn run(input: &[u8]) -> Result<String, String> {
    let mut outcomes = Vec::new();
    match json::parse::<CompletionRequest>(input) {
        Ok(request) => {
            for api in [Api::Chat, Api::Completion] {
                let params = request.sampling_params(api);
                outcomes.push(outcome(&params));
                let Ok(params) = params else { continue };
                let valid = params.validate(VOCAB_SIZE);
                outcomes.push(outcome(&valid));
                if valid.is_err() {
                    continue;
                }
                let mut stop = StopMatcher::new(params.stop.clone());
                let _ = stop.push("Hello. World\nEND and more");
                let _ = stop.flush();
                let logits: Vec<f32> = (0..VOCAB_SIZE).map(|i| (i as f32 * 0.37).sin()).collect();
                let sampled = Sampler::new(params).sample(&logits, &[1, 2, 3], &[4, 5]);
                if sampled.id as usize >= VOCAB_SIZE {
                    return Err(format!(
                        "sampled token {} outside the vocabulary of {VOCAB_SIZE}",
                        sampled.id
                    ));
                }
            }
            outcomes.push(outcome(&request.num_choices()));
            outcomes.push(request.include_usage().to_string());
            if let Some(messages) = &request.messages {
                let messages = chat_messages(messages);
                outcomes.push(outcome(&messages));
                if let (Ok(messages), Some(template)) = (messages, template()) {
                    outcomes.push(outcome(&template.render(&messages, true)));
                }
            }
            if let Some(prompt) = request.prompt {
                outcomes.push(outcome(&prompt.prompts()));
            }
        }
        Err(e) => outcomes.push(brief(&e.to_string())),
    }
    match json::parse::<EmbeddingRequest>(input) {
        Ok(request) => outcomes.push(outcome(&parse_inputs(request.input.as_ref()))),
        Err(e) => outcomes.push(brief(&e.to_string())),
    }
    Ok(outcomes.join("|"))
}

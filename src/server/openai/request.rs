//! The request bodies of the OpenAI routes, as the client sends them:
//! deserialization only. What the fields mean to the engine is
//! `generation.rs`; which messages are valid is `messages.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::super::structured::{ResponseFormat, StructuredOutputs};

/// The fields of `/v1/chat/completions` and `/v1/completions` (each route
/// checks which of `messages` and `prompt` it needs). Unknown fields are
/// ignored, as OpenAI's server does.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub messages: Option<Vec<ChatMessageParam>>,
    pub prompt: Option<PromptInput>,
    #[serde(default)]
    pub echo: bool,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// vLLM's convention: -1 (or 0) is off.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// Token ids (as JSON object keys) to biases.
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// A bool in chat; in the legacy API, how many alternatives (0..=20).
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<u64>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub stop: Option<StopInput>,
    pub stop_token_ids: Option<Vec<u32>>,
    /// vLLM's extension: generate past end-of-sequence tokens.
    #[serde(default)]
    pub ignore_eos: bool,
    pub response_format: Option<ResponseFormat>,
    /// vLLM's structured-output extensions, new and old spellings.
    pub structured_outputs: Option<StructuredOutputs>,
    pub guided_json: Option<Value>,
    pub guided_regex: Option<String>,
    pub guided_choice: Option<Vec<String>>,
    pub guided_grammar: Option<String>,
    /// Functions the model may call (chat only); validated by `tools.rs`.
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopInput {
    One(String),
    Many(Vec<String>),
}

/// A legacy prompt: text or token ids, alone or in a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessageParam {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// A participant's name; only its type is checked (templates ignore it).
    #[serde(default)]
    pub name: Option<String>,
    /// An assistant's earlier tool calls, checked field by field in
    /// `messages.rs` (so that an error names the field).
    #[serde(default)]
    pub tool_calls: Option<Value>,
    /// The call a `tool` message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

/// A string, or a list of typed parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
}

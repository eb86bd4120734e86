//! The bodies the completion routes send, as typed shapes: the chat
//! completion and its streamed chunks, the legacy text completion (one
//! shape whole and streamed), usage, the two logprobs shapes, and the error
//! event that ends a failed stream. Serialization only: `generation.rs`
//! fills them from the engine's outputs, `sse.rs` frames the chunks.
//!
//! A struct's field order is its JSON's key order (serde_json keeps it).
//! `Option` fields print `null` unless marked skipped: OpenAI's clients
//! expect `"logprobs": null` and `"finish_reason": null`, but a delta
//! carries only what it adds.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::engine::request::{TokenOutput, Usage as EngineUsage};

/// `/v1/chat/completions` without `stream`.
#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

impl ChatCompletion {
    pub const OBJECT: &'static str = "chat.completion";
}

#[derive(Debug, Serialize)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    /// `null` only beside tool calls.
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

impl AssistantMessage {
    pub fn new(content: String) -> Self {
        Self { role: "assistant", content: Some(content), tool_calls: None }
    }
}

/// A call the model made (not emitted yet: tool calling is to come).
#[derive(Debug, Serialize)]
pub struct ToolCall {
    pub id: String,
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Debug, Serialize)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as the model wrote them: a JSON text, not parsed.
    pub arguments: String,
}

/// One streamed event of `/v1/chat/completions`.
#[derive(Debug, Serialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Absent unless the client asked for usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<StreamUsage>,
}

impl ChatCompletionChunk {
    pub const OBJECT: &'static str = "chat.completion.chunk";
}

#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// What a chunk adds to its choice's message; the last chunk's is `{}`.
#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

impl Delta {
    /// The first chunk of a choice: the role, and empty content.
    pub fn start() -> Self {
        Self { role: Some("assistant"), content: Some(String::new()), tool_calls: None }
    }

    pub fn content(text: &str) -> Self {
        Self { content: Some(text.to_string()), ..Self::default() }
    }
}

/// A piece of a streamed tool call: the first piece of call `index`
/// carries its id, type and name, the later ones more of `arguments`.
#[derive(Debug, Serialize)]
pub struct ToolCallDelta {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionCallDelta,
}

#[derive(Debug, Serialize)]
pub struct FunctionCallDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `/v1/completions`, whole or one streamed event: the legacy API uses one
/// shape and one object name for both.
#[derive(Debug, Serialize)]
pub struct TextCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<TextChoice>,
    /// Always there whole; in a stream, absent unless the client asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<StreamUsage>,
}

impl TextCompletion {
    pub const OBJECT: &'static str = "text_completion";
}

#[derive(Debug, Serialize)]
pub struct TextChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<TextLogprobs>,
    pub finish_reason: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Self { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

impl From<&EngineUsage> for Usage {
    fn from(usage: &EngineUsage) -> Self {
        Self::new(usage.prompt_tokens, usage.completion_tokens)
    }
}

/// The `usage` of a response that may leave it out: with
/// `stream_options.include_usage`, `null` on every chunk but the last,
/// which has the totals (OpenAI's stream; its clients check for `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StreamUsage {
    Pending,
    Total(Usage),
}

/// A chat choice's `logprobs`: one entry per token.
#[derive(Debug, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<TokenLogprob>,
}

// Logprobs are f32 in the engine and printed as f64 here: serde_json
// prints an f32 at f32 precision, and clients have always had the
// f64 digits (-0.6931471824645996, not -0.6931472).

#[derive(Debug, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    /// `null` where the engine has none (a forced token).
    pub logprob: Option<f64>,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Vec<u8>,
}

impl ChatLogprobs {
    /// `piece` is a token id's text.
    pub fn new(tokens: &[TokenOutput], piece: impl Fn(u32) -> String) -> Self {
        let top = |&(id, logprob): &(u32, f32)| {
            let token = piece(id);
            TopLogprob { bytes: token.clone().into_bytes(), token, logprob: logprob.into() }
        };
        let content = tokens
            .iter()
            .map(|t| {
                let token = piece(t.id);
                TokenLogprob {
                    bytes: token.clone().into_bytes(),
                    token,
                    logprob: t.logprob.map(f64::from),
                    top_logprobs: t.top_logprobs.iter().map(top).collect(),
                }
            })
            .collect();
        Self { content }
    }
}

/// A legacy choice's `logprobs`: parallel lists, one entry per token.
#[derive(Debug, Serialize)]
pub struct TextLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f64>>,
    pub top_logprobs: Vec<TopLogprobMap>,
    /// Where each token's text starts in the choice's text, in bytes.
    pub text_offset: Vec<usize>,
}

impl TextLogprobs {
    /// `text_offset` is where the first token's text starts (after any
    /// echoed prompt or text already streamed); `piece` is a token id's text.
    pub fn new(tokens: &[TokenOutput], text_offset: usize, piece: impl Fn(u32) -> String) -> Self {
        let mut offset = text_offset;
        let mut text_offsets = Vec::with_capacity(tokens.len());
        for t in tokens {
            text_offsets.push(offset);
            offset += t.text.len();
        }
        Self {
            tokens: tokens.iter().map(|t| piece(t.id)).collect(),
            token_logprobs: tokens.iter().map(|t| t.logprob.map(f64::from)).collect(),
            top_logprobs: tokens
                .iter()
                .map(|t| t.top_logprobs.iter().map(|&(id, logprob)| (piece(id), logprob.into())).collect())
                .collect(),
            text_offset: text_offsets,
        }
    }
}

/// One token's alternatives as `{text: logprob}`, most likely first. Two
/// ids with the same text (byte-fallback pieces) make one key: it keeps
/// the first one's place and takes the last one's logprob, as a JSON
/// object built key by key does.
#[derive(Debug, Default)]
pub struct TopLogprobMap(Vec<(String, f64)>);

impl FromIterator<(String, f64)> for TopLogprobMap {
    fn from_iter<I: IntoIterator<Item = (String, f64)>>(iter: I) -> Self {
        let mut entries: Vec<(String, f64)> = Vec::new();
        for (text, logprob) in iter {
            match entries.iter_mut().find(|(seen, _)| *seen == text) {
                Some(entry) => entry.1 = logprob,
                None => entries.push((text, logprob)),
            }
        }
        Self(entries)
    }
}

impl Serialize for TopLogprobMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (text, logprob) in &self.0 {
            map.serialize_entry(text, logprob)?;
        }
        map.end()
    }
}

/// The event that ends a stream whose request failed after its headers
/// were sent: OpenAI's error object, `code` the status it would have had.
#[derive(Debug, Serialize)]
pub struct StreamError {
    pub error: StreamErrorObject,
}

#[derive(Debug, Serialize)]
pub struct StreamErrorObject {
    pub message: String,
    /// Always `"server_error"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `null`: no field of the request is to blame.
    pub param: Option<String>,
    pub code: u16,
}

impl StreamError {
    pub fn new(message: String, status: u16) -> Self {
        Self { error: StreamErrorObject { message, kind: "server_error", param: None, code: status } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    fn token(id: u32, text: &str, logprob: f32, top: &[(u32, f32)]) -> TokenOutput {
        TokenOutput { id, text: text.into(), logprob: Some(logprob), top_logprobs: top.to_vec() }
    }

    fn chat_chunk(delta: Delta, finish_reason: Option<&'static str>, usage: Option<StreamUsage>) -> String {
        json(&ChatCompletionChunk {
            id: "chatcmpl-1".into(),
            object: ChatCompletionChunk::OBJECT,
            created: 7,
            model: "m".into(),
            choices: vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason }],
            usage,
        })
    }

    #[test]
    fn a_chat_completion_has_openais_keys_in_order() {
        let completion = ChatCompletion {
            id: "chatcmpl-1".into(),
            object: ChatCompletion::OBJECT,
            created: 7,
            model: "m".into(),
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage::new("Hi".into()),
                logprobs: None,
                finish_reason: "stop",
            }],
            usage: Usage::new(3, 2),
        };
        assert_eq!(
            json(&completion),
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#
        );
    }

    #[test]
    fn chunk_usage_is_null_when_asked_for_and_absent_otherwise() {
        let prefix =
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":"#;
        assert_eq!(
            chat_chunk(Delta::start(), None, Some(StreamUsage::Pending)),
            format!(
                r#"{prefix}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )
        );
        assert_eq!(
            chat_chunk(Delta::content("a"), None, None),
            format!(
                r#"{prefix}[{{"index":0,"delta":{{"content":"a"}},"logprobs":null,"finish_reason":null}}]}}"#
            )
        );
        // The last chunk's delta adds nothing: no `content` key at all.
        assert_eq!(
            chat_chunk(Delta::default(), Some("length"), None),
            format!(r#"{prefix}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"length"}}]}}"#)
        );
        let totals = json(&ChatCompletionChunk {
            id: "chatcmpl-1".into(),
            object: ChatCompletionChunk::OBJECT,
            created: 7,
            model: "m".into(),
            choices: vec![],
            usage: Some(StreamUsage::Total(Usage::new(1, 1))),
        });
        assert_eq!(
            totals,
            format!(r#"{prefix}[],"usage":{{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}}}"#)
        );
    }

    #[test]
    fn chat_logprobs_list_each_token_with_its_alternatives() {
        let logprobs =
            ChatLogprobs::new(&[token(1, "a", -0.5, &[(1, -0.5), (2, -1.0)])], |id| format!("t{id}"));
        assert_eq!(
            json(&logprobs),
            r#"{"content":[{"token":"t1","logprob":-0.5,"bytes":[116,49],"top_logprobs":[{"token":"t1","logprob":-0.5,"bytes":[116,49]},{"token":"t2","logprob":-1.0,"bytes":[116,50]}]}]}"#
        );
    }

    #[test]
    fn legacy_logprobs_are_parallel_lists_with_offsets() {
        let tokens = [token(1, "ab", -0.25, &[(1, -0.25), (3, -2.0), (4, -3.0)]), token(2, "c", 0.1, &[])];
        // Ids 3 and 4 share a text: one key, the first place, the last value.
        let piece = |id: u32| if id >= 3 { "?".to_string() } else { format!("t{id}") };
        assert_eq!(
            json(&TextLogprobs::new(&tokens, 5, piece)),
            r#"{"tokens":["t1","t2"],"token_logprobs":[-0.25,0.10000000149011612],"top_logprobs":[{"t1":-0.25,"?":-3.0},{}],"text_offset":[5,7]}"#
        );
    }

    #[test]
    fn an_assistant_message_with_tool_calls_names_them() {
        let message = AssistantMessage {
            content: None,
            tool_calls: Some(vec![ToolCall {
                id: "call_1".into(),
                kind: "function",
                function: FunctionCall { name: "f".into(), arguments: "{}".into() },
            }]),
            ..AssistantMessage::new(String::new())
        };
        assert_eq!(
            json(&message),
            r#"{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]}"#
        );
    }
}

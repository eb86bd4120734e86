//! The OpenAI completion requests (chat and legacy) as the engine's
//! `GenerateRequest`, and the engine's outputs as one OpenAI JSON
//! response (the streamed form is `sse.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::constraint::OutputConstraint;
use crate::engine::core::EngineError;
use crate::engine::request::{FinishReason, InvalidRequest, RequestError, RequestOutput, TokenOutput, Usage};
use crate::engine::sampler::{MAX_TOP_LOGPROBS, SamplingParams};
use crate::engine::worker::RequestStream;
use crate::text::Tokenizer;

use super::body::Response;
use super::error::ApiError;
use super::metrics::LatencyTracker;
use super::openai::ChatMessageParam;
use super::structured::{ConstraintFields, ResponseFormat, StructuredOutputs};

/// The most choices one request may ask for (`n`).
pub const MAX_CHOICES: u64 = 16;

/// The OpenAI default temperature (the engine's default is greedy).
const DEFAULT_TEMPERATURE: f32 = 1.0;

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

/// One legacy prompt.
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// The most prompts one legacy request may hold.
pub const MAX_PROMPTS: usize = 16;

impl PromptInput {
    /// The prompts, 1..=`MAX_PROMPTS`, none empty.
    pub fn prompts(self) -> Result<Vec<Prompt>, ApiError> {
        let prompts: Vec<Prompt> = match self {
            PromptInput::Text(text) => vec![Prompt::Text(text)],
            PromptInput::Texts(texts) => texts.into_iter().map(Prompt::Text).collect(),
            PromptInput::Tokens(tokens) => vec![Prompt::Tokens(tokens)],
            PromptInput::TokenLists(lists) => lists.into_iter().map(Prompt::Tokens).collect(),
        };
        if prompts.is_empty() || prompts.len() > MAX_PROMPTS {
            return Err(ApiError::invalid(
                format!("`prompt` must hold 1..={MAX_PROMPTS} prompts, got {}", prompts.len()),
                "prompt",
            ));
        }
        for (i, prompt) in prompts.iter().enumerate() {
            let empty = match prompt {
                Prompt::Text(text) => text.is_empty(),
                Prompt::Tokens(tokens) => tokens.is_empty(),
            };
            if empty {
                let param = if prompts.len() == 1 { "prompt".to_string() } else { format!("prompt[{i}]") };
                return Err(ApiError::invalid(format!("`{param}` must not be empty"), param));
            }
        }
        Ok(prompts)
    }
}

/// One choice of a response: its engine stream, the text shown before its
/// completion (legacy `echo`), and whether its usage counts its prompt
/// (the first choice of each prompt: choices of one prompt share it).
pub struct Choice {
    pub stream: RequestStream,
    pub echo: String,
    pub counts_prompt: bool,
    pub latency: LatencyTracker,
}

impl CompletionRequest {
    /// The sampling parameters, OpenAI defaults applied; ranges are checked
    /// by the engine's `validate` (the error names the field).
    pub fn sampling_params(&self, api: Api) -> Result<SamplingParams, ApiError> {
        let (logprobs, top_logprobs) = self.logprobs(api)?;
        let top_k = match self.top_k {
            None | Some(-1) | Some(0) => None,
            Some(k) if k > 0 => Some(k as usize),
            Some(k) => {
                return Err(ApiError::invalid(
                    format!("`top_k` must be -1 (off) or at least 1, got {k}"),
                    "top_k",
                ));
            }
        };
        let mut logit_bias = BTreeMap::new();
        for (key, &bias) in self.logit_bias.iter().flatten() {
            let id: u32 = key.parse().map_err(|_| {
                ApiError::invalid(format!("`logit_bias` keys must be token ids, got `{key}`"), "logit_bias")
            })?;
            logit_bias.insert(id, bias);
        }
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        let defaults = SamplingParams::default();
        Ok(SamplingParams {
            temperature: self.temperature.unwrap_or(DEFAULT_TEMPERATURE),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k,
            min_p: self.min_p.unwrap_or(defaults.min_p),
            seed: self.seed,
            presence_penalty: self.presence_penalty.unwrap_or(defaults.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(defaults.frequency_penalty),
            repetition_penalty: self.repetition_penalty.unwrap_or(defaults.repetition_penalty),
            logit_bias,
            logprobs,
            top_logprobs,
            max_tokens: max_tokens.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
            stop_token_ids: self.stop_token_ids.clone().unwrap_or_default(),
            stop: match &self.stop {
                None => Vec::new(),
                Some(StopInput::One(s)) => vec![s.clone()],
                Some(StopInput::Many(list)) => list.clone(),
            },
            ignore_eos: self.ignore_eos,
        })
    }

    /// Whether to return logprobs, and how many alternatives: chat has
    /// `logprobs: bool` and `top_logprobs`, the legacy API `logprobs: k`.
    pub fn logprobs(&self, api: Api) -> Result<(bool, usize), ApiError> {
        let top = |k: u64, param: &str| {
            usize::try_from(k).ok().filter(|&k| k <= MAX_TOP_LOGPROBS).ok_or_else(|| {
                ApiError::invalid(format!("`{param}` must be in 0..={MAX_TOP_LOGPROBS}, got {k}"), param)
            })
        };
        let logprobs = self.logprobs.as_ref().unwrap_or(&Value::Null);
        match api {
            Api::Chat => {
                let on = match logprobs {
                    Value::Null => false,
                    Value::Bool(on) => *on,
                    other => {
                        return Err(ApiError::invalid(
                            format!("`logprobs` must be a boolean, got {other}"),
                            "logprobs",
                        ));
                    }
                };
                let k = top(self.top_logprobs.unwrap_or(0), "top_logprobs")?;
                if k > 0 && !on {
                    return Err(ApiError::invalid("`top_logprobs` needs `logprobs: true`", "top_logprobs"));
                }
                Ok((on, k))
            }
            Api::Completion => match logprobs {
                Value::Null => Ok((false, 0)),
                Value::Number(n) => {
                    let k = n.as_u64().ok_or_else(|| {
                        ApiError::invalid(
                            format!("`logprobs` must be an integer in 0..={MAX_TOP_LOGPROBS}, got {n}"),
                            "logprobs",
                        )
                    })?;
                    Ok((true, top(k, "logprobs")?))
                }
                other => {
                    Err(ApiError::invalid(format!("`logprobs` must be an integer, got {other}"), "logprobs"))
                }
            },
        }
    }

    /// How many choices (`n`), 1..=`MAX_CHOICES`.
    pub fn num_choices(&self) -> Result<usize, ApiError> {
        match self.n.unwrap_or(1) {
            n @ 1..=MAX_CHOICES => Ok(n as usize),
            n => Err(ApiError::invalid(format!("`n` must be in 1..={MAX_CHOICES}, got {n}"), "n")),
        }
    }

    /// What the output must be, if anything, and the field that says so.
    pub fn output_constraint(&self) -> Result<Option<(OutputConstraint, String)>, ApiError> {
        ConstraintFields {
            response_format: self.response_format.as_ref(),
            structured_outputs: self.structured_outputs.as_ref(),
            guided: StructuredOutputs {
                json: self.guided_json.clone(),
                regex: self.guided_regex.clone(),
                choice: self.guided_choice.clone(),
                grammar: self.guided_grammar.clone(),
                json_object: false,
            },
        }
        .constraint()
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

/// The engine's refusal as the client's error. `token_param` names the
/// field the client gave the prompt's token ids in (`prompt`,
/// `prompt[1]`), so that a bad id is reported at its place; `None` when
/// our tokenizer made them from text.
pub fn submit_error(e: EngineError, token_param: Option<&str>) -> ApiError {
    match e {
        EngineError::Invalid(InvalidRequest::TokenOutsideVocabulary { index, token_id, vocab_size }) => {
            match token_param {
                Some(param) => ApiError::invalid(
                    format!("token id {token_id} is outside the vocabulary of {vocab_size}"),
                    format!("{param}[{index}]"),
                ),
                None => ApiError::Internal(format!(
                    "the tokenizer made token id {token_id}, outside the model's vocabulary of \
                     {vocab_size}: the model file's tokenizer and weights disagree"
                )),
            }
        }
        EngineError::Invalid(InvalidRequest::EmptyPrompt) => {
            let param = token_param.unwrap_or("prompt");
            ApiError::invalid(format!("`{param}` must not be empty"), param)
        }
        EngineError::Invalid(InvalidRequest::Params(e)) => ApiError::invalid(e.to_string(), e.param),
        EngineError::Invalid(InvalidRequest::DoesNotFit(e)) => {
            ApiError::InvalidRequest { message: e.to_string(), param: None }
        }
        EngineError::QueueFull { .. } => ApiError::TooManyRequests(e.to_string()),
        EngineError::Failed(_) | EngineError::Restarting(_) | EngineError::Stopped => {
            ApiError::Unavailable(e.to_string())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Completion,
}

/// What every response of one request shares.
pub struct ResponseMeta {
    pub api: Api,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Set when the client asked for logprobs: renders the token strings.
    pub logprobs: Option<Arc<Tokenizer>>,
}

impl ResponseMeta {
    pub fn new(api: Api, request_id: u64, model: String, logprobs: Option<Arc<Tokenizer>>) -> Self {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let prefix = match api {
            Api::Chat => "chatcmpl",
            Api::Completion => "cmpl",
        };
        Self { api, id: format!("{prefix}-{request_id:016x}{created:x}"), created, model, logprobs }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.api, chunk) {
            (Api::Chat, false) => "chat.completion",
            (Api::Chat, true) => "chat.completion.chunk",
            (Api::Completion, _) => "text_completion",
        }
    }

    /// The `logprobs` of a choice for `tokens` (null unless asked for);
    /// `text_offset` is where the first token's text starts (legacy shape).
    pub(super) fn logprobs_json(&self, tokens: &[TokenOutput], text_offset: usize) -> Value {
        let Some(tokenizer) = &self.logprobs else { return Value::Null };
        let piece = |id: u32| tokenizer.decode(&[id], false).unwrap_or_default();
        match self.api {
            Api::Chat => {
                let entry = |id: u32, logprob: Option<f32>| {
                    let token = piece(id);
                    json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()})
                };
                let content: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let mut e = entry(t.id, t.logprob);
                        let top: Vec<Value> =
                            t.top_logprobs.iter().map(|&(id, lp)| entry(id, Some(lp))).collect();
                        e["top_logprobs"] = json!(top);
                        e
                    })
                    .collect();
                json!({"content": content})
            }
            Api::Completion => {
                let mut offset = text_offset;
                let mut offsets = Vec::with_capacity(tokens.len());
                for t in tokens {
                    offsets.push(offset);
                    offset += t.text.len();
                }
                let top: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        let map: serde_json::Map<String, Value> =
                            t.top_logprobs.iter().map(|&(id, lp)| (piece(id), json!(lp))).collect();
                        Value::Object(map)
                    })
                    .collect();
                json!({
                    "tokens": tokens.iter().map(|t| piece(t.id)).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": offsets,
                })
            }
        }
    }

    pub(super) fn envelope(&self, chunk: bool, choices: Value) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        map.insert("id".into(), json!(self.id));
        map.insert("object".into(), json!(self.object(chunk)));
        map.insert("created".into(), json!(self.created));
        map.insert("model".into(), json!(self.model));
        map.insert("choices".into(), choices);
        map
    }
}

#[derive(Serialize)]
struct UsageBody {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
}

pub(super) fn usage_json(usage: &Usage) -> Value {
    json!(UsageBody {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.prompt_tokens + usage.completion_tokens,
    })
}

/// The final output's failure, if it is one: a request that failed alone
/// is a 500 naming its cause; an engine failure a 503.
pub(super) fn finish_error(reason: FinishReason, error: Option<RequestError>) -> Option<ApiError> {
    match (reason, error) {
        (FinishReason::Error, Some(e @ RequestError::Request(_))) => Some(ApiError::Internal(e.to_string())),
        (FinishReason::Error, Some(e @ RequestError::Engine(_))) => {
            Some(ApiError::Unavailable(e.to_string()))
        }
        (FinishReason::Error, None) => Some(ApiError::Internal("the request failed".into())),
        _ => None,
    }
}

/// Runs the choices to the end and answers with one JSON document.
/// `echo` is text put before each completion (legacy `echo`).
pub async fn collect(streams: Vec<Choice>, meta: ResponseMeta) -> Result<Response, ApiError> {
    let mut choices = Vec::with_capacity(streams.len());
    let mut total = Usage::default();
    // The engine runs every choice at once; reading them in turn only
    // buffers the later ones' outputs meanwhile.
    for (index, Choice { mut stream, echo, counts_prompt, mut latency }) in streams.into_iter().enumerate() {
        let mut text = echo.clone();
        let mut tokens = Vec::new();
        loop {
            match stream.next().await {
                Some(RequestOutput::Token(token)) => {
                    latency.on_token();
                    text.push_str(&token.text);
                    if meta.logprobs.is_some() {
                        tokens.push(token);
                    }
                }
                Some(RequestOutput::Finished { reason, usage, text: tail, error }) => {
                    latency.on_finish(reason);
                    if let Some(e) = finish_error(reason, error) {
                        return Err(e);
                    }
                    text.push_str(&tail);
                    add_usage(&mut total, &usage, counts_prompt);
                    let logprobs = meta.logprobs_json(&tokens, echo.len());
                    choices.push(match meta.api {
                        Api::Chat => {
                            json!({"index": index, "message": {"role": "assistant", "content": text},
                            "logprobs": logprobs, "finish_reason": reason.as_str()})
                        }
                        Api::Completion => json!({"index": index, "text": text, "logprobs": logprobs,
                            "finish_reason": reason.as_str()}),
                    });
                    break;
                }
                None => {
                    return Err(ApiError::Unavailable(
                        "the engine stopped before the request finished".into(),
                    ));
                }
            }
        }
    }
    let mut body = meta.envelope(false, json!(choices));
    body.insert("usage".into(), usage_json(&total));
    Ok(super::body::json_response(StatusCode::OK, &body))
}

/// Each prompt counts once, however many choices it has.
pub(super) fn add_usage(total: &mut Usage, usage: &Usage, counts_prompt: bool) {
    if counts_prompt {
        total.prompt_tokens += usage.prompt_tokens;
    }
    total.completion_tokens += usage.completion_tokens;
}

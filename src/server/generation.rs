//! The OpenAI completion requests (chat and legacy) as the engine's
//! `GenerateRequest`, and the engine's outputs as the typed response
//! shapes of `openai::response`: one JSON document here, the streamed
//! chunks in `sse.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::Value;

use crate::engine::constraint::OutputConstraint;
use crate::engine::core::EngineError;
use crate::engine::request::{FinishReason, InvalidRequest, RequestError, RequestOutput, TokenOutput, Usage};
use crate::engine::sampler::{MAX_TOP_LOGPROBS, SamplingParams};
use crate::engine::worker::RequestStream;
use crate::text::Tokenizer;
use crate::text::tool_calls::{ToolCallFormat, ToolCallReader};

use super::body::{Response, json_response};
use super::error::ApiError;
use super::metrics::LatencyTracker;
use super::openai::request::{CompletionRequest, PromptInput, StopInput};
use super::openai::response::{
    self, AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatLogprobs, ChunkChoice,
    FunctionCall, StreamUsage, TextChoice, TextCompletion, TextLogprobs, ToolCall,
};
use super::structured::{ConstraintFields, StructuredOutputs};

/// The most choices one request may ask for (`n`).
pub const MAX_CHOICES: u64 = 16;

/// The OpenAI default temperature (the engine's default is greedy).
const DEFAULT_TEMPERATURE: f32 = 1.0;

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
    /// Set when the chat request may call tools: the form its calls are
    /// read from the text in.
    pub tool_format: Option<ToolCallFormat>,
}

impl ResponseMeta {
    pub fn new(api: Api, request_id: u64, model: String, logprobs: Option<Arc<Tokenizer>>) -> Self {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let prefix = match api {
            Api::Chat => "chatcmpl",
            Api::Completion => "cmpl",
        };
        let id = format!("{prefix}-{request_id:016x}{created:x}");
        Self { api, id, created, model, logprobs, tool_format: None }
    }

    /// The id of call `call` of choice `choice`, unique as the response's.
    pub(super) fn call_id(&self, choice: usize, call: usize) -> String {
        let unique = self.id.split_once('-').map_or(self.id.as_str(), |(_, rest)| rest);
        format!("call_{unique}{choice:02x}{call:02x}")
    }

    /// A finished chat choice's message and finish reason: with tools,
    /// the calls read from its text, and answer text only if there is any.
    fn chat_answer(
        &self,
        choice: usize,
        text: String,
        reason: FinishReason,
    ) -> (AssistantMessage, &'static str) {
        let Some(format) = self.tool_format else { return (AssistantMessage::new(text), reason.as_str()) };
        let mut reader = ToolCallReader::new(format);
        reader.push(&text);
        let (content, calls) = reader.parsed(true);
        if calls.is_empty() {
            return (AssistantMessage::new(content), reason.as_str());
        }
        let tool_calls = calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| ToolCall {
                id: self.call_id(choice, i),
                kind: "function",
                function: FunctionCall { name: call.name, arguments: call.arguments },
            })
            .collect();
        let content = (!content.trim().is_empty()).then_some(content);
        let message = AssistantMessage { role: "assistant", content, tool_calls: Some(tool_calls) };
        (message, finish_with_calls(reason))
    }

    /// A chat choice's `logprobs` for `tokens`, if the client asked.
    pub(super) fn chat_logprobs(&self, tokens: &[TokenOutput]) -> Option<ChatLogprobs> {
        let tokenizer = self.logprobs.as_deref()?;
        Some(ChatLogprobs::new(tokens, |id| token_text(tokenizer, id)))
    }

    /// A legacy choice's `logprobs` for `tokens`, if the client asked;
    /// `text_offset` is where the first token's text starts.
    pub(super) fn text_logprobs(&self, tokens: &[TokenOutput], text_offset: usize) -> Option<TextLogprobs> {
        let tokenizer = self.logprobs.as_deref()?;
        Some(TextLogprobs::new(tokens, text_offset, |id| token_text(tokenizer, id)))
    }

    fn chat_completion(&self, choices: Vec<ChatChoice>, usage: response::Usage) -> ChatCompletion {
        let (id, created, model) = (self.id.clone(), self.created, self.model.clone());
        ChatCompletion { id, object: ChatCompletion::OBJECT, created, model, choices, usage }
    }

    pub(super) fn chat_chunk(
        &self,
        choices: Vec<ChunkChoice>,
        usage: Option<StreamUsage>,
    ) -> ChatCompletionChunk {
        let (id, created, model) = (self.id.clone(), self.created, self.model.clone());
        ChatCompletionChunk { id, object: ChatCompletionChunk::OBJECT, created, model, choices, usage }
    }

    /// A whole legacy response or one of its chunks (the same shape).
    pub(super) fn text_completion(
        &self,
        choices: Vec<TextChoice>,
        usage: Option<StreamUsage>,
    ) -> TextCompletion {
        let (id, created, model) = (self.id.clone(), self.created, self.model.clone());
        TextCompletion { id, object: TextCompletion::OBJECT, created, model, choices, usage }
    }
}

/// The finish reason of a choice that made calls: OpenAI's `tool_calls`
/// where the model ended its turn; a cut-off (`length`) stays one.
pub(super) fn finish_with_calls(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "tool_calls",
        other => other.as_str(),
    }
}

/// A token's own text, as logprobs show it.
fn token_text(tokenizer: &Tokenizer, id: u32) -> String {
    tokenizer.decode(&[id], false).unwrap_or_default()
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
pub async fn collect(choices: Vec<Choice>, meta: ResponseMeta) -> Result<Response, ApiError> {
    let mut finished = Vec::with_capacity(choices.len());
    let mut total = Usage::default();
    // The engine runs every choice at once; reading them in turn only
    // buffers the later ones' outputs meanwhile.
    for choice in choices {
        finished.push(run_to_end(choice, meta.logprobs.is_some(), &mut total).await?);
    }
    let usage = response::Usage::from(&total);
    let response = match meta.api {
        Api::Chat => {
            let choices = finished
                .into_iter()
                .enumerate()
                .map(|(index, choice)| {
                    let logprobs = meta.chat_logprobs(&choice.tokens);
                    let (message, finish_reason) = meta.chat_answer(index, choice.text, choice.reason);
                    ChatChoice { index, logprobs, message, finish_reason }
                })
                .collect();
            json_response(StatusCode::OK, &meta.chat_completion(choices, usage))
        }
        Api::Completion => {
            let choices = finished
                .into_iter()
                .enumerate()
                .map(|(index, choice)| TextChoice {
                    index,
                    logprobs: meta.text_logprobs(&choice.tokens, choice.echo_len),
                    text: choice.text,
                    finish_reason: Some(choice.reason.as_str()),
                })
                .collect();
            json_response(StatusCode::OK, &meta.text_completion(choices, Some(StreamUsage::Total(usage))))
        }
    };
    Ok(response)
}

/// A choice run to the end: its text (echo included), where the
/// completion starts in it, and its tokens if logprobs are asked for.
struct Finished {
    text: String,
    echo_len: usize,
    tokens: Vec<TokenOutput>,
    reason: FinishReason,
}

async fn run_to_end(choice: Choice, keep_tokens: bool, total: &mut Usage) -> Result<Finished, ApiError> {
    let Choice { mut stream, echo, counts_prompt, mut latency } = choice;
    let echo_len = echo.len();
    let mut text = echo;
    let mut tokens = Vec::new();
    loop {
        match stream.next().await {
            Some(RequestOutput::Token(token)) => {
                latency.on_token();
                text.push_str(&token.text);
                if keep_tokens {
                    tokens.push(token);
                }
            }
            Some(RequestOutput::Finished { reason, usage, text: tail, error }) => {
                latency.on_finish(reason);
                if let Some(e) = finish_error(reason, error) {
                    return Err(e);
                }
                text.push_str(&tail);
                add_usage(total, &usage, counts_prompt);
                return Ok(Finished { text, echo_len, tokens, reason });
            }
            None => {
                return Err(ApiError::Unavailable("the engine stopped before the request finished".into()));
            }
        }
    }
}

/// Each prompt counts once, however many choices it has.
pub(super) fn add_usage(total: &mut Usage, usage: &Usage, counts_prompt: bool) {
    if counts_prompt {
        total.prompt_tokens += usage.prompt_tokens;
    }
    total.completion_tokens += usage.completion_tokens;
}

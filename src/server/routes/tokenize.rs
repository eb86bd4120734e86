//! `POST /tokenize` (a prompt, or chat messages rendered with the model's
//! template) and `POST /detokenize`, as vLLM has them. Tokenizing runs on
//! the blocking pool: a 4 MiB prompt must not stall the accept loop.

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::text::TextError;

use super::super::body::{Response, json_response};
use super::super::error::ApiError;
use super::super::json;
use super::super::openai::{ChatMessageParam, chat_messages};
use super::super::state::AppState;
use super::super::tools::ToolRequest;

#[derive(Debug, Deserialize)]
struct TokenizeRequest {
    model: Option<String>,
    prompt: Option<String>,
    messages: Option<Vec<ChatMessageParam>>,
    /// Default: true for a prompt, false for messages (the template adds
    /// what the model expects).
    add_special_tokens: Option<bool>,
    #[serde(default = "default_true")]
    add_generation_prompt: bool,
    /// Function tools, rendered as the chat route renders them (vLLM's
    /// `/tokenize` takes them too, to count a prompt with tools).
    tools: Option<Vec<serde_json::Value>>,
}

fn default_true() -> bool {
    true
}

#[derive(Serialize)]
struct TokenizeResponse {
    tokens: Vec<u32>,
    count: usize,
    max_model_len: usize,
}

#[derive(Debug, Deserialize)]
struct DetokenizeRequest {
    model: Option<String>,
    tokens: Vec<u32>,
}

#[derive(Serialize)]
struct DetokenizeResponse {
    prompt: String,
}

pub async fn tokenize(state: &Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: TokenizeRequest = json::parse(&body)?;
    let model = state.model()?;
    if let Some(name) = &request.model {
        model.check_name(name)?;
    }
    let (text, add_special) = match (request.prompt, &request.messages) {
        (Some(prompt), None) => (prompt, request.add_special_tokens.unwrap_or(true)),
        (None, Some(messages)) => {
            let template = model
                .chat_template
                .clone()
                .ok_or_else(|| ApiError::invalid("this model has no chat template", "messages"))?;
            let (messages, add_generation_prompt) = (chat_messages(messages)?, request.add_generation_prompt);
            let tools = ToolRequest::parse(request.tools.as_deref(), None, None)?;
            let definitions = tools.map(|t| t.definitions).unwrap_or_default();
            // On the blocking pool, as in the chat route: a render may run long.
            let rendered = tokio::task::spawn_blocking(move || {
                template.render_chat(&messages, &definitions, add_generation_prompt)
            })
            .await
            .map_err(|e| ApiError::Internal(format!("chat template task failed: {e}")))?
            .map_err(|e| ApiError::invalid(e.to_string(), "messages"))?;
            (rendered, request.add_special_tokens.unwrap_or(false))
        }
        _ => return Err(ApiError::invalid("give exactly one of `prompt` and `messages`", "prompt")),
    };
    let tokenizer = model.tokenizer.clone();
    let tokens = tokio::task::spawn_blocking(move || tokenizer.encode(&text, add_special))
        .await
        .map_err(|e| ApiError::Internal(format!("tokenizer task failed: {e}")))?
        .map_err(|e| ApiError::invalid(e.to_string(), "prompt"))?;
    let response = TokenizeResponse { count: tokens.len(), tokens, max_model_len: model.max_model_len() };
    Ok(json_response(StatusCode::OK, &response))
}

pub async fn detokenize(state: &Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: DetokenizeRequest = json::parse(&body)?;
    let model = state.model()?;
    if let Some(name) = &request.model {
        model.check_name(name)?;
    }
    let tokenizer = model.tokenizer.clone();
    let prompt = tokio::task::spawn_blocking(move || tokenizer.decode(&request.tokens, false))
        .await
        .map_err(|e| ApiError::Internal(format!("tokenizer task failed: {e}")))?
        .map_err(|e| match e {
            TextError::UnknownTokenId { .. } => ApiError::invalid(e.to_string(), "tokens"),
            other => ApiError::Internal(other.to_string()),
        })?;
    Ok(json_response(StatusCode::OK, &DetokenizeResponse { prompt }))
}

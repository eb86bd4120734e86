//! `GET /v1/models` and `GET /v1/models/{id}`, in OpenAI's shape with
//! vLLM's `max_model_len` (the context length) added. The chat model and
//! the embedding model, if one is served, are both listed; `task` (named
//! after vLLM's `--task`) says which is which: `generate` or `embed`.

use hyper::StatusCode;
use serde::Serialize;

use super::super::body::{Response, json_response};
use super::super::error::ApiError;
use super::super::state::AppState;

#[derive(Serialize)]
struct ModelCard<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
    root: &'a str,
    parent: Option<&'a str>,
    max_model_len: usize,
    task: &'static str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelCard<'a>>,
}

/// The model objects of every served name: the chat model's, then the
/// embedding model's (its `max_model_len` is its longest input).
fn cards(state: &AppState) -> Result<Vec<ModelCard<'_>>, ApiError> {
    let model = state.model()?;
    let max_len = model.max_model_len();
    let mut cards: Vec<ModelCard> =
        model.names.iter().map(|id| card(id, &model.names, model.created, max_len, "generate")).collect();
    if let Some(embedding) = state.embedding()? {
        let max_len = embedding.max_model_len();
        cards.extend(
            embedding.names.iter().map(|id| card(id, &embedding.names, embedding.created, max_len, "embed")),
        );
    }
    Ok(cards)
}

fn card<'a>(
    id: &'a str,
    names: &'a [String],
    created: u64,
    max_model_len: usize,
    task: &'static str,
) -> ModelCard<'a> {
    ModelCard {
        id,
        object: "model",
        created,
        owned_by: "wgserve",
        root: names.first().map_or(id, String::as_str),
        parent: None,
        max_model_len,
        task,
    }
}

pub fn list(state: &AppState) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &ModelList { object: "list", data: cards(state)? }))
}

pub fn retrieve(state: &AppState, id: &str) -> Result<Response, ApiError> {
    match cards(state)?.into_iter().find(|card| card.id == id) {
        Some(card) => Ok(json_response(StatusCode::OK, &card)),
        None => Err(ApiError::NotFound(format!("the model `{id}` does not exist"))),
    }
}

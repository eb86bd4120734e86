//! `GET /v1/models` and `GET /v1/models/{id}`, in OpenAI's shape with
//! vLLM's `max_model_len` (the context length) added.

use hyper::StatusCode;
use serde::Serialize;

use super::super::body::{Response, json_response};
use super::super::error::ApiError;
use super::super::state::{AppState, ServedModel};

#[derive(Serialize)]
struct ModelCard<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
    root: &'a str,
    parent: Option<&'a str>,
    max_model_len: usize,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelCard<'a>>,
}

fn card<'a>(model: &'a ServedModel, id: &'a str) -> ModelCard<'a> {
    ModelCard {
        id,
        object: "model",
        created: model.created,
        owned_by: "wgserve",
        root: model.names.first().map_or(id, String::as_str),
        parent: None,
        max_model_len: model.max_model_len(),
    }
}

pub fn list(state: &AppState) -> Result<Response, ApiError> {
    let model = state.model()?;
    let data = model.names.iter().map(|name| card(model, name)).collect();
    Ok(json_response(StatusCode::OK, &ModelList { object: "list", data }))
}

pub fn retrieve(state: &AppState, id: &str) -> Result<Response, ApiError> {
    let model = state.model()?;
    model.check_name(id)?;
    Ok(json_response(StatusCode::OK, &card(model, id)))
}

//! `POST /v1/embeddings`: parse and check the inputs, tokenize the texts
//! (truncated to the model's longest input) on the blocking pool, submit
//! all inputs to the embedding worker at once (they share its forward
//! passes) and answer with the vectors and the token count. A client that
//! hangs up drops the receiver, and the worker skips what is left of it.

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;

use super::super::body::{Response, json_response};
use super::super::embedding::{
    EmbeddingInput, EmbeddingRequest, EmbeddingResponse, embedding_error, parse_inputs,
};
use super::super::error::ApiError;
use super::super::json;
use super::super::state::AppState;

pub async fn create(state: &Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: EmbeddingRequest = json::parse(&body)?;
    let embedding = state.embedding_model(request.model.as_deref())?;
    let name = request.model.clone().unwrap_or_else(|| embedding.names[0].clone());
    let dimensions = embedding.handle.limits().dimensions;
    if let Some(asked) = request.dimensions.filter(|&d| d != dimensions as u64) {
        return Err(ApiError::invalid(
            format!("this model's embeddings have {dimensions} dimensions, not {asked}"),
            "dimensions",
        ));
    }
    let (inputs, params): (Vec<EmbeddingInput>, Vec<String>) =
        parse_inputs(request.input.as_ref())?.into_iter().unzip();
    let tokenizer = embedding.tokenizer.clone();
    let params_for_tokenizer = params.clone();
    let token_ids = tokio::task::spawn_blocking(move || {
        inputs
            .into_iter()
            .zip(&params_for_tokenizer)
            .map(|(input, param)| match input {
                EmbeddingInput::Text(text) => {
                    tokenizer.encode(&text, true).map_err(|e| ApiError::invalid(e.to_string(), param.clone()))
                }
                EmbeddingInput::Tokens(ids) => Ok(ids),
            })
            .collect::<Result<Vec<Vec<u32>>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("tokenizer task failed: {e}")))??;
    let prompt_tokens = token_ids.iter().map(Vec::len).sum();
    let receiver = embedding.handle.submit(token_ids).map_err(|e| embedding_error(e, &params))?;
    let vectors = receiver
        .await
        .map_err(|_| ApiError::Unavailable("the embedding model has stopped".into()))?
        .map_err(|e| embedding_error(e, &params))?;
    let response = EmbeddingResponse::new(name, vectors, request.encoding_format, prompt_tokens);
    Ok(json_response(StatusCode::OK, &response))
}

//! `GET /metrics`: the served model's Prometheus metrics (see
//! `server::metrics` for what they are and where they come from).

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::super::body::{Response, full};
use super::super::error::ApiError;
use super::super::metrics;
use super::super::state::AppState;

pub fn get(state: &AppState) -> Result<Response, ApiError> {
    let text = state
        .model()?
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(format!("cannot encode the metrics: {e}")))?;
    let mut response = hyper::Response::new(full(text));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    Ok(response)
}

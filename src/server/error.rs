//! The one error type of the server. Every failure a client can see is an
//! `ApiError`, rendered as OpenAI's error object
//! `{"error": {"message", "type", "param", "code"}}` with its HTTP status.

use hyper::StatusCode;
use hyper::header::{ALLOW, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde::Serialize;

use super::body::{Response, json_response};

/// What a 429 or 503 tells a client to wait before trying again: about
/// the time a busy queue or a restarting engine needs to move.
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Bad JSON, wrong types, values out of range; `param` names the field.
    #[error("{message}")]
    InvalidRequest { message: String, param: Option<String> },
    #[error("{0}")]
    Unauthorized(String),
    /// Refused whoever asks: a Host or Origin another web page could
    /// have sent; `code` says which check refused it.
    #[error("{message}")]
    Forbidden { message: String, code: &'static str },
    #[error("{0}")]
    NotFound(String),
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String, allow: String },
    #[error("the request body is larger than the limit of {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The waiting queue is full: retry after `RETRY_AFTER_SECONDS`.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Internal(String),
    /// Loading, stopped, or failed (with the first cause).
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<&'a str>,
    code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> Self {
        ApiError::InvalidRequest { message: message.into(), param: Some(param.into()) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// OpenAI's `type` and `code` for this error.
    fn kind_and_code(&self) -> (&'static str, Option<&'static str>) {
        match self {
            ApiError::InvalidRequest { .. } => ("invalid_request_error", None),
            ApiError::Unauthorized(_) => ("authentication_error", Some("invalid_api_key")),
            // The type OpenAI's clients map 403 to (PermissionDeniedError).
            ApiError::Forbidden { code, .. } => ("permission_error", Some(*code)),
            ApiError::NotFound(_) => ("invalid_request_error", Some("not_found")),
            ApiError::MethodNotAllowed { .. } => ("invalid_request_error", Some("method_not_allowed")),
            ApiError::PayloadTooLarge { .. } => ("invalid_request_error", Some("payload_too_large")),
            ApiError::UnsupportedMediaType(_) => ("invalid_request_error", Some("unsupported_media_type")),
            // OpenAI's type and code for a rate limit.
            ApiError::TooManyRequests(_) => ("rate_limit_error", Some("rate_limit_exceeded")),
            ApiError::Internal(_) => ("server_error", None),
            ApiError::Unavailable(_) => ("server_error", Some("service_unavailable")),
        }
    }

    pub fn into_response(self) -> Response {
        let (kind, code) = self.kind_and_code();
        let param = match &self {
            ApiError::InvalidRequest { param, .. } => param.as_deref(),
            _ => None,
        };
        let body = ErrorBody { error: ErrorObject { message: self.to_string(), kind, param, code } };
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match &self {
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    headers.insert(ALLOW, value);
                }
            }
            ApiError::Unauthorized(_) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests(_) | ApiError::Unavailable(_) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        response
    }
}

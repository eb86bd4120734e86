//! The one body type of every response: boxed, so that a whole JSON
//! document and (later) an SSE stream share it.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Response = hyper::Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn empty() -> Body {
    Empty::new().boxed()
}

/// `value` as JSON with `status`. Serializing our own response types
/// cannot fail; if it ever did, the client gets a 500, not a panic.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    let (status, bytes) = match serde_json::to_vec(value) {
        Ok(bytes) => (status, bytes),
        Err(e) => {
            let message = serde_json::json!({"error": {"message": format!("cannot encode the response: {e}"),
                "type": "server_error", "param": null, "code": null}});
            (StatusCode::INTERNAL_SERVER_ERROR, message.to_string().into_bytes())
        }
    };
    let mut response = hyper::Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

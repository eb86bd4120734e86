//! CORS for the configured origins (`--cors-origin`; `*` allows any).
//! Preflight requests (OPTIONS) are answered without an API key, as
//! browsers never send credentials with them.

use hyper::StatusCode;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ALLOW, HeaderValue, VARY,
};

use super::body::{Response, empty};

#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub fn new(origins: Vec<String>) -> Self {
        Self { origins }
    }

    /// Whether `origin` (an `Origin` header's text) was configured.
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == "*" || o.trim_end_matches('/') == origin)
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        if self.origins.iter().any(|o| o == "*") {
            return Some(HeaderValue::from_static("*"));
        }
        self.allows(origin.to_str().ok()?).then(|| origin.clone())
    }

    /// Adds the CORS headers to any response for a request from `origin`.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut Response) {
        if self.origins.is_empty() {
            return;
        }
        let headers = response.headers_mut();
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if let Some(value) = self.allow_origin(origin) {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
    }

    /// 204 to an OPTIONS request on a known path whose methods are `allow`.
    pub fn preflight(&self, allow: &str) -> Response {
        let mut response = hyper::Response::new(empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(allow) {
            headers.insert(ALLOW, value.clone());
            if !self.origins.is_empty() {
                headers.insert(ACCESS_CONTROL_ALLOW_METHODS, value);
                headers.insert(
                    ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("authorization, content-type"),
                );
                headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            }
        }
        response
    }
}

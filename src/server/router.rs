//! The one route table. A path that matches no route is 404; a known path
//! with another method is 405 with `Allow`; OPTIONS is a CORS preflight.
//! Before any of that, the guards refuse a foreign Host or Origin (403).
//! Routes not marked `open` need an API key when keys are configured;
//! routes that take JSON need `Content-Type: application/json` (415).

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::ORIGIN;
use hyper::{Method, Request};

use super::auth;
use super::body::Response;
use super::error::ApiError;
use super::guard;
use super::routes::{completions, embeddings, health, metrics, models, tokenize, web};
use super::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Health,
    Metrics,
    ListModels,
    RetrieveModel,
    Tokenize,
    Detokenize,
    ChatCompletions,
    Completions,
    Embeddings,
    WebPage,
    WebAsset,
}

impl Endpoint {
    /// Takes a JSON body, so needs `Content-Type: application/json`.
    fn takes_json(self) -> bool {
        matches!(
            self,
            Endpoint::Tokenize
                | Endpoint::Detokenize
                | Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Embeddings
        )
    }

    /// Starts engine work, which a draining server refuses (503, for the
    /// balancer to send elsewhere).
    fn is_new_work(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings)
    }
}

struct Route {
    method: Method,
    /// Literal segments, or a last `{*}` segment that captures the rest.
    path: &'static str,
    endpoint: Endpoint,
    /// Reachable without an API key.
    open: bool,
}

const ROUTES: &[Route] = &[
    Route { method: Method::GET, path: "/health", endpoint: Endpoint::Health, open: true },
    Route { method: Method::GET, path: "/metrics", endpoint: Endpoint::Metrics, open: true },
    Route { method: Method::GET, path: "/v1/models", endpoint: Endpoint::ListModels, open: false },
    Route { method: Method::GET, path: "/v1/models/{*}", endpoint: Endpoint::RetrieveModel, open: false },
    Route { method: Method::POST, path: "/tokenize", endpoint: Endpoint::Tokenize, open: false },
    Route { method: Method::POST, path: "/detokenize", endpoint: Endpoint::Detokenize, open: false },
    Route {
        method: Method::POST,
        path: "/v1/chat/completions",
        endpoint: Endpoint::ChatCompletions,
        open: false,
    },
    Route { method: Method::POST, path: "/v1/completions", endpoint: Endpoint::Completions, open: false },
    Route { method: Method::POST, path: "/v1/embeddings", endpoint: Endpoint::Embeddings, open: false },
    // The chat UI loads without a key; its API calls send the key the user
    // enters. hyper leaves the body out of an answer to HEAD.
    Route { method: Method::GET, path: "/", endpoint: Endpoint::WebPage, open: true },
    Route { method: Method::HEAD, path: "/", endpoint: Endpoint::WebPage, open: true },
    Route { method: Method::GET, path: "/static/{*}", endpoint: Endpoint::WebAsset, open: true },
    Route { method: Method::HEAD, path: "/static/{*}", endpoint: Endpoint::WebAsset, open: true },
];

/// `Some(capture)` when `path` matches `pattern`; the capture is the
/// rest of the path for a `{*}` pattern (model ids may contain `/`).
fn match_path<'p>(pattern: &str, path: &'p str) -> Option<Option<&'p str>> {
    match pattern.strip_suffix("{*}") {
        Some(prefix) => path.strip_prefix(prefix).filter(|rest| !rest.is_empty()).map(Some),
        None => (pattern == path).then_some(None),
    }
}

/// The service function: every request gets a response, errors included.
pub async fn handle(state: Arc<AppState>, request: Request<Incoming>) -> Result<Response, Infallible> {
    let origin = request.headers().get(ORIGIN).cloned();
    let mut response = dispatch(&state, request).await.unwrap_or_else(ApiError::into_response);
    state.cors.decorate(origin.as_ref(), &mut response);
    Ok(response)
}

async fn dispatch(state: &Arc<AppState>, request: Request<Incoming>) -> Result<Response, ApiError> {
    // First, so that a foreign page learns nothing, not even which routes exist.
    state.host_check.check(request.version(), request.headers())?;
    guard::check_origin(request.headers(), &state.cors)?;
    let path = request.uri().path().to_string();
    let matches: Vec<(&Route, Option<&str>)> =
        ROUTES.iter().filter_map(|route| Some((route, match_path(route.path, &path)?))).collect();
    if matches.is_empty() {
        return Err(ApiError::NotFound(format!("unknown route: {} {path}", request.method())));
    }
    let mut allow: Vec<&str> = matches.iter().map(|(route, _)| route.method.as_str()).collect();
    allow.push("OPTIONS");
    let allow = allow.join(", ");
    if request.method() == Method::OPTIONS {
        return Ok(state.cors.preflight(&allow));
    }
    let Some(&(route, capture)) = matches.iter().find(|(route, _)| route.method == request.method()) else {
        return Err(ApiError::MethodNotAllowed { method: request.method().to_string(), path, allow });
    };
    if !route.open {
        auth::check(request.headers(), &state.options.api_keys)?;
    }
    if route.endpoint.takes_json() {
        guard::check_json_content_type(request.headers())?;
    }
    let limit = state.options.max_body_bytes;
    if state.is_draining() && route.endpoint.is_new_work() {
        state.note_drain_refusal();
        return Err(ApiError::Unavailable(health::DRAINING.into()));
    }
    match route.endpoint {
        Endpoint::Health => health::get(state),
        Endpoint::Metrics => metrics::get(state),
        Endpoint::ListModels => models::list(state),
        Endpoint::RetrieveModel => models::retrieve(state, capture.unwrap_or_default()),
        Endpoint::Tokenize => tokenize::tokenize(state, super::json::read_body(request, limit).await?).await,
        Endpoint::Detokenize => {
            tokenize::detokenize(state, super::json::read_body(request, limit).await?).await
        }
        Endpoint::ChatCompletions => {
            completions::chat(state, super::json::read_body(request, limit).await?).await
        }
        Endpoint::Completions => {
            completions::completion(state, super::json::read_body(request, limit).await?).await
        }
        Endpoint::Embeddings => {
            embeddings::create(state, super::json::read_body(request, limit).await?).await
        }
        Endpoint::WebPage => Ok(web::page(request.headers())),
        Endpoint::WebAsset => web::asset(capture.unwrap_or_default(), request.headers()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_literals_and_tails() {
        assert_eq!(match_path("/health", "/health"), Some(None));
        assert_eq!(match_path("/health", "/health/"), None);
        assert_eq!(match_path("/v1/models/{*}", "/v1/models/org/name"), Some(Some("org/name")));
        assert_eq!(match_path("/v1/models/{*}", "/v1/models/"), None);
        assert_eq!(match_path("/v1/models/{*}", "/v1/models"), None);
    }
}

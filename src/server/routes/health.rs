//! `GET /health`: 200 when the engine is ready; 503 with the cause while
//! loading, while draining (after SIGTERM, so that balancers send new
//! requests elsewhere), after an engine failure (its first cause) or once
//! stopped.

use hyper::StatusCode;
use serde_json::json;

use crate::engine::worker::Health;

use super::super::body::{Response, json_response};
use super::super::error::ApiError;
use super::super::state::AppState;

pub fn get(state: &AppState) -> Result<Response, ApiError> {
    let health = state.model()?.engine.health();
    if state.is_draining() {
        return Err(ApiError::Unavailable(DRAINING.into()));
    }
    match health {
        Health::Ready => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
        Health::Restarting(cause) => {
            Err(ApiError::Unavailable(format!("the engine is restarting after a failure: {cause}")))
        }
        Health::Failed(cause) => Err(ApiError::Unavailable(format!("the engine has failed: {cause}"))),
        Health::Stopped => Err(ApiError::Unavailable("the engine has stopped".into())),
    }
}

pub const DRAINING: &str = "the server is shutting down (draining): send new requests to another replica";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::state::ServerOptions;

    #[test]
    fn unavailable_with_the_cause_while_loading() {
        let state = AppState::new(ServerOptions::default());
        state.set_loading_status("loading model.gguf");
        let Err(error) = get(&state) else { panic!("expected 503 while loading") };
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(error.to_string().contains("loading model.gguf"), "{error}");
    }
}

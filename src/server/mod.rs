//! The HTTP server: owns everything HTTP (accept loop, routing, API keys,
//! CORS, request parsing, OpenAI-shaped responses and errors). It reaches
//! the engine only through `EngineHandle` and never touches the GPU or
//! the model; the text module's tokenizer and chat template are the only
//! model pieces it holds, for `/tokenize` and for rendering chats. The
//! embedding model is reached the same way, through its worker's handle.
//!
//! - [`accept`]: accept loop, the cap on open connections, graceful
//!   shutdown; [`conn_timeouts`]: deadlines for slow and idle clients.
//! - [`router`]: the one route table (404, 405, OPTIONS).
//! - [`error`]: the one error type, rendered as OpenAI's error object.
//! - [`body`]: the one response body type.
//! - [`openai`]: OpenAI's request and response shapes, and chat message
//!   validation.
//! - [`generation`]: completion requests as engine requests, outputs as
//!   OpenAI responses; [`sse`]: the streamed form's event framing.
//! - [`embedding`]: the embeddings request's inputs and the response
//!   (floats or base64).
//! - [`json`]: body reading with a size limit, JSON parsing naming fields.
//! - [`metrics`]: Prometheus metrics under vLLM's names;
//!   [`process_metrics`]: the process's resident memory.
//! - [`auth`], [`cors`]: API keys and browser origins.
//! - [`guard`]: the Host, Origin and content-type checks that keep other
//!   web pages out, run before any route.
//! - [`routes`]: one file per group of endpoints; handlers stay thin.

pub mod accept;
pub mod agent;
pub mod auth;
pub mod body;
pub mod conn_timeouts;
pub mod cors;
pub mod embedding;
pub mod error;
pub mod generation;
pub mod guard;
pub mod json;
pub mod metrics;
pub mod openai;
pub mod process_metrics;
pub mod router;
pub mod routes;
pub mod sse;
pub mod state;
pub mod structured;
pub mod tools;

pub use accept::serve;
pub use conn_timeouts::ConnectionTimeouts;
pub use error::ApiError;
pub use state::{AppState, ServedEmbedding, ServedModel, ServerOptions};

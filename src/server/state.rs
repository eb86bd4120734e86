//! What every handler sees: the options, and once loaded, the served model
//! (the engine handle plus the text pieces the handlers need) and the
//! embedding model beside it, if one is served (its worker's handle and
//! its tokenizer).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::engine::constraint::GrammarCompiler;
use crate::engine::embedding::EmbeddingHandle;
use crate::engine::worker::EngineHandle;
use crate::text::{ChatTemplate, Tokenizer};

use super::conn_timeouts::ConnectionTimeouts;
use super::cors::Cors;
use super::error::ApiError;
use super::guard::HostCheck;
use super::metrics::ServerMetrics;

/// Request bodies above this get 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Below the common soft limit of 1024 open files, so that the cap, not
/// the process's file limit, is what a flood of connections meets.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Bearer keys; empty means no authentication.
    pub api_keys: Vec<String>,
    /// Allowed browser origins; `*` allows any.
    pub cors_origins: Vec<String>,
    /// The address the listener is bound to, which decides whether the
    /// Host check is on by default; `None` (states built in tests): off.
    pub bound_ip: Option<IpAddr>,
    /// Host names answered besides the bound address (`--allowed-host`,
    /// checked by `guard::parse_allowed_host`); `*` turns the check off.
    pub allowed_hosts: Vec<String>,
    pub max_body_bytes: usize,
    /// How long in-flight connections may run on after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How long a connection may take over a request head, and stay idle.
    pub connection_timeouts: ConnectionTimeouts,
    /// Open connections served at once; beyond, new ones get a quick 503.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            bound_ip: None,
            allowed_hosts: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: Duration::from_secs(10),
            connection_timeouts: ConnectionTimeouts {
                header_read: Some(Duration::from_secs(30)),
                // Longer than clients' own keep-alive expiry (5 s in the
                // OpenAI SDKs' httpx), so that the client closes first and
                // never sends on a connection the server is closing.
                idle: Some(Duration::from_secs(60)),
            },
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The model behind the API, reached only through its engine handle.
pub struct ServedModel {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: Option<ChatTemplate>,
    /// The names clients may use; the first is the one reported.
    pub names: Vec<String>,
    /// Unix seconds, for the `created` field of model objects.
    pub created: u64,
    pub metrics: ServerMetrics,
    /// Compiles requests' output constraints (JSON schemas, ...), or why
    /// this model's tokenizer cannot carry them.
    pub grammar: Result<Arc<GrammarCompiler>, String>,
}

impl ServedModel {
    /// `names` must hold at least one name.
    pub fn new(
        engine: EngineHandle,
        tokenizer: Arc<Tokenizer>,
        chat_template: Option<ChatTemplate>,
        names: Vec<String>,
    ) -> Self {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let metrics = ServerMetrics::new(&names[0], engine.clone());
        let grammar = Err("structured output is not set up for this model".to_string());
        Self { engine, tokenizer, chat_template, names, created, metrics, grammar }
    }

    pub fn with_grammar(mut self, grammar: Result<GrammarCompiler, String>) -> Self {
        self.grammar = grammar.map(Arc::new);
        self
    }

    pub fn max_model_len(&self) -> usize {
        self.engine.scheduler_config().max_model_len
    }

    /// 404 unless `name` is one of the served names.
    pub fn check_name(&self, name: &str) -> Result<(), ApiError> {
        if self.names.iter().any(|n| n == name) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("the model `{name}` does not exist")))
        }
    }
}

/// The embedding model, reached only through its worker's handle.
pub struct ServedEmbedding {
    pub handle: EmbeddingHandle,
    /// Truncates to the model's maximum input length.
    pub tokenizer: Arc<Tokenizer>,
    /// The names clients may use; the first is the one reported.
    pub names: Vec<String>,
    /// Unix seconds, for the `created` field of model objects.
    pub created: u64,
}

impl ServedEmbedding {
    /// `names` must hold at least one name.
    pub fn new(handle: EmbeddingHandle, tokenizer: Arc<Tokenizer>, names: Vec<String>) -> Self {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { handle, tokenizer, names, created }
    }

    /// The longest input in tokens, [CLS] and [SEP] included.
    pub fn max_model_len(&self) -> usize {
        self.handle.limits().max_input_tokens
    }

    pub fn has_name(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

pub struct AppState {
    pub options: ServerOptions,
    pub cors: Cors,
    pub host_check: HostCheck,
    model: OnceLock<ServedModel>,
    embedding: OnceLock<ServedEmbedding>,
    /// What the server is doing before the model is ready (for /health).
    loading_status: Mutex<String>,
    /// Set on SIGTERM: /health says 503 and new work is refused, so that
    /// balancers send it elsewhere while the requests in flight finish.
    draining: AtomicBool,
    /// When new work was last refused for draining: a balancer still
    /// routing here, so the listener stays open (`accept::serve`).
    last_drain_refusal: Mutex<Option<Instant>>,
}

impl AppState {
    pub fn new(options: ServerOptions) -> Arc<Self> {
        let cors = Cors::new(options.cors_origins.clone());
        let host_check = HostCheck::new(options.bound_ip, &options.allowed_hosts);
        Arc::new(Self {
            options,
            cors,
            host_check,
            model: OnceLock::new(),
            embedding: OnceLock::new(),
            loading_status: Mutex::new("starting".into()),
            draining: AtomicBool::new(false),
            last_drain_refusal: Mutex::new(None),
        })
    }

    pub fn set_loading_status(&self, status: impl Into<String>) {
        *self.loading_status.lock().unwrap_or_else(PoisonError::into_inner) = status.into();
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn note_drain_refusal(&self) {
        *self.last_drain_refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    pub fn last_drain_refusal(&self) -> Option<Instant> {
        *self.last_drain_refusal.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no generation is running or waiting (true before loading).
    pub fn engine_idle(&self) -> bool {
        self.model.get().is_none_or(|model| {
            let scheduler = model.engine.metrics().scheduler;
            scheduler.num_running + scheduler.num_waiting == 0
        })
    }

    /// Makes the model available to handlers; later calls are ignored.
    pub fn set_ready(&self, model: ServedModel) {
        let _ = self.model.set(model);
    }

    /// Serves an embedding model beside the chat model. Call it before
    /// `set_ready`, so that a ready server answers embeddings at once.
    pub fn set_embedding(&self, embedding: ServedEmbedding) {
        let _ = self.embedding.set(embedding);
    }

    /// The embedding model: 503 while the server loads, `None` when the
    /// server runs without one.
    pub fn embedding(&self) -> Result<Option<&ServedEmbedding>, ApiError> {
        self.model()?;
        Ok(self.embedding.get())
    }

    /// The embedding model a request names (or the served one when it
    /// names none): 404 for an unknown name, 400 for the chat model's.
    pub fn embedding_model(&self, name: Option<&str>) -> Result<&ServedEmbedding, ApiError> {
        let chat = self.model()?;
        match (self.embedding.get(), name) {
            (Some(embedding), None) => Ok(embedding),
            (Some(embedding), Some(name)) if embedding.has_name(name) => Ok(embedding),
            (_, Some(name)) if chat.names.iter().any(|n| n == name) => Err(ApiError::invalid(
                format!("`{name}` is a chat model; it does not make embeddings"),
                "model",
            )),
            (_, Some(name)) => Err(ApiError::NotFound(format!("the model `{name}` does not exist"))),
            (None, None) => Err(ApiError::NotFound(
                "no embedding model is served (start wgserve with --embedding-model PATH)".into(),
            )),
        }
    }

    /// The served model, or 503 saying what the server is still doing.
    pub fn model(&self) -> Result<&ServedModel, ApiError> {
        self.model.get().ok_or_else(|| {
            let status = self.loading_status.lock().unwrap_or_else(PoisonError::into_inner).clone();
            ApiError::Unavailable(format!("the model is not loaded yet: {status}"))
        })
    }
}

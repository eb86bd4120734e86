//! `wgserve serve`: the OpenAI-compatible HTTP server. It binds first, so
//! that `/health` answers 503 with the cause while the model loads on its
//! own thread (and the embedding model, on a GPU device of its own); then
//! starts the engine thread and the embedding worker and prints
//! `wgserve listening on http://HOST:PORT` on stdout. On SIGINT/SIGTERM it
//! drains (/health 503, new requests refused), lets open requests finish for `--shutdown-grace`,
//! aborts the rest (each gets a final chunk), stops the engine and exits 0.
//! Progress goes to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use wgserve::engine::constraint::GrammarCompiler;
use wgserve::engine::core::EngineCore;
use wgserve::engine::embedding::EmbeddingHandle;
use wgserve::engine::fault::FaultPlan;
use wgserve::engine::worker::{EngineHandle, Health, Restart, WorkerOptions};
use wgserve::model::loader::LoadedEncoder;
use wgserve::server::guard::HostCheck;
use wgserve::server::state::DEFAULT_MAX_CONNECTIONS;
use wgserve::server::{AppState, ConnectionTimeouts, ServedEmbedding, ServedModel, ServerOptions};
use wgserve::text::{ChatTemplate, Tokenizer};

use super::ModelArgs;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the printed URL shows it).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A key clients must send as `Authorization: Bearer KEY`; repeat for
    /// several keys. Without any, the API is open. `/health` is always open.
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// The model name clients use; repeat for aliases (the first is
    /// reported). Default: the model file's name.
    #[arg(long = "served-model-name", value_name = "NAME")]
    served_model_names: Vec<String>,
    /// A browser origin allowed to call the API (CORS); repeat for several,
    /// `*` for any.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// A host name clients may reach the server by (the `Host` header),
    /// besides its address and `localhost`; repeat for several, `*` to turn
    /// the check off (behind a proxy). The check guards against DNS
    /// rebinding; it is on by default when bound to loopback, and on a
    /// public or all-address bind only when a name is given.
    #[arg(long = "allowed-host", value_name = "NAME", value_parser = wgserve::server::guard::parse_allowed_host)]
    allowed_hosts: Vec<String>,
    /// Answer HAProxy agent checks on this port (same address): one line
    /// per connection, `up ready N%` with a weight from the free KV cache
    /// and the waiting requests, `drain` while shutting down, `down` while
    /// loading or failed.
    #[arg(long, value_name = "PORT")]
    agent_port: Option<u16>,
    /// On SIGINT/SIGTERM, how long in-flight requests may run on before
    /// they are aborted (each still gets a final chunk). Meanwhile the
    /// server drains: /health answers 503 and new requests get 503, until
    /// no generation is left.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds)]
    shutdown_grace: f64,
    /// A client must send a whole request head within this many seconds of
    /// its first byte, or its connection is closed; 0: no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = parse_seconds)]
    header_read_timeout: f64,
    /// A connection with no request in flight (new, or kept alive after a
    /// response) is closed after this many seconds; 0: no limit.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = parse_seconds)]
    idle_connection_timeout: f64,
    /// Connections open at once; a new one beyond the cap is answered 503
    /// with `Retry-After: 1` and closed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS as u32,
        value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// An embedding model served beside the chat model at /v1/embeddings
    /// (a Hugging Face BERT directory). Default: all-MiniLM-L6-v2 when
    /// scripts/setup.sh fetched it.
    #[arg(long, value_name = "PATH")]
    embedding_model: Option<PathBuf>,
    /// Serve no embedding model, not even the default one.
    #[arg(long, conflicts_with = "embedding_model")]
    no_embedding_model: bool,
    /// The embedding model's name; repeat for aliases (the first is
    /// reported). Default: all-MiniLM-L6-v2 for the default model, else the
    /// directory's name.
    #[arg(long = "served-embedding-model-name", value_name = "NAME")]
    served_embedding_model_names: Vec<String>,
    /// After an engine failure (the device, a forward pass), how many times
    /// in a row to rebuild it (new device, model reloaded, back-off from
    /// 1 s) before exiting with a failure for a supervisor to restart.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_engine_restarts: u32,
    /// Requests that may wait for a place in the running batch; beyond,
    /// new requests get 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_waiting_requests: usize,
    /// Tests only: the forward pass of engine step STEP fails as a lost
    /// device would, in the first ENGINES engines (default 1).
    #[arg(long, value_name = "STEP[:ENGINES]", hide = true, value_parser = parse_device_fault)]
    inject_device_fault: Option<(u64, u32)>,
}

fn parse_device_fault(text: &str) -> Result<(u64, u32), String> {
    let (step, engines) = text.split_once(':').unwrap_or((text, "1"));
    match (step.parse::<u64>(), engines.parse::<u32>()) {
        (Ok(step), Ok(engines)) if step >= 1 => Ok((step, engines)),
        _ => Err(format!("expected STEP[:ENGINES] with STEP >= 1, got `{text}`")),
    }
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && (0.0..=86_400.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!("expected seconds in 0..=86400, got `{text}`")),
    }
}

/// Seconds as a limit; 0 is none.
fn limit(seconds: f64) -> Option<Duration> {
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// What the loading thread hands back.
struct Loaded {
    core: EngineCore,
    tokenizer: Tokenizer,
    chat_template: Option<ChatTemplate>,
    name: String,
    /// The embedding model and its name.
    encoder: Option<(LoadedEncoder, String)>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wgserve-http")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Installed first: a signal during loading must not kill the process
    // with the default action.
    let mut signal = pin!(shutdown_signal()?);
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr: SocketAddr = listener.local_addr()?;
    eprintln!("bound to http://{addr}; /health answers 503 until the model is loaded");
    let state = AppState::new(ServerOptions {
        api_keys: args.api_keys.clone(),
        cors_origins: args.cors_origins.clone(),
        bound_ip: Some(addr.ip()),
        allowed_hosts: args.allowed_hosts.clone(),
        shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
        connection_timeouts: ConnectionTimeouts {
            header_read: limit(args.header_read_timeout),
            idle: limit(args.idle_connection_timeout),
        },
        max_connections: args.max_connections as usize,
        ..ServerOptions::default()
    });
    // Off by default on a network bind: say so where the operator looks.
    if state.host_check == HostCheck::Off && args.allowed_hosts.is_empty() {
        eprintln!(
            "the Host check (against DNS rebinding) is off on {}: name the hosts clients use with --allowed-host",
            addr.ip()
        );
    }
    if let Some(port) = args.agent_port {
        let agent = TcpListener::bind((args.host.as_str(), port))
            .await
            .with_context(|| format!("cannot listen for agent checks on {}:{port}", args.host))?;
        eprintln!("answering HAProxy agent checks on {}", agent.local_addr()?);
        tokio::spawn(wgserve::server::agent::serve_agent(agent, state.clone()));
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(wgserve::server::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));

    let embedding_model =
        if args.no_embedding_model { None } else { super::embedding_model(args.embedding_model.as_deref()) };
    let loaded = tokio::select! {
        loaded = load(args.model.clone(), embedding_model, state.clone()) => loaded,
        () = &mut signal => {
            eprintln!("shutting down while loading");
            let _ = stop.send(());
            let _ = server.await;
            return Ok(());
        }
    };
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            state.set_loading_status(format!("loading failed: {e:#}"));
            let _ = stop.send(());
            let _ = server.await;
            return Err(e);
        }
    };
    let restart = Restart {
        build: engine_builder(args.model.clone(), args.inject_device_fault),
        max_restarts: args.max_engine_restarts,
        first_backoff: Duration::from_secs(1),
    };
    let mut core = loaded.core;
    let model = core.model();
    eprintln!(
        "KV cache: {} tokens ({} blocks of {}, {}, --kv-cache-memory {} MiB)",
        model.num_kv_blocks() * model.block_size(),
        model.num_kv_blocks(),
        model.block_size(),
        model.options().kv_cache_dtype.name(),
        model.options().kv_cache_mib
    );
    let grammar = GrammarCompiler::new(core.tokenizer(), model.vocab_size(), core.eos_token_ids());
    if let Err(e) = &grammar {
        eprintln!("structured output (response_format, tools) is off for this model: {e}");
    }
    core.inject_faults(device_fault(args.inject_device_fault, 0));
    let options = WorkerOptions { max_waiting_requests: args.max_waiting_requests, restart: Some(restart) };
    let (engine, engine_thread) = EngineHandle::spawn_with(core, options);
    let mut engine_exit = pin!(tokio::task::spawn_blocking(move || engine_thread.join()));
    let names = if args.served_model_names.is_empty() { vec![loaded.name] } else { args.served_model_names };
    let embedding = loaded.encoder.map(|(encoder, name)| {
        let (handle, thread) = EmbeddingHandle::spawn(encoder.bert);
        let names = if args.served_embedding_model_names.is_empty() {
            vec![name]
        } else {
            args.served_embedding_model_names
        };
        state.set_embedding(ServedEmbedding::new(handle.clone(), encoder.tokenizer.into(), names));
        (handle, thread)
    });
    let served = ServedModel::new(engine.clone(), loaded.tokenizer.into(), loaded.chat_template, names);
    state.set_ready(served.with_grammar(grammar));
    println!("wgserve listening on http://{addr}");

    tokio::select! {
        () = &mut signal => {}
        // The engine thread ends on its own only when a failed engine
        // could not be rebuilt: exit non-zero for a supervisor to act.
        _ = &mut engine_exit => {
            let cause = match engine.health() {
                Health::Failed(cause) => cause,
                other => format!("the engine thread ended ({other:?})"),
            };
            eprintln!("the engine is down and could not be restarted: {cause}");
            let _ = stop.send(());
            let _ = server.await;
            anyhow::bail!("the engine is down: {cause}");
        }
    }
    eprintln!(
        "shutting down: draining (/health 503, new requests refused); requests in flight get {:?} to finish",
        state.options.shutdown_grace
    );
    let _ = stop.send(());
    let _ = server.await;
    engine.shutdown();
    engine_exit
        .await
        .context("joining the engine thread")?
        .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
    if let Some((handle, thread)) = embedding {
        handle.shutdown();
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("joining the embedding thread")?
            .map_err(|_| anyhow::anyhow!("the embedding thread panicked"))?;
    }
    eprintln!("stopped");
    Ok(())
}

/// What rebuilds the engine after a failure: a new GPU device and the
/// model loaded again, with the same options (so the same limits).
fn engine_builder(
    args: ModelArgs,
    device_fault_plan: Option<(u64, u32)>,
) -> Box<dyn FnMut() -> Result<EngineCore, String> + Send> {
    let mut engines_built = 0;
    Box::new(move || {
        engines_built += 1;
        let loaded = args.load().map_err(|e| format!("{e:#}"))?;
        let mut core = args.engine(loaded).map_err(|e| format!("{e:#}"))?;
        core.inject_faults(device_fault(device_fault_plan, engines_built));
        Ok(core)
    })
}

/// The `--inject-device-fault` plan for the engine with this index (0 is
/// the first one loaded).
fn device_fault(plan: Option<(u64, u32)>, engine_index: u32) -> FaultPlan {
    match plan {
        Some((step, engines)) if engine_index < engines => {
            FaultPlan { device_failure_at_step: Some(step), ..FaultPlan::default() }
        }
        _ => FaultPlan::default(),
    }
}

/// Opens the GPU, loads the model and builds the engine core on a plain
/// thread (GPU setup blocks), then the embedding model if there is one,
/// reporting progress to `/health`.
async fn load(
    args: ModelArgs,
    embedding_model: Option<(PathBuf, String)>,
    state: std::sync::Arc<AppState>,
) -> anyhow::Result<Loaded> {
    let (done, result) = oneshot::channel();
    std::thread::Builder::new().name("wgserve-load".into()).spawn(move || {
        let load = || -> anyhow::Result<Loaded> {
            state.set_loading_status(format!("loading {}", args.path()?.display()));
            let mut loaded = args.load()?;
            let tokenizer = loaded.tokenizer.clone();
            let chat_template = loaded.chat_template.take();
            let name = loaded.name.clone();
            state.set_loading_status("starting the engine");
            let core = args.engine(loaded)?;
            let encoder = match embedding_model {
                Some((path, name)) => {
                    state.set_loading_status(format!("loading the embedding model {}", path.display()));
                    // A driver workaround (--no-subgroups) or a forced
                    // family holds for both models.
                    let encoder =
                        super::load_embedding_model(&path, args.kernel_family(), args.no_subgroups)?;
                    Some((encoder, name))
                }
                None => None,
            };
            Ok(Loaded { core, tokenizer, chat_template, name, encoder })
        };
        let _ = done.send(load());
    })?;
    result.await.context("the loading thread died")?
}

#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

//! The accept loop: one task per connection (HTTP/1.1), at most
//! `max_connections` of them (beyond, a quick 503), each closed when idle
//! or slow to send a request head (`conn_timeouts`), until the shutdown
//! future resolves; then drain: answer on (`/health` 503, new work 503)
//! until no generation is left and nobody has sent work for a moment,
//! stop accepting, and give open connections
//! what is left of the grace period to finish, after which their requests
//! are aborted. The caller stops the engine afterwards in any case.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::Response;
use super::conn_timeouts::{Activity, Expiry, GuardedBody, WatchedStream};
use super::error::ApiError;
use super::router;
use super::state::AppState;

/// After the grace period, how long aborted responses get to send their
/// last chunk to clients that are slow to read it.
const FINAL_CHUNK_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections over the cap being answered 503 at once; beyond these the
/// socket is closed unanswered, so that a flood costs a bounded number of
/// tasks and file descriptors.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// How often a draining server checks whether its generations are done.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// A draining server keeps its listener until nobody has sent it work for
/// this long (no connection in the moments before SIGTERM, no request
/// refused since): a balancer routes to it until its next health check
/// (HAProxy checks every second), and closing the listener resets the
/// connections still in its backlog, which a balancer may not retry.
/// Health checks themselves do not hold it open.
const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// How long a refused client gets to send the request head it is answered.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `listener` until `shutdown` resolves, then drains.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let open_slots = Arc::new(Semaphore::new(state.options.max_connections));
    let refusal_slots = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let accept = |accepted: std::io::Result<(TcpStream, std::net::SocketAddr)>| async {
        match accepted {
            Ok((stream, _peer)) => match open_slots.clone().try_acquire_owned() {
                Ok(slot) => serve_connection(stream, &state, &graceful, slot),
                Err(_) => refuse_connection(stream, &refusal_slots, state.options.max_connections),
            },
            // Out of file descriptors and the like: back off, keep serving.
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let mut shutdown = pin!(shutdown);
    let mut last_accepted = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                last_accepted = Some(Instant::now());
                accept(accepted).await;
            }
            () = &mut shutdown => break,
        }
    }
    // Draining: still answering, so that a balancer sees /health say 503
    // (and new work refused) rather than a replica gone, until no
    // generation is left and nobody has sent work for DRAIN_QUIET, or the
    // grace period is over. A server nobody was calling stops at once.
    state.start_draining();
    let deadline = tokio::time::Instant::now() + state.options.shutdown_grace;
    let quiet = || {
        let last_work = last_accepted.max(state.last_drain_refusal());
        last_work.is_none_or(|at| at.elapsed() >= DRAIN_QUIET)
    };
    while !(state.engine_idle() && quiet()) && tokio::time::Instant::now() < deadline {
        tokio::select! {
            accepted = listener.accept() => accept(accepted).await,
            () = tokio::time::sleep(DRAIN_POLL) => {}
        }
    }
    drop(listener);
    let mut drained = pin!(graceful.shutdown());
    if tokio::time::timeout_at(deadline, &mut drained).await.is_ok() {
        return;
    }
    // Grace is over: stopping the engine ends every open request with
    // `abort`, which each response still sends (a final chunk with
    // `finish_reason: "abort"`, then `[DONE]`) before its connection closes.
    tracing::warn!("the shutdown grace period is over; aborting the requests still running");
    if let Ok(model) = state.model() {
        model.engine.shutdown();
    }
    if tokio::time::timeout(FINAL_CHUNK_TIMEOUT, &mut drained).await.is_err() {
        tracing::warn!("connections still open after their requests were aborted; closing them");
    }
}

/// Serves one connection on its own task, holding `slot` until it closes,
/// and closes it when it stays idle or sends a request head too slowly.
fn serve_connection(
    stream: TcpStream,
    state: &Arc<AppState>,
    graceful: &GracefulShutdown,
    slot: OwnedSemaphorePermit,
) {
    let activity = Activity::new(state.options.connection_timeouts);
    let service = service_fn({
        let (state, activity) = (state.clone(), activity.clone());
        move |request| {
            let guard = activity.request_started();
            let state = state.clone();
            async move {
                let response = router::handle(state, request).await?;
                Ok::<_, Infallible>(response.map(|body| GuardedBody::new(body, guard).boxed()))
            }
        }
    });
    // hyper's own header timeout is off: `Activity` times the idle and
    // the head-reading phases apart.
    let connection = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(WatchedStream::new(stream, activity.clone())), service);
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        tokio::select! {
            result = connection => if let Err(e) = result {
                tracing::debug!("connection ended with an error: {e}");
            },
            expiry = activity.expired() => match expiry {
                Expiry::Idle => tracing::debug!("closing an idle connection"),
                Expiry::HeaderRead => tracing::debug!("closing a connection that sent its request head too slowly"),
            },
        }
        drop(slot);
    });
}

/// Over the cap: answers the request head with 503 and `Retry-After`,
/// then closes. A client learns at once and retries (the OpenAI SDKs
/// retry 503 with back-off), where a connection left in the backlog would
/// hang without a word until a slot frees, possibly for a whole idle
/// timeout.
fn refuse_connection(stream: TcpStream, refusal_slots: &Arc<Semaphore>, max_connections: usize) {
    let Ok(slot) = refusal_slots.clone().try_acquire_owned() else {
        tracing::debug!("too many connections being refused; closing one unanswered");
        return;
    };
    let service =
        service_fn(move |_request| async move { Ok::<_, Infallible>(at_capacity(max_connections)) });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, connection).await;
        drop(slot);
    });
}

fn at_capacity(max_connections: usize) -> Response {
    let message = format!("the server has its maximum of {max_connections} connections open; retry later");
    let mut response = ApiError::Unavailable(message).into_response();
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

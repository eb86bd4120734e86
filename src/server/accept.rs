//! The accept loop: one task per connection (HTTP/1.1), until the shutdown
//! future resolves; then stop accepting and give open connections a
//! bounded time to finish, after which their requests are aborted. The
//! caller stops the engine afterwards in any case.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::router;
use super::state::AppState;

/// A client that opens a connection and sends nothing is dropped after this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// After the grace period, how long aborted responses get to send their
/// last chunk to clients that are slow to read it.
const FINAL_CHUNK_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `listener` until `shutdown` resolves, then drains.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let state = state.clone();
                    let service = service_fn(move |request| router::handle(state.clone(), request));
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("connection ended with an error: {e}");
                        }
                    });
                }
                // Out of file descriptors and the like: back off, keep serving.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let mut drained = pin!(graceful.shutdown());
    if tokio::time::timeout(state.options.shutdown_grace, &mut drained).await.is_ok() {
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

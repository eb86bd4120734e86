//! The HAProxy agent-check responder (`--agent-port`): each connection is
//! answered with one line and closed, as HAProxy's `agent-check` expects,
//! so that the balancer's weights follow this replica's real load without
//! parsing Prometheus text:
//! - `up ready N%` when serving, N from the free KV blocks and the waiting
//!   requests (an empty replica 100%, a full or queueing one near 1%);
//! - `drain` while draining after SIGTERM (no new requests; those in
//!   flight finish);
//! - `down #<cause>` while loading, after an engine failure, once stopped.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::engine::scheduler::SchedulerMetrics;
use crate::engine::worker::Health;

use super::state::AppState;

/// How long a checker gets to take its line.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers agent checks on `listener` for as long as the process runs.
pub async fn serve_agent(listener: TcpListener, state: Arc<AppState>) {
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("agent-check accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let line = agent_status(&state);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(line.as_bytes())).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The line an agent check gets now.
pub fn agent_status(state: &AppState) -> String {
    let Ok(model) = state.model() else { return "down #loading\n".into() };
    if state.is_draining() {
        return "drain\n".into();
    }
    match model.engine.health() {
        Health::Ready => format!("up ready {}%\n", weight_percent(&model.engine.metrics().scheduler)),
        Health::Restarting(_) => "down #engine restarting\n".into(),
        Health::Failed(_) => "down #engine failed\n".into(),
        Health::Stopped => "down #stopped\n".into(),
    }
}

/// The share of new requests this replica should get, 1..=100: the free
/// fraction of its KV cache, divided among the requests already waiting
/// for it (never 0, which HAProxy would read as drain).
fn weight_percent(scheduler: &SchedulerMetrics) -> u32 {
    let total = scheduler.num_blocks_total.max(1) as f64;
    let free = total - scheduler.num_blocks_used.min(scheduler.num_blocks_total) as f64;
    let weight = 100.0 * free / total / (1 + scheduler.num_waiting) as f64;
    (weight.round() as u32).clamp(1, 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(used: usize, waiting: usize) -> SchedulerMetrics {
        SchedulerMetrics {
            num_running: 0,
            num_waiting: waiting,
            num_blocks_used: used,
            num_blocks_total: 200,
            prefix_cache_queries: 0,
            prefix_cache_hits: 0,
            num_preemptions: 0,
        }
    }

    #[test]
    fn weight_follows_free_blocks_and_waiting_requests() {
        assert_eq!(weight_percent(&metrics(0, 0)), 100);
        assert_eq!(weight_percent(&metrics(50, 0)), 75);
        assert_eq!(weight_percent(&metrics(50, 2)), 25);
        assert_eq!(weight_percent(&metrics(200, 0)), 1);
        assert_eq!(weight_percent(&metrics(0, 1000)), 1);
    }

    #[test]
    fn loading_is_down() {
        let state = AppState::new(super::super::state::ServerOptions::default());
        assert_eq!(agent_status(&state), "down #loading\n");
    }
}

//! Prometheus metrics under vLLM's names, so that dashboards and the
//! Kubernetes inference gateway made for vLLM read ours unchanged.
//!
//! Three sources: the engine's own snapshot (load, KV blocks, prefix
//! cache, preemptions, token counters), read at each scrape by a
//! collector; the process's resident memory (`process_metrics`), likewise;
//! and request latencies, observed here as each choice's outputs reach
//! the response body (so they include queueing and detokenizing, as a
//! client sees them).

use std::borrow::Cow;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::request::FinishReason;
use crate::engine::worker::EngineHandle;

use super::process_metrics::ProcessCollector;

/// The OpenMetrics text type, which Prometheus negotiates and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// vLLM's bucket bounds, so that quantiles compare across servers.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0, 160.0, 640.0, 2560.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
];
const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    finished_reason: &'static str,
}

/// The latency histograms and outcome counters; clones share the values.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    time_to_first_token: Histogram,
    inter_token_latency: Histogram,
    e2e_latency: Histogram,
    finished: Family<FinishedLabels, Counter>,
}

impl RequestMetrics {
    fn new() -> Self {
        Self {
            time_to_first_token: Histogram::new(TTFT_BUCKETS.iter().copied()),
            inter_token_latency: Histogram::new(ITL_BUCKETS.iter().copied()),
            e2e_latency: Histogram::new(E2E_BUCKETS.iter().copied()),
            finished: Family::default(),
        }
    }

    /// A tracker for one choice of a request that arrived at `arrived`.
    pub fn track(&self, arrived: Instant) -> LatencyTracker {
        LatencyTracker { metrics: self.clone(), arrived, last_token: None, finished: false }
    }
}

/// Observes one choice's latencies. Dropped before its finish (the client
/// went away, or an error ended the response) it counts as aborted.
#[derive(Debug)]
pub struct LatencyTracker {
    metrics: RequestMetrics,
    arrived: Instant,
    last_token: Option<Instant>,
    finished: bool,
}

impl LatencyTracker {
    pub fn on_token(&mut self) {
        let now = Instant::now();
        match self.last_token {
            None => self.metrics.time_to_first_token.observe((now - self.arrived).as_secs_f64()),
            Some(last) => self.metrics.inter_token_latency.observe((now - last).as_secs_f64()),
        }
        self.last_token = Some(now);
    }

    pub fn on_finish(&mut self, reason: FinishReason) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.metrics.e2e_latency.observe(self.arrived.elapsed().as_secs_f64());
        self.metrics.finished.get_or_create(&FinishedLabels { finished_reason: reason.as_str() }).inc();
    }
}

impl Drop for LatencyTracker {
    fn drop(&mut self) {
        self.on_finish(FinishReason::Abort);
    }
}

/// The registry of one served model; every sample carries its name.
#[derive(Debug)]
pub struct ServerMetrics {
    registry: Registry,
    requests: RequestMetrics,
}

impl ServerMetrics {
    pub fn new(model_name: &str, engine: EngineHandle) -> Self {
        let label = (Cow::Borrowed("model_name"), Cow::Owned(model_name.to_string()));
        let mut registry = Registry::with_labels(std::iter::once(label));
        let requests = RequestMetrics::new();
        let histograms = [
            (
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds",
                &requests.time_to_first_token,
            ),
            (
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds",
                &requests.inter_token_latency,
            ),
            (
                "vllm:e2e_request_latency_seconds",
                "Histogram of end to end request latency in seconds",
                &requests.e2e_latency,
            ),
        ];
        for (name, help, histogram) in histograms {
            registry.register(name, help, histogram.clone());
        }
        registry.register(
            "vllm:request_success",
            "Count of finished requests by finish reason (one per choice)",
            requests.finished.clone(),
        );
        registry.register_collector(Box::new(EngineCollector { engine }));
        registry.register_collector(Box::new(ProcessCollector));
        Self { registry, requests }
    }

    pub fn requests(&self) -> &RequestMetrics {
        &self.requests
    }

    /// The OpenMetrics text of everything, as of now.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Reads the engine's snapshot (as of its last step) at each scrape.
struct EngineCollector {
    engine: EngineHandle,
}

impl std::fmt::Debug for EngineCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineCollector")
    }
}

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let metrics = self.engine.metrics();
        let scheduler = metrics.scheduler;
        let kv_usage = if scheduler.num_blocks_total == 0 {
            0.0
        } else {
            scheduler.num_blocks_used as f64 / scheduler.num_blocks_total as f64
        };
        let gauges: [(&str, &str, f64); 5] = [
            (
                "vllm:num_requests_running",
                "Number of requests in the running batch",
                scheduler.num_running as f64,
            ),
            (
                "vllm:num_requests_waiting",
                "Number of requests waiting to be scheduled",
                scheduler.num_waiting as f64,
            ),
            ("vllm:kv_cache_usage_perc", "KV cache usage: 1 means every block is in use", kv_usage),
            ("wgserve:kv_cache_blocks_used", "KV cache blocks in use", scheduler.num_blocks_used as f64),
            (
                "wgserve:kv_cache_blocks_total",
                "KV cache blocks in the pool",
                scheduler.num_blocks_total as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters: [(&str, &str, u64); 8] = [
            (
                "vllm:prefix_cache_queries",
                "Prompt tokens looked up in the prefix cache",
                scheduler.prefix_cache_queries,
            ),
            (
                "vllm:prefix_cache_hits",
                "Prompt tokens found in the prefix cache",
                scheduler.prefix_cache_hits,
            ),
            ("vllm:num_preemptions", "Cumulative number of preemptions", scheduler.num_preemptions),
            ("vllm:prompt_tokens", "Number of prefill tokens processed", metrics.prompt_tokens_total),
            (
                "vllm:generation_tokens",
                "Number of generation tokens processed",
                metrics.generation_tokens_total,
            ),
            (
                "wgserve:engine_restarts",
                "Times the engine was rebuilt (new device, model reloaded) after a failure",
                metrics.engine_restarts,
            ),
            (
                "wgserve:engine_self_checks",
                "Checks of the KV block accounting and prefix-cache index each time the engine fell idle",
                metrics.self_checks,
            ),
            (
                "wgserve:engine_self_check_failures",
                "Self-checks that found the accounting broken (each fails and rebuilds the engine)",
                metrics.self_check_failures,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

//! `GET /metrics`: a first, minimal Prometheus text with vLLM's names for
//! the engine's current load (as of its last step). Counters and latency
//! histograms come later, with a metrics crate.

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::super::body::{Response, full};
use super::super::error::ApiError;
use super::super::state::AppState;

pub fn get(state: &AppState) -> Result<Response, ApiError> {
    let model = state.model()?;
    let scheduler = model.engine.metrics().scheduler;
    let name = model.names[0].replace('\\', "\\\\").replace('"', "\\\"");
    let kv_usage = if scheduler.num_blocks_total == 0 {
        0.0
    } else {
        scheduler.num_blocks_used as f64 / scheduler.num_blocks_total as f64
    };
    let gauges = [
        ("vllm:num_requests_running", "Requests in the running batch.", scheduler.num_running as f64),
        ("vllm:num_requests_waiting", "Requests waiting to be scheduled.", scheduler.num_waiting as f64),
        ("vllm:kv_cache_usage_perc", "Fraction of KV cache blocks in use (1 is full).", kv_usage),
    ];
    let mut text = String::new();
    for (metric, help, value) in gauges {
        text.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} gauge\n{metric}{{model_name=\"{name}\"}} {value}\n"
        ));
    }
    let mut response = hyper::Response::new(full(text));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}

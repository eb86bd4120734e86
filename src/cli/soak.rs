//! `wgserve bench --url URL --soak`: a soak run against a running server,
//! on the serving benchmark's HTTP client. Seeded requests
//! (`soak_requests`) run at a fixed concurrency: valid ones must complete
//! (or be hung up on by their own client, as planned), malformed ones
//! must get a 4xx with OpenAI's error object, and nothing may get a 5xx.
//! Afterwards the server must be idle (`/metrics`: nothing running or
//! waiting, no KV block held), its prefix-cache counters sane, and its
//! resident memory within `--max-rss-growth-percent` of its value after a
//! warm-up run of the same mix. Prints each check; exits non-zero if one
//! fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

use super::serving_bench::{Endpoint, ServingArgs};
use super::soak_requests::{Generator, Mix, Plan, SoakRequest};

#[derive(Args)]
pub struct SoakArgs {
    /// With --url: a soak run (a seeded mix of valid, disconnecting and
    /// malformed requests) that checks the server survives it unchanged.
    #[arg(long, requires = "url")]
    pub soak: bool,
    /// The soak's `max_tokens` are drawn from 1..=N.
    #[arg(long, default_value_t = 16, requires = "soak")]
    max_tokens: usize,
    /// Share of soak requests whose client hangs up mid-stream.
    #[arg(long, default_value_t = 0.2, requires = "soak")]
    disconnect_fraction: f64,
    /// Share of soak requests that are malformed.
    #[arg(long, default_value_t = 0.1, requires = "soak")]
    malformed_fraction: f64,
    /// Requests of the same mix run before resident memory is first read.
    #[arg(long, default_value_t = 64, requires = "soak")]
    warmup_requests: usize,
    /// The most resident memory may grow from after warm-up to the end.
    #[arg(long, default_value_t = 5.0, requires = "soak")]
    max_rss_growth_percent: f64,
}

/// How long the server gets to finish processing aborts after the run.
const IDLE_DEADLINE: Duration = Duration::from_secs(10);

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    Completed {
        output_tokens: usize,
    },
    /// Hung up by its own client, as planned.
    Aborted,
    /// Malformed, and answered as it should be.
    Rejected,
    Failed {
        status: Option<u16>,
        message: String,
    },
}

#[derive(Default)]
struct Tally {
    completed: usize,
    aborted: usize,
    rejected: usize,
    rejected_by_kind: BTreeMap<&'static str, usize>,
    failed: usize,
    server_errors: usize,
    output_tokens: usize,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, kind: &'static str, outcome: Outcome) {
        match outcome {
            Outcome::Completed { output_tokens } => {
                self.completed += 1;
                self.output_tokens += output_tokens;
            }
            Outcome::Aborted => self.aborted += 1,
            Outcome::Rejected => {
                self.rejected += 1;
                *self.rejected_by_kind.entry(kind).or_default() += 1;
            }
            Outcome::Failed { status, message } => {
                self.failed += 1;
                if status.is_some_and(|s| s >= 500) {
                    self.server_errors += 1;
                }
                if self.failures.len() < 5 {
                    self.failures.push(format!("{kind}: {message}"));
                }
            }
        }
    }
}

pub fn run(serving: &ServingArgs, args: &SoakArgs) -> anyhow::Result<()> {
    let url = serving.url.clone().context("--soak needs --url")?;
    let endpoint = Endpoint::parse(&url, serving.api_key.clone())?;
    let concurrency = serving.concurrency.first().copied().unwrap_or(32).max(1);
    let num_requests = serving.num_prompts.unwrap_or(1000);
    let mix = Mix {
        disconnect_fraction: args.disconnect_fraction,
        malformed_fraction: args.malformed_fraction,
        max_tokens: args.max_tokens,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let model = match &serving.served_model {
            Some(name) => name.clone(),
            None => endpoint.first_model().await?,
        };
        println!(
            "soak of {url} (model {model}): {num_requests} requests at concurrency {concurrency}, \
             seed {}, after {} warm-up requests",
            serving.seed, args.warmup_requests
        );
        let mut generator = Generator::new(serving.seed, &model, mix);
        let warmup = generator.draw(args.warmup_requests);
        let warmup_tally = run_requests(&endpoint, warmup, concurrency).await;
        let after_warmup = wait_until_idle(&endpoint, None).await?;
        let requests = generator.draw(num_requests);
        let started = Instant::now();
        let tally = run_requests(&endpoint, requests, concurrency).await;
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let (end, idle_after) = match wait_until_idle(&endpoint, Some(&after_warmup)).await {
            Ok(end) => (end, true),
            Err(_) => (scrape(&endpoint).await?, false),
        };
        report(&tally, &warmup_tally, seconds, (&after_warmup, &end, idle_after), args)
    })
}

/// Runs `requests` with `concurrency` in flight; each on its own connection.
async fn run_requests(endpoint: &Endpoint, requests: Vec<SoakRequest>, concurrency: usize) -> Tally {
    let total = requests.len();
    let queue = Arc::new(Mutex::new(requests.into_iter()));
    let (done, mut results) = mpsc::unbounded_channel();
    for _ in 0..concurrency {
        let (queue, endpoint, done) = (queue.clone(), endpoint.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
                let Some(request) = next else { break };
                let outcome = execute(&endpoint, &request).await;
                let _ = done.send((request.kind, outcome));
            }
        });
    }
    drop(done);
    let mut tally = Tally::default();
    let mut count = 0;
    while let Some((kind, outcome)) = results.recv().await {
        tally.add(kind, outcome);
        count += 1;
        eprint!("\r{count}/{total} requests done");
    }
    eprintln!();
    tally
}

async fn execute(endpoint: &Endpoint, request: &SoakRequest) -> Outcome {
    let failed = |status: Option<u16>, message: String| Outcome::Failed { status, message };
    let response = match endpoint.send_bytes("POST", request.path, request.body.clone()).await {
        Ok(response) => response,
        Err(e) => return failed(None, format!("{e:#}")),
    };
    let status = response.status().as_u16();
    if request.plan == Plan::DisconnectAfter(0) && (200..300).contains(&status) {
        // Dropping the response closes the connection before any event.
        return Outcome::Aborted;
    }
    let mut body = response.into_body();
    if request.plan == Plan::Reject || !(200..300).contains(&status) {
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return failed(Some(status), format!("reading the body: {e}")),
        };
        let text = String::from_utf8_lossy(&bytes);
        return match (request.plan, status) {
            (Plan::Reject, 400..=499) if is_error_object(&bytes) => Outcome::Rejected,
            (Plan::Reject, 400..=499) => {
                failed(Some(status), format!("{status} without an error object: {text}"))
            }
            (Plan::Reject, _) => failed(Some(status), format!("a malformed request got {status}: {text}")),
            _ => failed(Some(status), format!("{status}: {text}")),
        };
    }
    let result = if request.stream {
        read_stream(&mut body, request).await
    } else {
        match body.collect().await {
            Ok(collected) => check_response(&collected.to_bytes(), request.n),
            Err(e) => Err(format!("reading the body: {e}")),
        }
    };
    match result {
        Ok(Some(output_tokens)) => Outcome::Completed { output_tokens },
        Ok(None) => Outcome::Aborted,
        Err(message) => failed(Some(status), message),
    }
}

fn is_error_object(bytes: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else { return false };
    let error = &value["error"];
    error["message"].as_str().is_some_and(|m| !m.is_empty()) && error["type"].is_string()
}

/// A whole non-streamed response: its choices and its output tokens.
fn check_response(bytes: &[u8], n: usize) -> Result<Option<usize>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("the response is not JSON: {e}"))?;
    let choices = value["choices"].as_array().map_or(0, Vec::len);
    if choices != n {
        return Err(format!("{choices} choices for n = {n}: {value}"));
    }
    Ok(Some(value["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize))
}

/// Reads server-sent events to `[DONE]`, or hangs up after the planned
/// number. `Ok(None)`: hung up; `Ok(Some(tokens))`: completed.
async fn read_stream(
    body: &mut hyper::body::Incoming,
    request: &SoakRequest,
) -> Result<Option<usize>, String> {
    let hang_up_after = match request.plan {
        Plan::DisconnectAfter(events) => Some(events),
        _ => None,
    };
    let mut pending = Vec::new();
    let (mut events, mut text_chunks, mut usage_tokens) = (0, 0, None);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the stream broke: {e}"))?;
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&event);
            let Some(payload) = text.trim().strip_prefix("data:").map(str::trim) else { continue };
            if payload == "[DONE]" {
                // Without `include_usage`, one token per chunk with text.
                return Ok(Some(usage_tokens.unwrap_or(text_chunks)));
            }
            let chunk: Value =
                serde_json::from_str(payload).map_err(|e| format!("an event is not JSON: {e}"))?;
            if let Some(error) = chunk.get("error") {
                return Err(format!("error event: {error}"));
            }
            if let Some(tokens) = chunk["usage"]["completion_tokens"].as_u64() {
                usage_tokens = Some(tokens as usize);
            }
            text_chunks += chunk["choices"]
                .as_array()
                .map_or(0, |choices| choices.iter().filter(|choice| has_text(choice)).count());
            events += 1;
            if hang_up_after.is_some_and(|after| events >= after) {
                return Ok(None);
            }
        }
    }
    Err("the stream ended without [DONE]".into())
}

/// Whether a streamed choice carries text (completion or chat delta).
fn has_text(choice: &Value) -> bool {
    let text = choice["text"].as_str().or(choice["delta"]["content"].as_str());
    text.is_some_and(|text| !text.is_empty())
}

/// The figures of one `/metrics` scrape that the checks read.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    running: f64,
    waiting: f64,
    kv_blocks_used: f64,
    prefix_queries: f64,
    prefix_hits: f64,
    resident_bytes: Option<f64>,
    /// wgserve's engine checks its block accounting and prefix-cache index
    /// each time it falls idle; these count the checks and the failures,
    /// and the restarts a failure (or a device fault) caused.
    self_checks: Option<f64>,
    self_check_failures: Option<f64>,
    engine_restarts: Option<f64>,
}

impl Snapshot {
    fn idle(&self) -> bool {
        self.running == 0.0 && self.waiting == 0.0 && self.kv_blocks_used == 0.0
    }

    /// Idle, and the engine has checked itself since `earlier` (it does
    /// so just after it falls idle, so the first idle scrape may precede it).
    fn idle_and_checked_since(&self, earlier: &Snapshot) -> bool {
        self.idle() && self.self_checks.unwrap_or(0.0) > earlier.self_checks.unwrap_or(-1.0)
    }
}

/// The sum of the samples of `name` over its label sets.
fn metric(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split_once('{').map_or(series, |(n, _)| n);
            (series_name == name).then(|| value.parse().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

async fn scrape(endpoint: &Endpoint) -> anyhow::Result<Snapshot> {
    let response = endpoint.send("GET", "/metrics", None).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        bail!("GET /metrics: {status}: {text}");
    }
    let get = |name: &str| metric(&text, name).with_context(|| format!("/metrics has no {name}"));
    Ok(Snapshot {
        running: get("vllm:num_requests_running")?,
        waiting: get("vllm:num_requests_waiting")?,
        kv_blocks_used: get("wgserve:kv_cache_blocks_used")?,
        prefix_queries: get("vllm:prefix_cache_queries_total")?,
        prefix_hits: get("vllm:prefix_cache_hits_total")?,
        resident_bytes: metric(&text, "process_resident_memory_bytes"),
        self_checks: metric(&text, "wgserve:engine_self_checks_total"),
        self_check_failures: metric(&text, "wgserve:engine_self_check_failures_total"),
        engine_restarts: metric(&text, "wgserve:engine_restarts_total"),
    })
}

/// Polls `/metrics` until nothing runs, waits or holds a KV block (aborts
/// reach the engine asynchronously) and, on a server with self-checks,
/// until the engine has checked itself since `since`.
async fn wait_until_idle(endpoint: &Endpoint, since: Option<&Snapshot>) -> anyhow::Result<Snapshot> {
    let deadline = Instant::now() + IDLE_DEADLINE;
    loop {
        let snapshot = scrape(endpoint).await?;
        let settled = match since {
            Some(earlier) if snapshot.self_checks.is_some() => snapshot.idle_and_checked_since(earlier),
            _ => snapshot.idle(),
        };
        if settled {
            return Ok(snapshot);
        }
        if Instant::now() > deadline {
            bail!("not idle {IDLE_DEADLINE:?} after the run: {snapshot:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the figures and the checks; an error when one fails.
fn report(
    tally: &Tally,
    warmup: &Tally,
    seconds: f64,
    (after_warmup, end, idle): (&Snapshot, &Snapshot, bool),
    args: &SoakArgs,
) -> anyhow::Result<()> {
    let total = tally.completed + tally.aborted + tally.rejected + tally.failed;
    println!(
        "requests: {} completed, {} aborted by their client, {} malformed answered 4xx, {} failed ({} with 5xx)",
        tally.completed, tally.aborted, tally.rejected, tally.failed, tally.server_errors
    );
    let kinds: Vec<String> =
        tally.rejected_by_kind.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
    println!("malformed answered 4xx, by kind: {}", kinds.join(", "));
    println!(
        "throughput: {:.2} requests/s, {:.1} output tokens/s, {total} requests in {seconds:.1} s",
        total as f64 / seconds,
        tally.output_tokens as f64 / seconds,
    );
    for failure in warmup.failures.iter().chain(&tally.failures) {
        println!("  failure: {failure}");
    }
    let mut failed = 0;
    let mut check = |ok: bool, what: String| {
        println!("check {}: {what}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    };
    let (warmup_failed, warmup_5xx) = (warmup.failed, warmup.server_errors);
    check(
        tally.failed + warmup_failed == 0,
        format!(
            "every valid request completed or was aborted by its client, every malformed one got a 4xx \
             with an error object ({} failed, {warmup_failed} in the warm-up)",
            tally.failed
        ),
    );
    check(
        tally.server_errors + warmup_5xx == 0,
        format!("no 5xx ({} in the run, {warmup_5xx} in the warm-up)", tally.server_errors),
    );
    check(
        idle,
        format!(
            "/metrics idle within {IDLE_DEADLINE:?}: {} running, {} waiting, {} KV blocks used",
            end.running, end.waiting, end.kv_blocks_used
        ),
    );
    // What the counters must satisfy, whatever the server.
    let queried = end.prefix_queries - after_warmup.prefix_queries;
    let hit = end.prefix_hits - after_warmup.prefix_hits;
    check(
        queried >= 0.0 && hit >= 0.0 && end.prefix_hits <= end.prefix_queries,
        format!(
            "prefix cache counters sane: {hit} of {queried} prompt tokens hit during the run \
             ({:.0}%), never decreasing, hits <= queries",
            100.0 * hit / queried.max(1.0)
        ),
    );
    match (end.self_checks, end.self_check_failures, end.engine_restarts) {
        (Some(checks), Some(failures), Some(restarts)) => {
            let during = checks - after_warmup.self_checks.unwrap_or(0.0);
            check(
                during > 0.0 && failures == 0.0 && restarts == 0.0,
                format!(
                    "the engine's self-check (block accounting, prefix-cache index) ran {during} times \
                     when idle during the run, {failures} failed; {restarts} engine restarts"
                ),
            );
        }
        _ => println!("check skipped: the server reports no engine self-checks"),
    }
    match (after_warmup.resident_bytes, end.resident_bytes) {
        (Some(before), Some(after)) => {
            let growth = 100.0 * (after - before) / before.max(1.0);
            check(
                growth <= args.max_rss_growth_percent,
                format!(
                    "resident memory {:.1} MiB after warm-up, {:.1} MiB at the end ({growth:+.1}%, limit +{}%)",
                    before / MIB,
                    after / MIB,
                    args.max_rss_growth_percent
                ),
            );
        }
        _ => println!("check skipped: the server reports no process_resident_memory_bytes"),
    }
    if failed > 0 {
        bail!("the soak failed {failed} check(s)");
    }
    println!("soak passed");
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_sum_over_label_sets() {
        let text = "# HELP x y\nvllm:num_requests_running{model_name=\"m\"} 2\n\
                    vllm:num_requests_running{model_name=\"n\"} 1\nprocess_resident_memory_bytes 1.5e6\n";
        assert_eq!(metric(text, "vllm:num_requests_running"), Some(3.0));
        assert_eq!(metric(text, "process_resident_memory_bytes"), Some(1.5e6));
        assert_eq!(metric(text, "vllm:num_requests_waiting"), None);
    }

    #[test]
    fn error_objects_need_a_message_and_a_type() {
        assert!(is_error_object(br#"{"error": {"message": "bad", "type": "invalid_request_error"}}"#));
        assert!(!is_error_object(br#"{"error": "bad"}"#));
        assert!(!is_error_object(b"Bad Request"));
    }
}

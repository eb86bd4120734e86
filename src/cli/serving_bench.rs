//! `wgserve bench --url URL`: a serving load generator for any
//! OpenAI-compatible server (ours or a peer), so that all are measured the
//! same way. It streams `/v1/completions` requests, either with a fixed
//! number in flight (`--concurrency`, one run per level) or arriving as a
//! Poisson process (`--request-rate`), and reports output tokens/s,
//! requests/s, time to first token and inter-token latency (p50, p99).
//!
//! Each run's throughput is also given as a ratio to the first run's, the
//! baseline measured in the same invocation (absolute figures on a shared
//! machine are noisy). Only plain `http://` URLs are supported.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[derive(Args)]
pub struct ServingArgs {
    /// Benchmark the server at this URL (e.g. http://127.0.0.1:8080)
    /// instead of loading a model here.
    #[arg(long)]
    pub(super) url: Option<String>,
    /// Requests kept in flight; a comma-separated list runs each level in
    /// turn, the first being the baseline of the others' ratios.
    /// Default: 1 (32 with --soak).
    #[arg(long, value_delimiter = ',', conflicts_with = "request_rate")]
    pub(super) concurrency: Vec<usize>,
    /// Requests per second, arriving as a Poisson process (seeded), with no
    /// limit on how many are in flight.
    #[arg(long)]
    request_rate: Option<f64>,
    /// Requests per run (also `--num-requests`). Default: 4 per
    /// concurrency level, at least 8 (or 8 s of arrivals at
    /// --request-rate); 1,000 with --soak.
    #[arg(long, alias = "num-requests")]
    pub(super) num_prompts: Option<usize>,
    /// Words in each prompt (the token count depends on the tokenizer; the
    /// report gives the server's count).
    #[arg(long, default_value_t = 100)]
    input_words: usize,
    /// Tokens to generate per request (`max_tokens`, with `ignore_eos`).
    #[arg(long, default_value_t = 64)]
    output_tokens: usize,
    /// The model name to send. Default: the first of the server's /v1/models.
    #[arg(long)]
    pub(super) served_model: Option<String>,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long)]
    pub(super) api_key: Option<String>,
    /// Seed of the prompts' words and of the arrival times (with --soak,
    /// of every request's kind and parameters).
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
}

impl ServingArgs {
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

/// Where to connect and what to put before each path.
#[derive(Clone)]
pub(super) struct Endpoint {
    authority: String,
    base_path: String,
    api_key: Option<String>,
}

impl Endpoint {
    pub(super) fn parse(url: &str, api_key: Option<String>) -> anyhow::Result<Self> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("--url must start with http:// (https is not supported), got `{url}`");
        };
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if authority.is_empty() {
            bail!("--url has no host: `{url}`");
        }
        let authority =
            if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
        // The routes are requested as `/v1/...`: a given `/v1` is not doubled.
        let path = path.trim_end_matches('/');
        let path = path.strip_suffix("v1").unwrap_or(path).trim_end_matches('/');
        let base_path = if path.is_empty() { String::new() } else { format!("/{path}") };
        Ok(Self { authority, base_path, api_key })
    }

    /// Sends one request on a new connection and returns the response
    /// with its body still to read.
    pub(super) async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        self.send_bytes(method, path, body.map(|b| Bytes::from(b.to_string())).unwrap_or_default()).await
    }

    /// As `send`, with a body of any bytes (malformed JSON included).
    /// Dropping the response body before its end closes the connection.
    pub(super) async fn send_bytes(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot connect to {}", self.authority))?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(HOST, &self.authority)
            .header(CONTENT_TYPE, "application/json");
        if let Some(key) = &self.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        Ok(sender.send_request(request.body(Full::new(body))?).await?)
    }

    pub(super) async fn first_model(&self) -> anyhow::Result<String> {
        let response = self.send("GET", "/v1/models", None).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("GET /v1/models: {status}: {}", String::from_utf8_lossy(&body));
        }
        let models: Value = serde_json::from_slice(&body).context("GET /v1/models: not JSON")?;
        models["data"][0]["id"].as_str().map(str::to_string).context("GET /v1/models lists no model")
    }
}

/// What one request saw.
struct Outcome {
    /// From sending to the first chunk with text.
    ttft: Duration,
    /// Gaps between later chunks with text.
    gaps: Vec<Duration>,
    latency: Duration,
    output_tokens: usize,
    prompt_tokens: usize,
}

async fn stream_completion(endpoint: &Endpoint, body: &Value) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let response = endpoint.send("POST", "/v1/completions", Some(body)).await?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body.collect().await?.to_bytes();
        bail!("{status}: {}", String::from_utf8_lossy(&text));
    }
    let mut pending = Vec::new();
    let mut arrivals = Vec::new();
    let mut usage = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let now = Instant::now();
        pending.extend_from_slice(&data);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let Some(payload) = std::str::from_utf8(&event)?.trim().strip_prefix("data:") else { continue };
            let payload = payload.trim();
            if payload == "[DONE]" {
                continue;
            }
            let chunk: Value = serde_json::from_str(payload).context("a stream event is not JSON")?;
            if let Some(error) = chunk.get("error") {
                bail!("error event: {error}");
            }
            if chunk["choices"][0]["text"].as_str().is_some_and(|t| !t.is_empty()) {
                arrivals.push(now);
            }
            if chunk["usage"].is_object() {
                usage = Some(chunk["usage"].clone());
            }
        }
    }
    let Some(&first) = arrivals.first() else { bail!("the stream carried no text") };
    let tokens = |field: &str| usage.as_ref().and_then(|u| u[field].as_u64()).map(|n| n as usize);
    Ok(Outcome {
        ttft: first - started,
        gaps: arrivals.windows(2).map(|w| w[1] - w[0]).collect(),
        latency: started.elapsed(),
        output_tokens: tokens("completion_tokens").unwrap_or(arrivals.len()),
        prompt_tokens: tokens("prompt_tokens").unwrap_or(0),
    })
}

/// Prompts of ordinary words, different per request (no shared prefix
/// for a prefix cache to find).
fn prompts(count: usize, words: usize, seed: u64) -> Vec<String> {
    const WORDS: &[&str] = &[
        "river", "mountain", "quiet", "village", "engine", "summer", "bright", "window", "garden", "story",
        "ancient", "market", "silver", "journey", "forest", "letter", "harbor", "winter", "lantern",
        "meadow", "painter", "bridge", "distant", "thunder", "orchard", "candle", "voyage", "whisper",
        "castle", "valley",
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let body: Vec<&str> = (0..words).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect();
            format!("Continue this list of words: {}", body.join(" "))
        })
        .collect()
}

/// How requests are released.
#[derive(Clone, Copy)]
enum Load {
    Concurrency(usize),
    Rate(f64),
}

impl Load {
    fn describe(self) -> String {
        match self {
            Load::Concurrency(n) => format!("concurrency {n}"),
            Load::Rate(rate) => format!("request rate {rate}/s"),
        }
    }
}

struct RunReport {
    duration: Duration,
    outcomes: Vec<Outcome>,
    failures: Vec<String>,
}

async fn run_load(endpoint: &Endpoint, requests: Vec<Value>, load: Load, seed: u64) -> RunReport {
    let total = requests.len();
    let (done, mut results) = mpsc::unbounded_channel();
    let started = Instant::now();
    match load {
        Load::Concurrency(workers) => {
            let queue = std::sync::Arc::new(std::sync::Mutex::new(requests.into_iter()));
            for _ in 0..workers.max(1) {
                let (queue, endpoint, done) = (queue.clone(), endpoint.clone(), done.clone());
                tokio::spawn(async move {
                    loop {
                        let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
                        let Some(body) = next else { break };
                        let _ = done.send(stream_completion(&endpoint, &body).await);
                    }
                });
            }
        }
        Load::Rate(rate) => {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let mut release = Instant::now();
            for body in requests {
                tokio::time::sleep_until(release.into()).await;
                let (endpoint, done) = (endpoint.clone(), done.clone());
                tokio::spawn(async move {
                    let _ = done.send(stream_completion(&endpoint, &body).await);
                });
                // Exponential gaps: a Poisson process of `rate` arrivals/s.
                let gap = -(1.0 - rng.random::<f64>()).ln() / rate;
                release += Duration::from_secs_f64(gap);
            }
        }
    }
    drop(done);
    let mut outcomes = Vec::with_capacity(total);
    let mut failures = Vec::new();
    while let Some(result) = results.recv().await {
        match result {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => failures.push(format!("{e:#}")),
        }
        eprint!("\r{}/{total} requests done", outcomes.len() + failures.len());
    }
    eprintln!();
    RunReport { duration: started.elapsed(), outcomes, failures }
}

/// The `q` quantile (0..=1) of `values`, in milliseconds.
fn quantile_ms(values: &mut [Duration], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index].as_secs_f64() * 1000.0
}

impl RunReport {
    fn output_rate(&self) -> f64 {
        let tokens: usize = self.outcomes.iter().map(|o| o.output_tokens).sum();
        tokens as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    fn print(&self, load: Load, baseline: Option<f64>) {
        let seconds = self.duration.as_secs_f64().max(1e-9);
        let mut ttft: Vec<Duration> = self.outcomes.iter().map(|o| o.ttft).collect();
        let mut itl: Vec<Duration> = self.outcomes.iter().flat_map(|o| o.gaps.iter().copied()).collect();
        let mut latency: Vec<Duration> = self.outcomes.iter().map(|o| o.latency).collect();
        let prompt_tokens: usize = self.outcomes.iter().map(|o| o.prompt_tokens).sum();
        let ratio =
            baseline.map(|b| format!(", {:.2}x the first run", self.output_rate() / b)).unwrap_or_default();
        println!(
            "{}: {} ok, {} failed in {seconds:.1} s | {:.2} req/s | output {:.1} tok/s{ratio} | \
             TTFT p50 {:.0} ms, p99 {:.0} ms | ITL p50 {:.0} ms, p99 {:.0} ms | latency p50 {:.2} s | \
             prompt {:.0} tokens/request",
            load.describe(),
            self.outcomes.len(),
            self.failures.len(),
            self.outcomes.len() as f64 / seconds,
            self.output_rate(),
            quantile_ms(&mut ttft, 0.5),
            quantile_ms(&mut ttft, 0.99),
            quantile_ms(&mut itl, 0.5),
            quantile_ms(&mut itl, 0.99),
            quantile_ms(&mut latency, 0.5) / 1000.0,
            prompt_tokens as f64 / self.outcomes.len().max(1) as f64,
        );
        if let Some(first) = self.failures.first() {
            println!("  first failure: {first}");
        }
    }
}

pub fn run(args: ServingArgs) -> anyhow::Result<()> {
    let url = args.url.clone().context("--url is required")?;
    let endpoint = Endpoint::parse(&url, args.api_key.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let model = match &args.served_model {
            Some(name) => name.clone(),
            None => endpoint.first_model().await?,
        };
        let loads: Vec<Load> = match args.request_rate {
            Some(rate) if rate > 0.0 && rate.is_finite() => vec![Load::Rate(rate)],
            Some(rate) => bail!("--request-rate must be positive, got {rate}"),
            None if args.concurrency.is_empty() => vec![Load::Concurrency(1)],
            None => args.concurrency.iter().map(|&n| Load::Concurrency(n.max(1))).collect(),
        };
        // One short request first: connection set-up and the server's own
        // warm-up stay out of the figures.
        let warm_up =
            json!({"model": model, "prompt": "Hello", "max_tokens": 2, "ignore_eos": true, "stream": true});
        stream_completion(&endpoint, &warm_up).await.context("the warm-up request failed")?;
        println!(
            "serving benchmark of {url} (model {model}): {} words in, {} tokens out per request",
            args.input_words, args.output_tokens
        );
        let mut baseline = None;
        for (run, load) in loads.into_iter().enumerate() {
            let count = args.num_prompts.unwrap_or(match load {
                Load::Concurrency(n) => (4 * n).max(8),
                Load::Rate(rate) => ((8.0 * rate).ceil() as usize).max(8),
            });
            // New prompts per run: a prefix cache must not serve a later run
            // from an earlier one's.
            let seed = args.seed.wrapping_add(run as u64 * 1_000_003);
            let requests: Vec<Value> = prompts(count, args.input_words, seed)
                .into_iter()
                .map(|prompt| {
                    json!({"model": model, "prompt": prompt, "max_tokens": args.output_tokens,
                        "ignore_eos": true, "temperature": 0, "stream": true,
                        "stream_options": {"include_usage": true}})
                })
                .collect();
            let report = run_load(&endpoint, requests, load, seed).await;
            report.print(load, baseline);
            if report.outcomes.is_empty() {
                bail!("every request failed");
            }
            baseline.get_or_insert(report.output_rate());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_prefix() {
        let e = Endpoint::parse("http://127.0.0.1:8080", None).unwrap();
        assert_eq!((e.authority.as_str(), e.base_path.as_str()), ("127.0.0.1:8080", ""));
        let e = Endpoint::parse("http://localhost/v1/", None).unwrap();
        assert_eq!((e.authority.as_str(), e.base_path.as_str()), ("localhost:80", ""));
        let e = Endpoint::parse("http://host:9/proxy/llm/v1", None).unwrap();
        assert_eq!((e.authority.as_str(), e.base_path.as_str()), ("host:9", "/proxy/llm"));
        assert!(Endpoint::parse("https://host", None).is_err());
        assert!(Endpoint::parse("http:///v1", None).is_err());
    }

    #[test]
    fn quantiles_pick_ranked_values() {
        let mut values: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&mut values, 0.5), 51.0);
        assert_eq!(quantile_ms(&mut values, 0.99), 99.0);
        assert_eq!(quantile_ms(&mut values, 0.0), 1.0);
        assert!(quantile_ms(&mut [], 0.5).is_nan());
    }
}

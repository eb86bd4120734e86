//! Two wgserve replicas behind Debian's HAProxy, configured by the shipped
//! `deploy/haproxy/haproxy.cfg` (health and agent checks on): a stream of
//! streamed chat requests goes through the balancer while one replica is
//! stopped with SIGTERM and later started again on the same ports. Every
//! request completes, or ends with `finish_reason: "abort"` if it ran on
//! the stopped replica past its grace period; no connection error or
//! error status reaches the client; the restarted replica gets requests
//! again. HAProxy comes from `scripts/setup.sh --test`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::{Reply, Server};
use serde_json::{Value, json};

/// How a request through the balancer ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Completed,
    Aborted,
    Error(String),
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn haproxy_binary() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("HAProxy is missing: run `bash scripts/setup.sh --test` first")
}

fn replica(port: u16, agent_port: u16) -> Server {
    let (port, agent_port) = (port.to_string(), agent_port.to_string());
    Server::start(&[
        "--port",
        &port,
        "--agent-port",
        &agent_port,
        "--shutdown-grace",
        "4",
        "--served-model-name",
        "smol",
    ])
}

/// A response body without HTTP/1.1 chunk framing.
fn dechunk(reply: &Reply) -> Vec<u8> {
    if reply.header("transfer-encoding") != Some("chunked") {
        return reply.body.clone();
    }
    let (mut body, mut rest) = (Vec::new(), &reply.body[..]);
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < line_end + 2 + size {
            break;
        }
        body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
        rest = &rest[(line_end + 4 + size).min(rest.len())..];
    }
    body
}

/// One streamed chat request through the balancer, read to its end.
fn one_request(frontend: &str, index: usize) -> Outcome {
    let body = json!({
        "model": "smol",
        "messages": [{"role": "user", "content": format!("Count from {index} to {}.", index + 20)}],
        "max_tokens": 16,
        "temperature": 0,
        "stream": true
    })
    .to_string();
    let Ok(mut stream) = TcpStream::connect(frontend) else { return Outcome::Error("connect failed".into()) };
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {frontend}\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).is_err() {
        return Outcome::Error("send failed".into());
    }
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        return Outcome::Error(format!("read failed: {e}"));
    }
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Outcome::Error(format!("no response head: {:?}", String::from_utf8_lossy(&raw)));
    }
    let reply = Reply::parse(&raw);
    let text = String::from_utf8_lossy(&dechunk(&reply)).into_owned();
    if reply.status != 200 {
        return Outcome::Error(format!("status {}: {text}", reply.status));
    }
    let events: Vec<&str> = text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect();
    if events.last() != Some(&"[DONE]") {
        return Outcome::Error(format!("no [DONE]: {text}"));
    }
    let finish = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .find_map(|chunk| chunk["choices"][0]["finish_reason"].as_str().map(str::to_string));
    match finish.as_deref() {
        Some("stop" | "length") => Outcome::Completed,
        Some("abort") => Outcome::Aborted,
        other => Outcome::Error(format!("finish_reason {other:?}: {text}")),
    }
}

fn requests_succeeded(server: &Server) -> f64 {
    let metrics = server.get("/metrics");
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .filter(|line| line.starts_with("vllm:request_success_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_replica_stopped_and_restarted_behind_haproxy_fails_no_request() {
    let binary = haproxy_binary();
    let (port1, agent1, port2, agent2) = (free_port(), free_port(), free_port(), free_port());
    let frontend = format!("127.0.0.1:{}", free_port());
    let mut first = replica(port1, agent1);
    let second = replica(port2, agent2);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg");
    let _haproxy = Haproxy(
        Command::new(binary)
            .args(["-db", "-f"])
            .arg(&config)
            .env("WGSERVE_FRONTEND", &frontend)
            .env("WGSERVE_REPLICA1", format!("127.0.0.1:{port1}"))
            .env("WGSERVE_REPLICA2", format!("127.0.0.1:{port2}"))
            .env("WGSERVE_AGENT1", agent1.to_string())
            .env("WGSERVE_AGENT2", agent2.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("HAProxy starts"),
    );
    // Both replicas serving through HAProxy before the load.
    wait_for("both replicas to serve through HAProxy", Duration::from_secs(120), || {
        one_request(&frontend, 0);
        requests_succeeded(&first) > 0.0 && requests_succeeded(&second) > 0.0
    });

    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|client| {
            let (outcomes, stop, frontend) = (outcomes.clone(), stop.clone(), frontend.clone());
            std::thread::spawn(move || {
                let mut index = client * 1000;
                while !stop.load(Ordering::Relaxed) {
                    let outcome = one_request(&frontend, index);
                    outcomes.lock().unwrap().push(outcome);
                    index += 1;
                }
            })
        })
        .collect();
    let count = || outcomes.lock().unwrap().len();

    wait_for("requests before the stop", Duration::from_secs(120), || count() >= 6);
    let status = Command::new("kill").args(["-TERM", &first.pid()]).status().unwrap();
    assert!(status.success());
    let exit = first.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "the stopped replica exited with {exit:?}");
    let at_exit = count();
    wait_for("requests while one replica is gone", Duration::from_secs(120), || count() >= at_exit + 6);

    let restarted = replica(port1, agent1);
    wait_for("the restarted replica to get requests", Duration::from_secs(120), || {
        requests_succeeded(&restarted) > 0.0
    });
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let completed = outcomes.iter().filter(|o| **o == Outcome::Completed).count();
    let aborted = outcomes.iter().filter(|o| **o == Outcome::Aborted).count();
    let errors: Vec<&Outcome> = outcomes.iter().filter(|o| matches!(o, Outcome::Error(_))).collect();
    println!(
        "sent {}, completed {completed}, aborted {aborted}, errors {}; the restarted replica served {}, the other {}",
        outcomes.len(),
        errors.len(),
        requests_succeeded(&restarted),
        requests_succeeded(&second)
    );
    assert!(errors.is_empty(), "errors reached the client: {errors:?}");
}

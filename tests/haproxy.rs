//! Two wgserve replicas behind Debian's HAProxy, configured by the shipped
//! `deploy/haproxy/haproxy.cfg` (health and agent checks on): a stream of
//! streamed chat requests goes through the balancer while one replica is
//! stopped with SIGTERM and later started again on the same ports. Every
//! request completes, or ends with `finish_reason: "abort"` if it ran on
//! the stopped replica past its grace period; no connection error or
//! error status reaches the client; the restarted replica gets requests
//! again. A second test holds open the moment a draining replica refuses
//! requests before HAProxy's checks see it leave, with a stand-in replica
//! that refuses every request. HAProxy comes from `scripts/setup.sh
//! --test`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::{Reply, Server};
use serde_json::{Value, json};
use wgserve::server::routes::health::DRAINING;

/// How a request through the balancer ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Completed,
    Aborted,
    Error(String),
}

struct Haproxy(Child);

impl Haproxy {
    /// HAProxy with the shipped configuration, in front of two replicas
    /// given as (port, agent port) on loopback.
    fn start(frontend: &str, replicas: [(u16, u16); 2]) -> Haproxy {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg");
        let [(port1, agent1), (port2, agent2)] = replicas;
        let child = Command::new(haproxy_binary())
            .args(["-db", "-f"])
            .arg(&config)
            .env("WGSERVE_FRONTEND", frontend)
            .env("WGSERVE_REPLICA1", format!("127.0.0.1:{port1}"))
            .env("WGSERVE_REPLICA2", format!("127.0.0.1:{port2}"))
            .env("WGSERVE_AGENT1", agent1.to_string())
            .env("WGSERVE_AGENT2", agent2.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("HAProxy starts");
        Haproxy(child)
    }
}

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

/// One streamed chat request through the balancer, read to its end. Its
/// head and body go out in two writes 10 ms apart, as from a client on a
/// real network, so HAProxy has already picked a replica when the body
/// arrives; `padded_to` fills the body with JSON whitespace up to that
/// many bytes (a long prompt's size, without its prefill).
fn one_request(frontend: &str, index: usize, padded_to: usize) -> Outcome {
    let mut body = json!({
        "model": "smol",
        "messages": [{"role": "user", "content": format!("Count from {index} to {}.", index + 20)}],
        "max_tokens": 16,
        "temperature": 0,
        "stream": true
    })
    .to_string();
    body.extend(std::iter::repeat_n(' ', padded_to.saturating_sub(body.len())));
    let Ok(mut stream) = TcpStream::connect(frontend) else { return Outcome::Error("connect failed".into()) };
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {frontend}\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let sent = stream.write_all(head.as_bytes()).and_then(|()| {
        // Not a wait for anything: the gap between the writes is the
        // client behaviour under test.
        std::thread::sleep(Duration::from_millis(10));
        stream.write_all(body.as_bytes())
    });
    if sent.is_err() {
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
    let (port1, agent1, port2, agent2) = (free_port(), free_port(), free_port(), free_port());
    let frontend = format!("127.0.0.1:{}", free_port());
    let mut first = replica(port1, agent1);
    let second = replica(port2, agent2);
    let _haproxy = Haproxy::start(&frontend, [(port1, agent1), (port2, agent2)]);
    // Both replicas serving through HAProxy before the load.
    wait_for("both replicas to serve through HAProxy", Duration::from_secs(120), || {
        one_request(&frontend, 0, 0);
        requests_succeeded(&first) > 0.0 && requests_succeeded(&second) > 0.0
    });

    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|client| {
            let (outcomes, stop, frontend) = (outcomes.clone(), stop.clone(), frontend.clone());
            std::thread::spawn(move || {
                let mut index = client * 1000;
                // Bodies up to HAProxy's tune.bufsize are buffered whole,
                // and so can be sent again to another replica.
                let padded_to = if client == 2 { 60_000 } else { 0 };
                while !stop.load(Ordering::Relaxed) {
                    let outcome = one_request(&frontend, index, padded_to);
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
    assert!(
        errors.is_empty(),
        "{} errors reached the client, the first: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
}

/// A replica in the second between SIGTERM and HAProxy's next check: its
/// health check still passes and its agent still says up, but it refuses
/// every chat request with wgserve's draining 503, answered as soon as the
/// head is read and the body read after, as wgserve (hyper) does. Counts
/// the requests it refused.
fn start_refusing_replica() -> ((u16, u16), Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = (listener.local_addr().unwrap().port(), agent.local_addr().unwrap().port());
    let refused = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for mut stream in agent.incoming().flatten() {
            let _ = stream.write_all(b"up ready 100%\n");
        }
    });
    let counter = refused.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let reply = if head.starts_with(b"GET /health ") {
                http_reply("200 OK", "", "ok")
            } else {
                counter.fetch_add(1, Ordering::Relaxed);
                let error = json!({"error": {
                    "message": DRAINING, "type": "server_error", "param": null, "code": "service_unavailable"
                }});
                http_reply(
                    "503 Service Unavailable",
                    "retry-after: 1\r\ncontent-type: application/json\r\n",
                    &error.to_string(),
                )
            };
            let _ = stream.write_all(reply.as_bytes());
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let body_length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::copy(&mut (&stream).take(body_length), &mut std::io::sink());
        }
    });
    (ports, refused)
}

fn http_reply(status: &str, headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
}

#[test]
fn a_request_refused_by_a_replica_not_yet_marked_down_goes_to_another() {
    let (refusing, refused) = start_refusing_replica();
    let (port, agent) = (free_port(), free_port());
    let serving = replica(port, agent);
    let frontend = format!("127.0.0.1:{}", free_port());
    let _haproxy = Haproxy::start(&frontend, [refusing, (port, agent)]);
    wait_for("the serving replica to be up in HAProxy", Duration::from_secs(120), || {
        one_request(&frontend, 0, 0);
        requests_succeeded(&serving) > 0.0
    });
    // leastconn takes the idle replicas in turn, so about half of these
    // go to the refusing one first; a long prompt's body too.
    let outcomes: Vec<Outcome> =
        (0..8).map(|index| one_request(&frontend, index, if index % 2 == 0 { 60_000 } else { 0 })).collect();
    let refused = refused.load(Ordering::Relaxed);
    println!("outcomes {outcomes:?}; refused by the draining replica: {refused}");
    assert!(outcomes.iter().all(|o| *o == Outcome::Completed), "{outcomes:?}");
    assert!(refused >= 2, "HAProxy sent only {refused} of 8 requests to the refusing replica");
    // Beyond HAProxy's buffer a body streams through and cannot be sent
    // again: the client gets the replica's answer, completion or 503, and
    // never a reset connection.
    let mut passed_on = 0;
    for index in 0..4 {
        match one_request(&frontend, index, 200_000) {
            Outcome::Completed => {}
            Outcome::Error(error) => {
                assert!(error.contains("status 503") && error.contains("draining"), "{error}");
                passed_on += 1;
            }
            Outcome::Aborted => panic!("nothing was aborted"),
        }
    }
    assert!(passed_on > 0, "no long request went to the refusing replica");
}

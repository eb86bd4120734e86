//! Slow and idle clients against the built `wgserve serve`: a request head
//! sent byte by byte is cut off at `--header-read-timeout` while others are
//! served, idle connections close at `--idle-connection-timeout`, and
//! connections beyond `--max-connections` get a quick 503 until slots free.
//! Flag values are short (1-2 s) to keep the tests fast.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::server::{Reply, Server};

/// Headroom over a timeout for a loaded machine (lavapipe shares the cores).
const SLACK: Duration = Duration::from_secs(3);

/// Blocks until the server closes `stream`; returns the bytes it sent
/// before closing. Fails after `deadline`.
fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(deadline)).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return received,
            Err(e) => panic!("the server did not close the connection within {deadline:?}: {e}"),
        }
    }
}

/// Reads one response with a `Content-Length` body, leaving the
/// connection open.
fn read_one_response(stream: &mut TcpStream) -> Reply {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = Reply::parse(&raw[..end + 4]);
            let length: usize = head.header("content-length").expect("content-length").parse().unwrap();
            if raw.len() >= end + 4 + length {
                return Reply::parse(&raw);
            }
        }
        let n = stream.read(&mut buf).expect("read a response");
        assert!(n > 0, "the connection closed mid-response");
        raw.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn a_head_sent_byte_by_byte_is_cut_off_while_other_clients_are_served() {
    let server = Server::start(&["--header-read-timeout", "1", "--idle-connection-timeout", "30"]);
    let head = format!("GET /health HTTP/1.1\r\nHost: {}\r\nUser-Agent: slow-client\r\n\r\n", server.addr);
    let mut slow = TcpStream::connect(&server.addr).unwrap();
    let mut writer = slow.try_clone().unwrap();
    let first_byte = Instant::now();
    let dribble = std::thread::spawn(move || {
        // 5 bytes/s: the whole head would take over 10 s.
        let mut sent = 0;
        for byte in head.bytes() {
            if writer.write_all(&[byte]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        (sent, head.len())
    });

    // Served meanwhile, on connections of their own.
    for _ in 0..3 {
        assert_eq!(server.get("/health").status, 200);
    }

    let answered = read_until_closed(&mut slow, Duration::from_secs(1) + SLACK);
    let cut_after = first_byte.elapsed();
    assert!(answered.is_empty(), "an incomplete head got an answer: {}", String::from_utf8_lossy(&answered));
    assert!(cut_after >= Duration::from_secs(1), "cut off after {cut_after:?}, before the timeout");
    let (sent, head_len) = dribble.join().unwrap();
    assert!(sent < head_len, "the whole head went through ({sent} bytes)");
    assert_eq!(server.get("/health").status, 200);
}

#[test]
fn idle_connections_close_after_the_idle_timeout_not_the_header_timeout() {
    let server = Server::start(&["--idle-connection-timeout", "1", "--header-read-timeout", "20"]);

    // Kept alive after a response: closed once idle for 1 s.
    let mut kept = TcpStream::connect(&server.addr).unwrap();
    write!(kept, "GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).unwrap();
    assert_eq!(read_one_response(&mut kept).status, 200);
    let responded = Instant::now();
    // Still usable before the timeout. The server's idle clock starts
    // after it answers, so after this instant.
    let second_request = Instant::now();
    write!(kept, "GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).unwrap();
    assert_eq!(read_one_response(&mut kept).status, 200);
    assert!(read_until_closed(&mut kept, Duration::from_secs(1) + SLACK).is_empty());
    let idle_for = second_request.elapsed();
    assert!(idle_for >= Duration::from_secs(1), "closed after {idle_for:?} idle");
    assert!(responded.elapsed() < Duration::from_secs(20), "the header timeout closed it, not the idle one");

    // Opened and never used: idle too.
    let opened = Instant::now();
    let mut silent = TcpStream::connect(&server.addr).unwrap();
    assert!(read_until_closed(&mut silent, Duration::from_secs(1) + SLACK).is_empty());
    assert!(opened.elapsed() >= Duration::from_secs(1));
}

#[test]
fn connections_over_the_cap_get_a_quick_503_until_idle_ones_time_out() {
    let server = Server::start(&["--max-connections", "4", "--idle-connection-timeout", "2"]);
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&server.addr).unwrap()).collect();

    let refused = server.get("/health");
    let error = refused.error(503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(error["message"].as_str().unwrap().contains("4 connections"), "{error}");
    assert!(opened.elapsed() < Duration::from_secs(2), "the 503 came only after the idle timeout");

    // The idle ones are closed at their timeout, and their slots serve again.
    for stream in &mut idle {
        assert!(read_until_closed(stream, Duration::from_secs(2) + SLACK).is_empty());
    }
    assert!(opened.elapsed() >= Duration::from_secs(2));
    let deadline = Instant::now() + SLACK;
    let served = loop {
        let reply = server.get("/health");
        if reply.status == 200 || Instant::now() > deadline {
            break reply;
        }
    };
    assert_eq!(served.status, 200, "{}", String::from_utf8_lossy(&served.body));
    let completion = server
        .post("/v1/completions", &serde_json::json!({"prompt": "Hello", "max_tokens": 2, "temperature": 0}));
    assert_eq!(completion.status, 200, "{}", String::from_utf8_lossy(&completion.body));
}

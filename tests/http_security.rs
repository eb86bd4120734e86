//! What other web pages can do to a local server (issue 17), end to end
//! against the built `wgserve serve` on loopback: a DNS-rebinding `Host`
//! and a cross-site `text/plain` post are refused before any work is done;
//! the server's own origin, `localhost`, and clients that send no `Origin`
//! keep working; `--allowed-host` and `--cors-origin` admit what they name.

mod common;

use common::server::{Reply, Server};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn start(extra_args: &[&str]) -> Server {
    let mut args = vec!["--no-embedding-model"];
    args.extend_from_slice(extra_args);
    Server::start(&args)
}

fn completion() -> Vec<u8> {
    json!({"prompt": "Once upon a time", "max_tokens": 2, "temperature": 0}).to_string().into_bytes()
}

/// `POST /v1/completions` with `headers` besides `Host` (the server's own
/// address unless `host` is given).
fn complete(server: &Server, host: Option<&str>, headers: &[(&str, &str)]) -> Reply {
    let body = completion();
    let host = host.map_or(server.addr.clone(), str::to_string);
    let mut head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    server.exchange(head.as_bytes(), &body)
}

fn get_with_host(server: &Server, host: &str) -> Reply {
    let head = format!("GET /v1/models HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    server.exchange(head.as_bytes(), b"")
}

fn prompt_tokens_total(server: &Server) -> f64 {
    let reply = server.request("GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with("vllm:prompt_tokens_total"))
        .unwrap_or_else(|| panic!("no vllm:prompt_tokens_total in {text}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

fn generated(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let reply = reply.json();
    assert_eq!(reply["usage"]["completion_tokens"], 2, "{reply}");
    reply
}

#[test]
fn the_two_attacks_are_refused_and_own_clients_are_served() {
    let server = start(&[]);
    let port = server.addr.rsplit_once(':').unwrap().1.to_string();

    // DNS rebinding: the attacker's name in Host, on any route.
    let error = get_with_host(&server, &format!("evil.example:{port}")).error(403);
    assert_eq!((&error["type"], &error["code"]), (&json!("permission_error"), &json!("host_not_allowed")));
    assert!(error["message"].as_str().unwrap().contains("--allowed-host"), "{error}");
    complete(&server, Some(&format!("evil.example:{port}")), &[JSON]).error(403);
    // A name the user did not allow is as foreign as the attacker's.
    get_with_host(&server, "example.org").error(403);
    // An HTTP/1.1 request must name its host.
    let no_host = server.exchange(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n", b"");
    no_host.error(400);

    // Cross-site simple request: refused before the engine sees it.
    let before = prompt_tokens_total(&server);
    let cross_site = [("Origin", "https://evil.example"), ("Content-Type", "text/plain")];
    let error = complete(&server, None, &cross_site).error(403);
    assert_eq!(error["code"], "origin_not_allowed");
    // JSON does not help a foreign origin, nor does a preflight.
    complete(&server, None, &[("Origin", "https://evil.example"), JSON]).error(403);
    let preflight = server.request(
        "OPTIONS",
        "/v1/completions",
        &[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")],
        b"",
    );
    preflight.error(403);
    assert_eq!(prompt_tokens_total(&server), before, "a refused request reached the engine");

    // Without an Origin too, a JSON route takes only JSON: older browsers
    // leave Origin off form posts.
    let error = complete(&server, None, &[("Content-Type", "text/plain")]).error(415);
    assert_eq!(error["code"], "unsupported_media_type");
    complete(&server, None, &[]).error(415);
    complete(&server, None, &[("Content-Type", "application/x-www-form-urlencoded")]).error(415);
    assert_eq!(prompt_tokens_total(&server), before, "a refused request reached the engine");

    // The server's own page (the browser sends Origin on a POST fetch), by
    // address or by localhost, and clients that send no Origin.
    let own = format!("http://{}", server.addr);
    generated(&complete(
        &server,
        None,
        &[("Origin", &own), ("Content-Type", "application/json; charset=utf-8")],
    ));
    let localhost = format!("localhost:{port}");
    let own_localhost = format!("http://{localhost}");
    generated(&complete(&server, Some(&localhost), &[("Origin", &own_localhost), JSON]));
    assert_eq!(get_with_host(&server, &localhost).status, 200);
    assert_eq!(get_with_host(&server, &format!("[::1]:{port}")).status, 200);
    generated(&complete(&server, None, &[JSON]));
    // The same page's origin does not carry over to another host.
    complete(&server, Some(&localhost), &[("Origin", &own), JSON]).error(403);
    // The admitted requests did reach the engine: the counter can move.
    assert!(prompt_tokens_total(&server) > before);
}

#[test]
fn allowed_hosts_and_cors_origins_admit_what_they_name() {
    let server = start(&["--allowed-host", "example.org", "--cors-origin", "https://app.example"]);
    assert_eq!(get_with_host(&server, "example.org").status, 200);
    assert_eq!(get_with_host(&server, "Example.org:8080").status, 200);
    get_with_host(&server, "evil.example").error(403);
    get_with_host(&server, "sub.example.org").error(403);

    let app = [("Origin", "https://app.example"), JSON];
    let reply = complete(&server, None, &app);
    generated(&reply);
    assert_eq!(reply.header("access-control-allow-origin"), Some("https://app.example"));
    let preflight = server.request(
        "OPTIONS",
        "/v1/completions",
        &[("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example"));
    complete(&server, None, &[("Origin", "https://evil.example"), JSON]).error(403);
    // An allowed origin still has to send JSON.
    complete(&server, None, &[("Origin", "https://app.example"), ("Content-Type", "text/plain")]).error(415);
}

#[test]
fn a_star_turns_the_host_check_off() {
    let server = start(&["--allowed-host", "*"]);
    assert_eq!(get_with_host(&server, "evil.example:8080").status, 200);
    // The origin check stays: behind a proxy, the page's origin is the proxy's.
    generated(&complete(&server, Some("chat.example"), &[("Origin", "https://chat.example"), JSON]));
    complete(&server, Some("chat.example"), &[("Origin", "https://evil.example"), JSON]).error(403);
}

//! A shortened soak run (`wgserve bench --soak`) against the built
//! `wgserve serve`: tens of requests of the full mix (valid, hung up on
//! mid-stream, malformed), and every check of the long run must pass.

mod common;

use std::process::Command;

use common::server::Server;

#[test]
fn a_short_soak_run_passes_every_check() {
    let server = Server::start(&["--no-embedding-model"]);
    let output = Command::new(env!("CARGO_BIN_EXE_wgserve"))
        .args(["bench", "--url", &format!("http://{}", server.addr), "--soak"])
        .args(["--num-requests", "40", "--concurrency", "8", "--max-tokens", "4"])
        // More malformed requests than the default 10%: with this seed the
        // run meets every kind (they come in turn).
        .args(["--warmup-requests", "8", "--malformed-fraction", "0.3", "--seed", "1"])
        .output()
        .expect("run wgserve bench --soak");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for check in [
        "check ok: every valid request completed or was aborted by its client",
        "check ok: no 5xx",
        "check ok: /metrics idle",
        "check ok: prefix cache counters sane",
        "check ok: resident memory",
        "soak passed",
    ] {
        assert!(stdout.contains(check), "no `{check}` in\n{stdout}");
    }
    // The run met each outcome.
    let counts = stdout.lines().find_map(|line| line.strip_prefix("requests: ")).expect("a requests line");
    let count = |what: &str| -> usize {
        let before = counts.split(what).next().unwrap_or("");
        before.trim_end().rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(count(" completed") > 0 && count(" aborted") > 0 && count(" malformed") > 0, "{counts}");
    let kinds = stdout.lines().find(|line| line.contains("by kind:")).expect("a by-kind line");
    for kind in [
        "bad JSON",
        "wrong type",
        "out of range",
        "unknown model",
        "token id outside the vocabulary",
        "empty messages",
    ] {
        assert!(kinds.contains(kind), "no malformed `{kind}` request in the run: {kinds}");
    }
}

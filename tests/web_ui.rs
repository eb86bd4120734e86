//! The browser chat UI: the embedded files over HTTP (content types,
//! caching headers, 304, 404), and the page in a real browser: Debian's
//! headless Chromium driven by playwright-core (`tests/web/ui.test.mjs`)
//! against the built `wgserve serve` with the real model. Node, Chromium
//! and playwright-core come from `scripts/setup.sh`; without them the
//! browser test fails and says so, it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::Server;

const KEY: &str = "web-test-key";

fn web_file(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("web").join(name)).unwrap()
}

#[test]
fn page_and_assets_with_types_caching_304_and_404() {
    // With a key configured: the page and its files must still load without one.
    let server = Server::start(&["--api-key", KEY]);
    let page = server.request("GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert_eq!(page.body, web_file("index.html"));
    let csp = page.header("content-security-policy").expect("a Content-Security-Policy");
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");

    for (name, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("vendor/marked.esm.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let asset = server.request("GET", &format!("/static/{name}"), &[], b"");
        assert_eq!(asset.status, 200, "{name}");
        assert_eq!(asset.header("content-type"), Some(content_type), "{name}");
        assert_eq!(asset.header("cache-control"), Some("no-cache"), "{name}");
        assert_eq!(asset.header("x-content-type-options"), Some("nosniff"), "{name}");
        assert_eq!(asset.body, web_file(name), "{name}");
    }

    // Revalidation: the ETag gives a bodyless 304; another tag the file.
    let etag = page.header("etag").expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{etag}");
    let css_etag = server.request("GET", "/static/app.css", &[], b"").header("etag").unwrap().to_string();
    assert_ne!(etag, css_etag, "each file has its own ETag");
    let same = server.request("GET", "/", &[("If-None-Match", &etag)], b"");
    assert_eq!(same.status, 304);
    assert!(same.body.is_empty());
    assert_eq!(same.header("etag"), Some(etag.as_str()));
    assert_eq!(same.header("cache-control"), Some("no-cache"));
    let listed = server.request("GET", "/", &[("If-None-Match", &format!("\"old\", W/{etag}"))], b"");
    assert_eq!(listed.status, 304);
    let changed = server.request("GET", "/", &[("If-None-Match", &css_etag)], b"");
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, web_file("index.html"));

    // HEAD: the headers of GET, no body.
    let head = server.request("HEAD", "/static/app.js", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(web_file("app.js").len().to_string().as_str()));
    assert!(head.body.is_empty());

    // Only the embedded files exist: no file system behind /static/.
    for path in ["/static/nope.js", "/static/../Cargo.toml", "/static/%2e%2e/Cargo.toml", "/static/vendor"] {
        server.request("GET", path, &[], b"").error(404);
    }
    server.request("GET", "/index.html", &[], b"").error(404);
    let post = server.request("POST", "/", &[], b"");
    post.error(405);
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
}

/// Where cargo puts the binary's profile directory's parent: the target dir
/// (`CARGO_TARGET_DIR` or `target/`), for the screenshots.
fn target_dir() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_wgserve"));
    binary.parent().and_then(Path::parent).expect("target/<profile>/wgserve").to_path_buf()
}

/// Node, Chromium and playwright-core, or a failure saying how to get them.
fn browser_tools() -> PathBuf {
    let setup = "run `bash scripts/setup.sh --test` (it installs Node.js, npm and Chromium with apt, \
                 and playwright-core with npm ci in tests/web)";
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|out| out.status.success()), "the browser test needs Node.js: {setup}");
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(chromium.exists(), "the browser test needs Chromium at {}: {setup}", chromium.display());
    let playwright = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/node_modules/playwright-core");
    assert!(playwright.exists(), "the browser test needs {}: {setup}", playwright.display());
    chromium
}

#[test]
fn chat_in_a_real_browser() {
    let chromium = browser_tools();
    let server = Server::start(&["--api-key", KEY, "--served-model-name", "smol"]);
    let screenshots = target_dir();
    // The script bounds its own run (a watchdog of 8 minutes, deadlines on
    // every wait), so waiting for it to exit cannot hang.
    let output = Command::new("node")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("tests/web/ui.test.mjs")
        .arg(format!("http://{}", server.addr))
        .env("WGSERVE_API_KEY", KEY)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser test failed ({}); see its output above", output.status);
    assert!(screenshots.join("web-ui.png").exists());
}

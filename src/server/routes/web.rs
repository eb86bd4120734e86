//! The browser chat UI: the files of `web/`, embedded in the binary (no
//! build step, nothing fetched from elsewhere). `GET /` is the page,
//! `GET /static/{name}` its scripts, styles and icon.
//!
//! Caching: every answer has a hash of the file as its strong ETag and
//! `Cache-Control: no-cache`, so a browser revalidates on each load and gets
//! a bodyless 304 while the binary is the same, and never runs a stale
//! script after an upgrade. A strict Content-Security-Policy (scripts,
//! styles and everything else from this origin only, no inline script) is
//! defence in depth: model output that slipped past the markdown renderer
//! still could not run script or load anything from elsewhere.

use std::hash::{DefaultHasher, Hasher};

use hyper::StatusCode;
use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};

use super::super::body::{Response, empty, full};
use super::super::error::ApiError;

struct WebFile {
    /// The path under `/static/` (the page itself is only at `/`).
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! web_file {
    ($name:literal, $content_type:literal) => {
        WebFile {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $name)),
        }
    };
}

const PAGE: WebFile = web_file!("index.html", "text/html; charset=utf-8");

const ASSETS: &[WebFile] = &[
    web_file!("app.js", "text/javascript; charset=utf-8"),
    web_file!("api.js", "text/javascript; charset=utf-8"),
    web_file!("store.js", "text/javascript; charset=utf-8"),
    web_file!("thread.js", "text/javascript; charset=utf-8"),
    web_file!("blocks.js", "text/javascript; charset=utf-8"),
    web_file!("markdown.js", "text/javascript; charset=utf-8"),
    web_file!("icons.js", "text/javascript; charset=utf-8"),
    web_file!("metrics.js", "text/javascript; charset=utf-8"),
    web_file!("vendor/marked.esm.js", "text/javascript; charset=utf-8"),
    web_file!("app.css", "text/css; charset=utf-8"),
    web_file!("favicon.svg", "image/svg+xml"),
];

const CONTENT_SECURITY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the chat page.
pub fn page(request_headers: &HeaderMap) -> Response {
    serve(&PAGE, request_headers)
}

/// `GET /static/{name}`: one of the page's assets; 404 for any other name.
pub fn asset(name: &str, request_headers: &HeaderMap) -> Result<Response, ApiError> {
    let file = ASSETS
        .iter()
        .find(|file| file.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no such file: /static/{name}")))?;
    Ok(serve(file, request_headers))
}

fn serve(file: &WebFile, request_headers: &HeaderMap) -> Response {
    let etag = etag(file.bytes);
    let mut response = if if_none_match(request_headers, &etag) {
        let mut response = hyper::Response::new(empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = hyper::Response::new(full(file.bytes));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
        response
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY));
    response
}

/// A strong ETag: a hash of the bytes, quoted. Hashing the few tens of KB
/// of a file takes microseconds, so it is done per request rather than
/// kept in a table beside `ASSETS`.
fn etag(bytes: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    format!("\"{:016x}\"", hasher.finish())
}

/// Whether `If-None-Match` names `etag` (or is `*`). RFC 9110 compares
/// weakly here, so a `W/` prefix a proxy may have added still matches.
fn if_none_match(request_headers: &HeaderMap, etag: &str) -> bool {
    request_headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(if_none_match: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, HeaderValue::from_str(if_none_match).unwrap());
        headers
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let tag = "\"00ab\"";
        assert!(if_none_match(&headers("\"00ab\""), tag));
        assert!(if_none_match(&headers("\"ffff\", W/\"00ab\""), tag));
        assert!(if_none_match(&headers("*"), tag));
        assert!(!if_none_match(&headers("\"00ac\""), tag));
        assert!(!if_none_match(&HeaderMap::new(), tag));
    }

    /// The files the page and its modules ask for (`/static/...` in the
    /// page, `from './...'` in a module), so a file added to `web/` but
    /// not to `ASSETS` fails here rather than as a 404 in the browser.
    fn references(file: &WebFile) -> Vec<String> {
        let text = std::str::from_utf8(file.bytes).unwrap();
        let (marker, base) = if file.name.ends_with(".html") {
            ("\"/static/", "")
        } else {
            ("from './", file.name.rsplit_once('/').map_or("", |(dir, _)| dir))
        };
        text.split(marker)
            .skip(1)
            .map(|rest| {
                let name = &rest[..rest.find(['"', '\'']).unwrap()];
                if base.is_empty() { name.to_string() } else { format!("{base}/{name}") }
            })
            .collect()
    }

    #[test]
    fn every_file_the_page_asks_for_is_served() {
        let wanted: Vec<String> = ASSETS.iter().chain([&PAGE]).flat_map(references).collect();
        assert!(wanted.iter().any(|name| name == "app.js"), "{wanted:?}");
        assert!(wanted.iter().any(|name| name == "vendor/marked.esm.js"), "{wanted:?}");
        for name in &wanted {
            assert!(ASSETS.iter().any(|file| file.name == name), "web/ asks for {name}, not in ASSETS");
        }
    }
}

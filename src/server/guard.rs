//! Guards against the other web pages a user has open: a server on
//! 127.0.0.1 without an API key is reachable by every one of them. The
//! router runs these before any route, so a refused request does no work.
//!
//! - Host (DNS rebinding): a page on a name the attacker re-resolves to
//!   127.0.0.1 is same-origin with the server for the browser and can read
//!   its answers; its requests still carry that name in `Host`.
//! - Origin: a cross-site page may send "simple" requests (a form post,
//!   `text/plain`) without a CORS preflight; a request whose `Origin` is
//!   neither the server's own nor a `--cors-origin` is refused.
//! - Content type: JSON routes take only `application/json`, which no
//!   page can send cross-site without a preflight.
//!
//! Owns the admitted host names; knows nothing of routes or the engine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hyper::header::{CONTENT_TYPE, HOST, ORIGIN};
use hyper::{HeaderMap, Version};

use super::cors::Cors;
use super::error::ApiError;

/// A `Host` header's host, without its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    /// Lowercase, without a trailing dot.
    Name(String),
}

/// `host[:port]` or `[ipv6][:port]`, as RFC 9110 writes `Host`; `None`
/// for anything else (user info, a bad port, stray characters).
fn parse_host(value: &str) -> Option<Host> {
    let (host, port, bracketed) = match value.strip_prefix('[') {
        Some(rest) => {
            let (ip, port) = rest.split_once(']')?;
            (ip, port, true)
        }
        None => match value.find(':') {
            Some(colon) => (&value[..colon], &value[colon..], false),
            None => (value, "", false),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return None;
    }
    if bracketed {
        return host.parse::<Ipv6Addr>().ok().map(|ip| Host::Ip(ip.into()));
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Some(Host::Ip(ip.into()));
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    valid.then_some(Host::Name(name))
}

/// The value parser of `--allowed-host`: `*`, a name or an IP address (a
/// port, if given, is ignored, as it is in the check).
pub fn parse_allowed_host(text: &str) -> Result<String, String> {
    if text == "*" {
        return Ok(text.to_string());
    }
    match parse_host(text) {
        Some(Host::Name(name)) => Ok(name),
        Some(Host::Ip(ip)) => Ok(ip.to_string()),
        None => Err(format!("expected a host name, an IP address or `*`, got `{text}`")),
    }
}

/// Which `Host` values a server answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCheck {
    /// `--allowed-host '*'`, or a server bound to all or a public address
    /// without `--allowed-host`: it cannot know the names it is reached by.
    Off,
    On {
        bound: IpAddr,
        names: Vec<Host>,
    },
}

impl HostCheck {
    /// On when bound to loopback, or when names are given; `bound` is
    /// `None` only for states built by hand in tests.
    pub fn new(bound: Option<IpAddr>, allowed_hosts: &[String]) -> Self {
        if allowed_hosts.iter().any(|h| h == "*") {
            return HostCheck::Off;
        }
        // The CLI validated them with `parse_allowed_host`.
        let names: Vec<Host> = allowed_hosts.iter().filter_map(|h| parse_host(h)).collect();
        match bound {
            Some(bound) if bound.is_loopback() || !names.is_empty() => HostCheck::On { bound, names },
            _ => HostCheck::Off,
        }
    }

    /// 400 for a missing (HTTP/1.1, RFC 9112 3.2) or repeated `Host`, 403
    /// for one this server does not answer to.
    pub fn check(&self, version: Version, headers: &HeaderMap) -> Result<(), ApiError> {
        let mut values = headers.get_all(HOST).iter();
        let (value, repeated) = (values.next(), values.next().is_some());
        if repeated || (value.is_none() && version == Version::HTTP_11) {
            return Err(ApiError::InvalidRequest {
                message: "an HTTP/1.1 request needs exactly one Host header".into(),
                param: None,
            });
        }
        let (HostCheck::On { bound, names }, Some(value)) = (self, value) else {
            // HTTP/1.0 without Host: no browser sends that.
            return Ok(());
        };
        let text = String::from_utf8_lossy(value.as_bytes());
        let admitted = match parse_host(&text) {
            Some(Host::Ip(ip)) => admits_ip(*bound, ip) || names.contains(&Host::Ip(ip)),
            // Browsers resolve `localhost` to loopback themselves, never by DNS.
            Some(Host::Name(name)) => name == "localhost" || names.contains(&Host::Name(name)),
            None => false,
        };
        if admitted {
            return Ok(());
        }
        let name = match parse_host(&text) {
            Some(Host::Name(name)) => name,
            _ => "NAME".into(),
        };
        Err(ApiError::Forbidden {
            message: format!(
                "this server does not answer to the Host `{text}` (a guard against DNS rebinding): \
                 start wgserve with --allowed-host {name} to allow it, or --allowed-host '*' behind a proxy"
            ),
            code: "host_not_allowed",
        })
    }
}

/// A rebinding attack needs a name: a Host that is an IP address is the
/// address the client connected to. Loopback reaches a loopback-bound
/// server on any 127/8 address; an unspecified bind (0.0.0.0, ::) is
/// reached on every address of the machine.
fn admits_ip(bound: IpAddr, ip: IpAddr) -> bool {
    bound.is_unspecified() || ip == bound || (ip.is_loopback() && bound.is_loopback())
}

/// 403 for an `Origin` that is neither the server's own (`http://` or,
/// behind a TLS proxy, `https://` plus the `Host` the request was sent
/// to) nor allowed by `--cors-origin`. No `Origin`: not a cross-site
/// browser request (the official clients send none).
pub fn check_origin(headers: &HeaderMap, cors: &Cors) -> Result<(), ApiError> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let host = headers.get(HOST).map(|h| String::from_utf8_lossy(h.as_bytes()));
    let same_origin = host.is_some_and(|host| {
        ["http://", "https://"]
            .iter()
            .any(|scheme| origin.strip_prefix(scheme).is_some_and(|rest| rest.eq_ignore_ascii_case(&host)))
    });
    if same_origin || cors.allows(&origin) {
        return Ok(());
    }
    Err(ApiError::Forbidden {
        message: format!(
            "requests from the web origin `{origin}` are not allowed: start wgserve with \
             --cors-origin {origin} to allow it"
        ),
        code: "origin_not_allowed",
    })
}

/// 415 unless the body is declared `application/json` (parameters such as
/// `; charset=utf-8` allowed): a cross-site form or `text/plain` post, or
/// a body with no type, never reaches a JSON route.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers.get(CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()));
    let is_json = declared.as_deref().is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
    });
    if is_json {
        return Ok(());
    }
    let got = declared.map_or("none".to_string(), |v| format!("`{v}`"));
    Err(ApiError::UnsupportedMediaType(format!(
        "the request body must be JSON sent with `Content-Type: application/json`; got {got}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn host(check: &HostCheck, value: &str) -> Result<(), ApiError> {
        check.check(Version::HTTP_11, &headers(&[("host", value)]))
    }

    #[test]
    fn parses_hosts_with_and_without_ports() {
        let name = |n: &str| Some(Host::Name(n.into()));
        assert_eq!(parse_host("Example.ORG:8080"), name("example.org"));
        assert_eq!(parse_host("example.org."), name("example.org"));
        assert_eq!(parse_host("127.0.0.1:80"), Some(Host::Ip([127, 0, 0, 1].into())));
        assert_eq!(parse_host("[::1]:8080"), Some(Host::Ip(Ipv6Addr::LOCALHOST.into())));
        assert_eq!(parse_host("[::1]"), Some(Host::Ip(Ipv6Addr::LOCALHOST.into())));
        for bad in ["", ":80", "::1", "a:b", "a:123456", "user@localhost", "[::1]x", "[evil]", "a b", "a/b"] {
            assert_eq!(parse_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_admits_its_own_addresses_and_given_names_only() {
        let check = HostCheck::new(Some([127, 0, 0, 1].into()), &["example.org".into()]);
        for ok in ["127.0.0.1:8080", "127.0.0.1", "localhost:8080", "LOCALHOST", "[::1]:8080", "example.org"]
        {
            assert!(host(&check, ok).is_ok(), "{ok}");
        }
        for refused in
            ["evil.example:8080", "localhost.evil.example", "10.0.0.1:8080", "example.org.evil", ""]
        {
            let error = host(&check, refused).unwrap_err();
            assert_eq!(error.status(), 403, "{refused}");
        }
        let missing = check.check(Version::HTTP_11, &HeaderMap::new()).unwrap_err();
        assert_eq!(missing.status(), 400);
        assert!(check.check(Version::HTTP_10, &HeaderMap::new()).is_ok());
        let twice = headers(&[("host", "localhost"), ("host", "evil.example")]);
        assert_eq!(check.check(Version::HTTP_11, &twice).unwrap_err().status(), 400);
    }

    #[test]
    fn the_check_is_off_for_a_star_or_a_public_bind_without_names() {
        assert_eq!(HostCheck::new(Some([127, 0, 0, 1].into()), &["*".into()]), HostCheck::Off);
        assert_eq!(HostCheck::new(Some(Ipv4Addr::UNSPECIFIED.into()), &[]), HostCheck::Off);
        assert_eq!(HostCheck::new(Some([192, 168, 1, 5].into()), &[]), HostCheck::Off);
        let all = HostCheck::new(Some(Ipv4Addr::UNSPECIFIED.into()), &["chat.example".into()]);
        assert!(host(&all, "chat.example:443").is_ok());
        assert!(host(&all, "192.168.1.5:8080").is_ok());
        assert!(host(&all, "evil.example").is_err());
        let one = HostCheck::new(Some([192, 168, 1, 5].into()), &["chat.example".into()]);
        assert!(host(&one, "192.168.1.5").is_ok());
        assert!(host(&one, "192.168.1.6").is_err());
    }

    #[test]
    fn origins_must_be_the_servers_own_or_configured() {
        let none = Cors::new(Vec::new());
        let same = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")]);
        assert!(check_origin(&same, &none).is_ok());
        assert!(check_origin(&headers(&[("host", "127.0.0.1:8080")]), &none).is_ok());
        let other_port = headers(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:9999")]);
        assert_eq!(check_origin(&other_port, &none).unwrap_err().status(), 403);
        let evil = headers(&[("host", "127.0.0.1:8080"), ("origin", "https://evil.example")]);
        assert_eq!(check_origin(&evil, &none).unwrap_err().status(), 403);
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert_eq!(check_origin(&null, &none).unwrap_err().status(), 403);
        assert!(check_origin(&evil, &Cors::new(vec!["https://evil.example/".into()])).is_ok());
        assert!(check_origin(&evil, &Cors::new(vec!["*".into()])).is_ok());
    }

    #[test]
    fn json_routes_take_only_json() {
        for ok in ["application/json", "application/json; charset=utf-8", "Application/JSON ;charset=UTF-8"] {
            assert!(check_json_content_type(&headers(&[("content-type", ok)])).is_ok(), "{ok}");
        }
        for refused in
            ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx"]
        {
            let error = check_json_content_type(&headers(&[("content-type", refused)])).unwrap_err();
            assert_eq!(error.status(), 415, "{refused}");
        }
        assert_eq!(check_json_content_type(&HeaderMap::new()).unwrap_err().status(), 415);
    }
}

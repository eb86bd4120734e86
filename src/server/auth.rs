//! Bearer API keys. Keys are compared in constant time (per key length),
//! and every configured key is checked, so the time taken does not say
//! which key, or how much of one, matched.

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;

use super::error::ApiError;

/// Ok when no keys are configured or the request carries one of them.
pub fn check(headers: &HeaderMap, api_keys: &[String]) -> Result<(), ApiError> {
    if api_keys.is_empty() {
        return Ok(());
    }
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "missing API key: send the header `Authorization: Bearer <key>`".into(),
        ));
    };
    let presented = value.as_bytes();
    let token = match presented.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &presented[7..],
        _ => return Err(ApiError::Unauthorized("the Authorization header must be `Bearer <key>`".into())),
    };
    let matched =
        api_keys.iter().fold(false, |matched, key| matched | constant_time_eq(key.as_bytes(), token));
    if matched { Ok(()) } else { Err(ApiError::Unauthorized("incorrect API key".into())) }
}

/// Time depends only on the longer length, never on where bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, value.parse().unwrap());
        map
    }

    #[test]
    fn accepts_any_configured_key_and_nothing_else() {
        let keys = vec!["alpha".to_string(), "beta-key".to_string()];
        assert!(check(&headers("Bearer alpha"), &keys).is_ok());
        assert!(check(&headers("bearer beta-key"), &keys).is_ok());
        assert!(check(&headers("Bearer alph"), &keys).is_err());
        assert!(check(&headers("Bearer alphaa"), &keys).is_err());
        assert!(check(&headers("Basic alpha"), &keys).is_err());
        assert!(check(&HeaderMap::new(), &keys).is_err());
        assert!(check(&HeaderMap::new(), &[]).is_ok());
    }

    #[test]
    fn compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(constant_time_eq(b"abc", b"abc"));
    }
}

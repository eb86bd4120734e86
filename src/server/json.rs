//! Request bodies: read up to a size limit (never buffering more), then
//! parsed as JSON into a typed request, with errors naming the field.

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The whole body, or 413 as soon as it passes `limit_bytes`.
pub async fn read_body(request: hyper::Request<Incoming>, limit_bytes: usize) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit_bytes as u64) {
        return Err(ApiError::PayloadTooLarge { limit_bytes });
    }
    match Limited::new(request.into_body(), limit_bytes).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit_bytes })
        }
        Err(e) => Err(ApiError::InvalidRequest {
            message: format!("cannot read the request body: {e}"),
            param: None,
        }),
    }
}

/// `bytes` as a `T`. A syntax error says where; a type error names the
/// field by its path (`messages[0].role`) in the message and in `param`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() && path != "." {
            ApiError::invalid(format!("invalid field `{path}`: {inner}"), path)
        } else if inner.is_data() {
            ApiError::InvalidRequest { message: format!("invalid request: {inner}"), param: None }
        } else {
            ApiError::InvalidRequest { message: format!("invalid JSON body: {inner}"), param: None }
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::InvalidRequest { message: format!("invalid JSON body: {e}"), param: None })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Example {
        #[allow(dead_code)]
        tokens: Vec<u32>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Example>(br#"{"tokens": [1, -2]}"#).unwrap_err();
        let ApiError::InvalidRequest { param, .. } = e else { panic!("{e:?}") };
        assert_eq!(param.as_deref(), Some("tokens[1]"));
        let e = parse::<Example>(br#"{"tokens": [1"#).unwrap_err();
        assert!(e.to_string().starts_with("invalid JSON body"), "{e}");
        let e = parse::<Example>(br#"{}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `tokens`"), "{e}");
        assert!(parse::<Example>(br#"{"tokens": []} x"#).is_err());
    }
}

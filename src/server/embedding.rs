//! The OpenAI embeddings request and response: `input` as a string, a list
//! of strings, token ids or a list of lists of token ids, checked by hand
//! so that an error names the offending item (`input[3]`); the vectors as
//! JSON floats or as base64 of their little-endian f32 bytes (what the
//! official client asks for by default).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::embedding::EmbeddingError;

use super::error::ApiError;

/// OpenAI's limit on inputs per request.
pub const MAX_INPUTS: usize = 2048;

/// The fields of `POST /v1/embeddings`; unknown ones (`user`) are ignored.
#[derive(Debug, Deserialize)]
pub struct EmbeddingRequest {
    pub input: Option<Value>,
    pub model: Option<String>,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    pub dimensions: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

/// One input: text to tokenize, or token ids taken as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// The inputs of `input`, each with the `param` that names it in errors.
pub fn parse_inputs(input: Option<&Value>) -> Result<Vec<(EmbeddingInput, String)>, ApiError> {
    const EXPECTED: &str = "a string, a list of strings, a list of token ids or a list of lists of token ids";
    let Some(input) = input else {
        return Err(ApiError::invalid("`input` is required", "input"));
    };
    let items = match input {
        Value::String(text) => return Ok(vec![(text_input(text, "input")?, "input".into())]),
        Value::Array(items) => items,
        _ => return Err(ApiError::invalid(format!("`input` must be {EXPECTED}"), "input")),
    };
    if items.is_empty() {
        return Err(ApiError::invalid("`input` must not be an empty list", "input"));
    }
    // A list of numbers is one input of token ids.
    if items[0].is_number() {
        return Ok(vec![(EmbeddingInput::Tokens(token_ids(items, "input")?), "input".into())]);
    }
    if items.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            format!("`input` has {} items; at most {MAX_INPUTS} are allowed", items.len()),
            "input",
        ));
    }
    let first_is_text = match &items[0] {
        Value::String(_) => true,
        Value::Array(_) => false,
        _ => return Err(ApiError::invalid(format!("`input` must be {EXPECTED}"), "input[0]")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let param = format!("input[{i}]");
            let parsed = match (item, first_is_text) {
                (Value::String(text), true) => text_input(text, &param)?,
                (_, true) => {
                    return Err(ApiError::invalid("every item must be a string, as `input[0]` is", param));
                }
                (Value::Array(ids), false) if !ids.is_empty() => {
                    EmbeddingInput::Tokens(token_ids(ids, &param)?)
                }
                (Value::Array(_), false) => {
                    return Err(ApiError::invalid("a list of token ids must not be empty", param));
                }
                (_, false) => {
                    return Err(ApiError::invalid(
                        "every item must be a list of token ids, as `input[0]` is",
                        param,
                    ));
                }
            };
            Ok((parsed, param))
        })
        .collect()
}

fn text_input(text: &str, param: &str) -> Result<EmbeddingInput, ApiError> {
    if text.is_empty() {
        return Err(ApiError::invalid("an input must not be an empty string", param));
    }
    Ok(EmbeddingInput::Text(text.to_string()))
}

fn token_ids(items: &[Value], param: &str) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .enumerate()
        .map(|(j, item)| {
            item.as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(|| {
                ApiError::invalid(
                    format!("token ids are non-negative integers; found {item}"),
                    format!("{param}[{j}]"),
                )
            })
        })
        .collect()
}

/// The worker's refusal as a client error naming the input.
pub fn embedding_error(error: EmbeddingError, params: &[String]) -> ApiError {
    match error {
        EmbeddingError::NoInputs => ApiError::invalid(error.to_string(), "input"),
        EmbeddingError::InvalidInput { index, position, ref message } => {
            let mut param = params.get(index).cloned().unwrap_or_else(|| "input".into());
            if let Some(position) = position {
                param.push_str(&format!("[{position}]"));
            }
            ApiError::invalid(format!("`{param}`: {message}"), param)
        }
        EmbeddingError::Failed(_) | EmbeddingError::Stopped => ApiError::Unavailable(error.to_string()),
    }
}

#[derive(Serialize)]
pub struct EmbeddingResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Serialize)]
pub struct EmbeddingObject {
    pub object: &'static str,
    pub index: usize,
    pub embedding: EmbeddingVector,
}

/// A list of floats, or the base64 of their little-endian f32 bytes.
#[derive(Serialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

impl EmbeddingResponse {
    pub fn new(model: String, vectors: Vec<Vec<f32>>, format: EncodingFormat, prompt_tokens: usize) -> Self {
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(index, vector)| EmbeddingObject {
                object: "embedding",
                index,
                embedding: match format {
                    EncodingFormat::Float => EmbeddingVector::Float(vector),
                    EncodingFormat::Base64 => {
                        let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                        EmbeddingVector::Base64(base64::encode(bytes))
                    }
                },
            })
            .collect();
        Self {
            object: "list",
            data,
            model,
            usage: EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(input: Value) -> Option<String> {
        match parse_inputs(Some(&input)) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("{input}: expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn every_input_shape_parses() {
        let parsed = |input: Value| -> Vec<EmbeddingInput> {
            parse_inputs(Some(&input)).unwrap().into_iter().map(|(i, _)| i).collect()
        };
        let text = |t: &str| EmbeddingInput::Text(t.into());
        assert_eq!(parsed(json!("hi")), vec![text("hi")]);
        assert_eq!(parsed(json!(["a", "b"])), vec![text("a"), text("b")]);
        assert_eq!(parsed(json!([1, 2, 3])), vec![EmbeddingInput::Tokens(vec![1, 2, 3])]);
        assert_eq!(
            parsed(json!([[1], [2, 3]])),
            vec![EmbeddingInput::Tokens(vec![1]), EmbeddingInput::Tokens(vec![2, 3])]
        );
        let params: Vec<String> =
            parse_inputs(Some(&json!(["a", "b"]))).unwrap().into_iter().map(|(_, p)| p).collect();
        assert_eq!(params, ["input[0]", "input[1]"]);
    }

    #[test]
    fn bad_inputs_name_the_item() {
        assert!(
            matches!(parse_inputs(None), Err(ApiError::InvalidRequest { param: Some(p), .. }) if p == "input")
        );
        assert_eq!(param(json!("")), Some("input".into()));
        assert_eq!(param(json!([])), Some("input".into()));
        assert_eq!(param(json!(["a", ""])), Some("input[1]".into()));
        assert_eq!(param(json!(["a", 5])), Some("input[1]".into()));
        assert_eq!(param(json!([[1], "a"])), Some("input[1]".into()));
        assert_eq!(param(json!([[1], []])), Some("input[1]".into()));
        assert_eq!(param(json!([1, "a"])), Some("input[1]".into()));
        assert_eq!(param(json!([1, -2])), Some("input[1]".into()));
        assert_eq!(param(json!([[1], [2, 1.5]])), Some("input[1][1]".into()));
        assert_eq!(param(json!([4294967296u64])), Some("input[0]".into()));
        assert_eq!(param(json!(12)), Some("input".into()));
        assert_eq!(param(json!({"text": "a"})), Some("input".into()));
        assert_eq!(param(json!([null])), Some("input[0]".into()));
        assert_eq!(param(Value::Array(vec![json!("a"); MAX_INPUTS + 1])), Some("input".into()));
    }

    #[test]
    fn base64_holds_the_little_endian_floats() {
        let response = EmbeddingResponse::new("m".into(), vec![vec![1.0, -0.5]], EncodingFormat::Base64, 3);
        let EmbeddingVector::Base64(text) = &response.data[0].embedding else { panic!("base64") };
        // 1.0 = 00 00 80 3f, -0.5 = 00 00 00 bf
        assert_eq!(text, "AACAPwAAAL8=");
        let body = serde_json::to_value(&response).unwrap();
        assert_eq!(body["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(body["data"][0]["object"], "embedding");
    }
}

//! The request fields of tool calling: `tools` (functions with JSON-schema
//! parameters), `tool_choice` (`none`, `auto`, `required`, a named
//! function) and `parallel_tool_calls`, validated as OpenAI validates them
//! and turned into the engine's tool grammar. Reading the calls back out of
//! the generated text is `text::tool_calls`; shaping them is the
//! response's job.

use serde_json::Value;

use crate::engine::constraint::{FunctionSpec, OutputConstraint, ToolGrammar, ToolMode};
use crate::text::tool_calls::ToolCallFormat;

use super::error::ApiError;

/// The most tools one request may declare (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;

/// The longest function name (OpenAI's limit).
const MAX_NAME_LEN: usize = 64;

/// What a request asks of tool calling.
#[derive(Debug, Clone)]
pub struct ToolRequest {
    /// The `tools` entries as sent: templates get them as they came.
    pub definitions: Vec<Value>,
    pub functions: Vec<FunctionSpec>,
    pub choice: ToolChoice,
    pub parallel: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    Required,
    /// A call of `functions[index]`.
    Named(usize),
}

impl ToolRequest {
    /// The tool fields of a request, or `None` when it declares no tools
    /// (then `tool_choice` may only be absent or `none`).
    pub fn parse(
        tools: Option<&[Value]>,
        tool_choice: Option<&Value>,
        parallel_tool_calls: Option<bool>,
    ) -> Result<Option<Self>, ApiError> {
        let definitions = tools.unwrap_or_default();
        if definitions.is_empty() {
            return match tool_choice {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s == "none" => Ok(None),
                Some(_) => {
                    Err(ApiError::invalid("`tool_choice` needs `tools` to choose from", "tool_choice"))
                }
            };
        }
        if definitions.len() > MAX_TOOLS {
            return Err(ApiError::invalid(
                format!("at most {MAX_TOOLS} tools, got {}", definitions.len()),
                "tools",
            ));
        }
        let mut functions: Vec<FunctionSpec> = Vec::with_capacity(definitions.len());
        for (i, tool) in definitions.iter().enumerate() {
            let function = function_spec(tool, i)?;
            if functions.iter().any(|f| f.name == function.name) {
                return Err(ApiError::invalid(
                    format!("two tools are named `{}`", function.name),
                    format!("tools[{i}].function.name"),
                ));
            }
            functions.push(function);
        }
        let choice = tool_choice_of(tool_choice, &functions)?;
        Ok(Some(Self {
            definitions: definitions.to_vec(),
            functions,
            choice,
            parallel: parallel_tool_calls.unwrap_or(true),
        }))
    }

    /// Whether the model's text is read for calls (not with `none`).
    pub fn calls_allowed(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The grammar the output is held to in `format`; `None` for `none`.
    pub fn constraint(&self, format: ToolCallFormat) -> Option<OutputConstraint> {
        let mode = match self.choice {
            ToolChoice::None => return None,
            ToolChoice::Auto => ToolMode::Auto { parallel: self.parallel },
            ToolChoice::Required => ToolMode::Required { parallel: self.parallel },
            ToolChoice::Named(index) => ToolMode::Named(index),
        };
        Some(OutputConstraint::ToolCalls(ToolGrammar { format, functions: self.functions.clone(), mode }))
    }
}

fn function_spec(tool: &Value, i: usize) -> Result<FunctionSpec, ApiError> {
    let param = |field: &str| format!("tools[{i}]{field}");
    let Value::Object(tool) = tool else {
        return Err(ApiError::invalid("a tool must be an object", param("")));
    };
    match tool.get("type") {
        Some(Value::String(kind)) if kind == "function" => {}
        _ => {
            return Err(ApiError::invalid(
                "only tools of `type: \"function\"` are supported",
                param(".type"),
            ));
        }
    }
    let Some(Value::Object(function)) = tool.get("function") else {
        return Err(ApiError::invalid("a function tool needs a `function` object", param(".function")));
    };
    let name = match function.get("name") {
        Some(Value::String(name)) if valid_name(name) => name.clone(),
        _ => {
            return Err(ApiError::invalid(
                format!("a function name must be 1 to {MAX_NAME_LEN} of a-z, A-Z, 0-9, `_` and `-`"),
                param(".function.name"),
            ));
        }
    };
    let parameters = match function.get("parameters") {
        // OpenAI: omitted parameters are an empty parameter list.
        None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "`parameters` must be a JSON Schema object",
                param(".function.parameters"),
            ));
        }
    };
    Ok(FunctionSpec { name, parameters })
}

/// Names go into the grammar and the model's text as they are: the
/// characters OpenAI allows need no escaping in either.
fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn tool_choice_of(choice: Option<&Value>, functions: &[FunctionSpec]) -> Result<ToolChoice, ApiError> {
    let invalid = || {
        ApiError::invalid(
            "`tool_choice` must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
            "tool_choice",
        )
    };
    match choice {
        None | Some(Value::Null) => Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            _ => Err(invalid()),
        },
        Some(Value::Object(object)) => {
            if object.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid());
            }
            let name = object
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(invalid)?;
            functions.iter().position(|f| f.name == name).map(ToolChoice::Named).ok_or_else(|| {
                ApiError::invalid(
                    format!("`tool_choice` names `{name}`, which is not in `tools`"),
                    "tool_choice",
                )
            })
        }
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param_of(tools: Value, choice: Value) -> Option<String> {
        let tools: Vec<Value> = serde_json::from_value(tools).unwrap();
        match ToolRequest::parse(Some(&tools), Some(&choice), None) {
            Ok(_) => None,
            Err(ApiError::InvalidRequest { param, .. }) => param,
            Err(e) => Some(format!("unexpected {e:?}")),
        }
    }

    #[test]
    fn choices_and_defaults() {
        let tools = vec![
            json!({"type": "function", "function": {"name": "a"}}),
            json!({"type": "function", "function": {"name": "b-2"}}),
        ];
        let parse = |choice: Value| ToolRequest::parse(Some(&tools), Some(&choice), None).unwrap().unwrap();
        assert_eq!(parse(Value::Null).choice, ToolChoice::Auto);
        assert_eq!(parse(json!("required")).choice, ToolChoice::Required);
        assert_eq!(
            parse(json!({"type": "function", "function": {"name": "b-2"}})).choice,
            ToolChoice::Named(1)
        );
        let request = parse(json!("none"));
        assert!(!request.calls_allowed() && request.constraint(ToolCallFormat::Hermes).is_none());
        assert!(request.parallel);
        assert_eq!(request.functions[0].parameters, json!({"type": "object", "properties": {}}));
        assert!(ToolRequest::parse(None, Some(&json!("none")), None).unwrap().is_none());
        assert!(ToolRequest::parse(Some(&[]), None, None).unwrap().is_none());
    }

    #[test]
    fn each_invalid_field_is_named() {
        let ok = json!({"type": "function", "function": {"name": "f"}});
        let cases = [
            (json!([{"type": "retrieval"}]), json!("auto"), "tools[0].type"),
            (json!([ok, {"type": "function"}]), json!("auto"), "tools[1].function"),
            (
                json!([{"type": "function", "function": {"name": "a b"}}]),
                json!("auto"),
                "tools[0].function.name",
            ),
            (
                json!([{"type": "function", "function": {"name": "x".repeat(65)}}]),
                json!("auto"),
                "tools[0].function.name",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": []}}]),
                json!("auto"),
                "tools[0].function.parameters",
            ),
            (json!([ok, ok]), json!("auto"), "tools[1].function.name"),
            (json!([ok]), json!("always"), "tool_choice"),
            (json!([ok]), json!({"type": "function", "function": {"name": "g"}}), "tool_choice"),
            (json!([ok]), json!(3), "tool_choice"),
            (json!([]), json!("required"), "tool_choice"),
        ];
        for (tools, choice, param) in cases {
            assert_eq!(param_of(tools.clone(), choice.clone()).as_deref(), Some(param), "{tools} {choice}");
        }
    }
}

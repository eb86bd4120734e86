//! Chat messages as the text module takes them, validated as OpenAI's
//! API validates them: known roles, `content` where the role requires it,
//! content parts of known types that the role may carry, `name` a string.
//! Used by the chat route and by `/tokenize`.

use serde_json::Value;

use crate::text::ChatMessage;
use crate::text::tool_calls::{TemplateFunction, TemplateToolCall};

use super::super::error::ApiError;
use super::request::{ChatMessageParam, ContentPart, MessageContent};

/// Roles a chat message may have.
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Content part types OpenAI knows; which of them a role may carry is in
/// `part_allowed`.
const PART_TYPES: [&str; 6] = ["text", "image_url", "input_audio", "file", "refusal", "image"];

/// Validated messages for the chat template: at least one, each valid.
pub fn chat_messages(messages: &[ChatMessageParam]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("`messages` must contain at least one message", "messages"));
    }
    messages.iter().enumerate().map(|(i, message)| chat_message(message, i)).collect()
}

fn chat_message(message: &ChatMessageParam, i: usize) -> Result<ChatMessage, ApiError> {
    let role = message.role.as_str();
    if !ROLES.contains(&role) {
        return Err(ApiError::invalid(
            format!("unknown role `{role}` (expected one of {})", ROLES.join(", ")),
            format!("messages[{i}].role"),
        ));
    }
    let tool_calls = match &message.tool_calls {
        None | Some(Value::Null) => None,
        Some(_) if role != "assistant" => {
            return Err(ApiError::invalid(
                "only an `assistant` message may carry `tool_calls`",
                format!("messages[{i}].tool_calls"),
            ));
        }
        Some(calls) => Some(tool_calls(calls, i)?),
    };
    if role == "tool" && message.tool_call_id.is_none() {
        return Err(ApiError::invalid(
            "a `tool` message needs `tool_call_id`, the id of the call it answers",
            format!("messages[{i}].tool_call_id"),
        ));
    }
    let content = match &message.content {
        // OpenAI: only an assistant message with tool calls may omit it.
        None if tool_calls.is_some() => String::new(),
        None => {
            return Err(ApiError::invalid(
                format!("`content` is required in a `{role}` message"),
                format!("messages[{i}].content"),
            ));
        }
        Some(MessageContent::Text(text)) => text.clone(),
        Some(MessageContent::Parts(parts)) => text_of_parts(role, parts, i)?,
    };
    let tool_call_id = if role == "tool" { message.tool_call_id.clone() } else { None };
    Ok(ChatMessage { tool_calls, tool_call_id, ..ChatMessage::new(role, content) })
}

/// An assistant's earlier calls as templates read them: OpenAI's argument
/// strings parsed into the objects transformers passes (as vLLM does).
fn tool_calls(calls: &Value, i: usize) -> Result<Vec<TemplateToolCall>, ApiError> {
    let Value::Array(calls) = calls else {
        return Err(ApiError::invalid("`tool_calls` must be a list", format!("messages[{i}].tool_calls")));
    };
    let mut parsed = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let param = |field: &str| format!("messages[{i}].tool_calls[{j}]{field}");
        let string = |field: &str, value: Option<&Value>| match value {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(ApiError::invalid(format!("`{}` must be a string", &field[1..]), param(field))),
        };
        let id = string(".id", call.get("id"))?;
        if call.get("type").is_some_and(|kind| kind != "function") {
            return Err(ApiError::invalid(
                "only calls of `type: \"function\"` are supported",
                param(".type"),
            ));
        }
        let function = call.get("function");
        let name = string(".function.name", function.and_then(|f| f.get("name")))?;
        let arguments = string(".function.arguments", function.and_then(|f| f.get("arguments")))?;
        let arguments: Value = serde_json::from_str(&arguments).map_err(|e| {
            ApiError::invalid(format!("`arguments` must be a JSON text: {e}"), param(".function.arguments"))
        })?;
        parsed.push(TemplateToolCall {
            id,
            kind: "function".into(),
            function: TemplateFunction { name, arguments },
        });
    }
    Ok(parsed)
}

/// Whether a `role` message may carry parts of type `kind`, as OpenAI's
/// schema has it (images, audio and files come only from users).
fn part_allowed(role: &str, kind: &str) -> bool {
    match role {
        "user" => matches!(kind, "text" | "image_url" | "input_audio" | "file"),
        "assistant" => matches!(kind, "text" | "refusal"),
        _ => kind == "text",
    }
}

fn text_of_parts(role: &str, parts: &[ContentPart], message_index: usize) -> Result<String, ApiError> {
    if parts.is_empty() {
        return Err(ApiError::invalid(
            "`content` must be a string or a non-empty list of parts",
            format!("messages[{message_index}].content"),
        ));
    }
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{message_index}].content[{j}]");
        let kind = part.kind.as_str();
        if !PART_TYPES.contains(&kind) {
            return Err(ApiError::invalid(
                format!("unknown content part type `{kind}` (expected one of {})", PART_TYPES.join(", ")),
                format!("{param}.type"),
            ));
        }
        if !part_allowed(role, kind) {
            return Err(ApiError::invalid(
                format!("a `{role}` message cannot carry `{kind}` parts"),
                format!("{param}.type"),
            ));
        }
        match (kind, &part.text, &part.refusal) {
            ("text", Some(part_text), _) => text.push_str(part_text),
            ("text", None, _) => {
                return Err(ApiError::invalid("a text part needs `text`", format!("{param}.text")));
            }
            ("refusal", _, Some(refusal)) => text.push_str(refusal),
            ("refusal", _, None) => {
                return Err(ApiError::invalid("a refusal part needs `refusal`", format!("{param}.refusal")));
            }
            (kind, _, _) => {
                return Err(ApiError::invalid(
                    format!("content parts of type `{kind}` are not supported by this model (text only)"),
                    param,
                ));
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn param_of(messages: Value) -> Option<String> {
        let messages: Vec<ChatMessageParam> = match serde_json::from_value(messages) {
            Ok(messages) => messages,
            Err(e) => return Some(format!("serde: {e}")),
        };
        match chat_messages(&messages) {
            Ok(_) => None,
            Err(ApiError::InvalidRequest { param, .. }) => param,
            Err(e) => Some(format!("unexpected {e:?}")),
        }
    }

    #[test]
    fn valid_messages_pass() {
        let ok = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Rules."}]},
            {"role": "user", "content": "Hi", "name": "ann"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": [1]}"}}
            ]},
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ]);
        assert_eq!(param_of(ok.clone()), None);
        let messages: Vec<ChatMessageParam> = serde_json::from_value(ok).unwrap();
        let messages = chat_messages(&messages).unwrap();
        let call = &messages[4].tool_calls.as_ref().unwrap()[0];
        assert_eq!((call.function.name.as_str(), &call.function.arguments), ("f", &json!({"a": [1]})));
        assert_eq!(messages[5].tool_call_id.as_deref(), Some("call_1"));
    }

    #[test]
    fn each_invalid_message_names_its_field() {
        let cases = [
            (json!([{"role": "user"}]), "messages[0].content"),
            (json!([{"role": "user", "content": null}]), "messages[0].content"),
            (json!([{"role": "system", "content": "a"}, {"role": "assistant"}]), "messages[1].content"),
            (json!([{"role": "wizard", "content": "a"}]), "messages[0].role"),
            (json!([{"role": "user", "content": []}]), "messages[0].content"),
            (
                json!([{"role": "user", "content": [{"type": "video", "text": "a"}]}]),
                "messages[0].content[0].type",
            ),
            (json!([{"role": "system", "content": [{"type": "image_url"}]}]), "messages[0].content[0].type"),
            (json!([{"role": "user", "content": [{"type": "image_url"}]}]), "messages[0].content[0]"),
            (json!([{"role": "user", "content": [{"type": "text"}]}]), "messages[0].content[0].text"),
            (json!([{"role": "tool", "content": "1"}]), "messages[0].tool_call_id"),
            (json!([{"role": "user", "content": "a", "tool_calls": []}]), "messages[0].tool_calls"),
            (json!([{"role": "assistant", "tool_calls": {}}]), "messages[0].tool_calls"),
            (
                json!([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]),
                "messages[0].tool_calls[0].id",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}]),
                "messages[0].tool_calls[0].function.arguments",
            ),
            (
                json!([{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{x"}}]}]),
                "messages[0].tool_calls[0].function.arguments",
            ),
        ];
        for (messages, param) in cases {
            assert_eq!(param_of(messages.clone()).as_deref(), Some(param), "{messages}");
        }
    }

    #[test]
    fn wrong_types_are_refused_by_the_parser() {
        for messages in [
            json!([{"role": "user", "content": "a", "name": 5}]),
            json!([{"role": 1, "content": "a"}]),
            json!([{"content": "a"}]),
            json!([{"role": "user", "content": 7}]),
        ] {
            let param = param_of(messages.clone());
            assert!(param.is_some_and(|p| p.starts_with("serde")), "{messages}");
        }
    }
}

//! Tool calls as text: the form a model family writes a call in, how a
//! conversation with tools and calls becomes template input; the
//! incremental reading of a generated call is `tool_call_reader`.
//!
//! Two forms are known: Hermes (`<tool_call>\n{"name": ..., "arguments":
//! {...}}\n</tool_call>`, as Qwen 2.5/3, SmolLM and most ChatML models are
//! trained on; text may come before the calls, several calls may follow
//! each other) and Llama 3's JSON (`{"name": ..., "parameters": {...}}` as
//! the whole answer, one call per turn). A template that never mentions
//! tools gets the Hermes form described in a system message, so that any
//! model can be given tools; the engine's grammar keeps the calls in form.

use serde::Serialize;
use serde_json::Value;

use super::ChatMessage;
use super::chat_template::python_json;

pub use super::tool_call_reader::{ParsedCall, ToolCallEvent, ToolCallReader};

/// How a model family writes its tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallFormat {
    Hermes,
    Llama3Json,
}

/// What a chat template does with tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateTools {
    /// It renders `tools` and `tool_calls` itself; the model writes calls
    /// in this form.
    Renders(ToolCallFormat),
    /// It never mentions tools: wgserve describes them in a system message
    /// and writes earlier calls and results into the text (Hermes form).
    Ignores,
    /// It uses a form wgserve does not read; the reason says which.
    Unsupported(&'static str),
}

impl TemplateTools {
    /// What the template `source` does with tools, from the markers each
    /// form's templates write.
    pub fn of_template(source: &str) -> Self {
        if source.contains("[TOOL_CALLS]") {
            TemplateTools::Unsupported("Mistral's [TOOL_CALLS] tool-call format is not supported yet")
        } else if source.contains("<tool_call>") {
            TemplateTools::Renders(ToolCallFormat::Hermes)
        } else if source.contains("<|python_tag|>") {
            TemplateTools::Renders(ToolCallFormat::Llama3Json)
        } else if source.contains("tools") || source.contains("tool_calls") {
            // A template that renders tools in a form of its own: the
            // common form is the best guess of what its model writes.
            TemplateTools::Renders(ToolCallFormat::Hermes)
        } else {
            TemplateTools::Ignores
        }
    }

    pub fn format(self) -> Option<ToolCallFormat> {
        match self {
            TemplateTools::Renders(format) => Some(format),
            TemplateTools::Ignores => Some(ToolCallFormat::Hermes),
            TemplateTools::Unsupported(_) => None,
        }
    }
}

impl ToolCallFormat {
    /// Text that opens each call (and, for Hermes, tells text from calls).
    pub fn call_open(self) -> &'static str {
        match self {
            ToolCallFormat::Hermes => "<tool_call>\n",
            ToolCallFormat::Llama3Json => "",
        }
    }

    pub fn call_close(self) -> &'static str {
        match self {
            ToolCallFormat::Hermes => "\n</tool_call>",
            ToolCallFormat::Llama3Json => "",
        }
    }

    /// What goes between two calls; `None` where the form has one call
    /// per turn.
    pub fn call_separator(self) -> Option<&'static str> {
        match self {
            ToolCallFormat::Hermes => Some("\n"),
            ToolCallFormat::Llama3Json => None,
        }
    }

    /// The key the arguments object is written under.
    pub fn arguments_key(self) -> &'static str {
        match self {
            ToolCallFormat::Hermes => "arguments",
            ToolCallFormat::Llama3Json => "parameters",
        }
    }

    /// Whether the model may write text before its calls (Llama 3's
    /// answer is either text or a call).
    pub fn text_before_calls(self) -> bool {
        matches!(self, ToolCallFormat::Hermes)
    }

    /// The text that starts the first call: where the answer's text ends.
    pub fn trigger(self) -> &'static str {
        match self {
            ToolCallFormat::Hermes => "<tool_call>",
            ToolCallFormat::Llama3Json => "{",
        }
    }

    /// A call's JSON up to its arguments: `{"name": "f", "arguments": `.
    /// Names are checked by the server against `[A-Za-z0-9_-]`, which
    /// needs no escaping.
    pub fn call_head(self, name: &str) -> String {
        format!("{{\"name\": \"{name}\", \"{}\": ", self.arguments_key())
    }

    /// One whole call as the model writes it.
    pub fn call_text(self, name: &str, arguments: &Value) -> String {
        let arguments = python_json(arguments);
        format!("{}{}{arguments}}}{}", self.call_open(), self.call_head(name), self.call_close())
    }
}

/// An earlier call of the assistant, as templates read it (transformers'
/// shape: `arguments` is the parsed object, not OpenAI's string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TemplateToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: TemplateFunction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TemplateFunction {
    pub name: String,
    pub arguments: Value,
}

/// The conversation as a template that ignores tools should see it: the
/// tools described in the system message, earlier calls and results
/// written in the Hermes form into ordinary turns (results as user turns,
/// so templates that insist on alternating roles accept them).
pub fn messages_without_tool_fields(messages: &[ChatMessage], tools: &[Value]) -> Vec<ChatMessage> {
    let format = ToolCallFormat::Hermes;
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    for message in messages {
        let mut content = message.content.clone();
        let role = match message.role.as_str() {
            "tool" => {
                content = format!("<tool_response>\n{content}\n</tool_response>");
                "user".to_string()
            }
            role => role.to_string(),
        };
        for call in message.tool_calls.iter().flatten() {
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(&format.call_text(&call.function.name, &call.function.arguments));
        }
        out.push(ChatMessage::new(role, content));
    }
    if !tools.is_empty() {
        let description = tools_system_text(tools);
        match out.first_mut() {
            Some(first) if first.role == "system" => {
                first.content = format!("{}\n\n{description}", first.content);
            }
            _ => out.insert(0, ChatMessage::new("system", description)),
        }
    }
    out
}

fn tools_system_text(tools: &[Value]) -> String {
    let mut text = String::from(
        "You can call functions to answer. Their signatures, one JSON object per line, are within <tools></tools>:\n<tools>\n",
    );
    for tool in tools {
        text.push_str(&python_json(tool));
        text.push('\n');
    }
    text.push_str(
        "</tools>\n\nTo call a function, write its name and a JSON object of arguments within <tool_call></tool_call>:\n\
         <tool_call>\n{\"name\": <function name>, \"arguments\": <arguments object>}\n</tool_call>",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_told_apart_by_their_markers() {
        assert_eq!(
            TemplateTools::of_template("{{ '<tool_call>' }}"),
            TemplateTools::Renders(ToolCallFormat::Hermes)
        );
        assert_eq!(
            TemplateTools::of_template("{% if tools %}<|python_tag|>{% endif %}"),
            TemplateTools::Renders(ToolCallFormat::Llama3Json)
        );
        assert_eq!(TemplateTools::of_template("{{ messages[0].content }}"), TemplateTools::Ignores);
        assert!(matches!(TemplateTools::of_template("[TOOL_CALLS]"), TemplateTools::Unsupported(_)));
    }

    #[test]
    fn a_template_without_tools_gets_them_in_the_system_message() {
        let call = TemplateToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: TemplateFunction { name: "f".into(), arguments: json!({"a": 1}) },
        };
        let messages = vec![
            ChatMessage::new("user", "hi"),
            ChatMessage { tool_calls: Some(vec![call]), ..ChatMessage::new("assistant", "") },
            ChatMessage { tool_call_id: Some("call_1".into()), ..ChatMessage::new("tool", "2") },
        ];
        let tools = [json!({"type": "function", "function": {"name": "f"}})];
        let out = messages_without_tool_fields(&messages, &tools);
        assert_eq!(out[0].role, "system");
        assert!(
            out[0]
                .content
                .contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"f\"}}\n</tools>")
        );
        assert_eq!(out[2].content, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>");
        assert_eq!(
            (out[3].role.as_str(), out[3].content.as_str()),
            ("user", "<tool_response>\n2\n</tool_response>")
        );
        assert!(out.iter().all(|m| m.tool_calls.is_none() && m.tool_call_id.is_none()));
    }
}

//! OpenAI request types shared by several routes, and their conversion to
//! what the text module takes.

use serde::Deserialize;

use crate::text::ChatMessage;

use super::error::ApiError;

/// Roles a chat message may have.
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

#[derive(Debug, Deserialize)]
pub struct ChatMessageParam {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// A string, or a list of parts of which only text is supported.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// Validated messages for the chat template: at least one, known roles,
/// text content only.
pub fn chat_messages(messages: &[ChatMessageParam]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("`messages` must contain at least one message", "messages"));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            if !ROLES.contains(&message.role.as_str()) {
                return Err(ApiError::invalid(
                    format!("unknown role `{}` (expected one of {})", message.role, ROLES.join(", ")),
                    format!("messages[{i}].role"),
                ));
            }
            let content = match &message.content {
                None => String::new(),
                Some(MessageContent::Text(text)) => text.clone(),
                Some(MessageContent::Parts(parts)) => text_of_parts(parts, i)?,
            };
            Ok(ChatMessage::new(message.role.as_str(), content))
        })
        .collect()
}

fn text_of_parts(parts: &[ContentPart], message_index: usize) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{message_index}].content[{j}]");
        match (part.kind.as_str(), &part.text) {
            ("text", Some(part_text)) => text.push_str(part_text),
            ("text", None) => return Err(ApiError::invalid("a text part needs `text`", param)),
            (kind, _) => {
                return Err(ApiError::invalid(
                    format!("content parts of type `{kind}` are not supported"),
                    param,
                ));
            }
        }
    }
    Ok(text)
}

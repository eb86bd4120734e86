//! OpenAI's API shapes: the request bodies as clients send them
//! ([`request`]), the chat messages validated for the template
//! ([`messages`]), and the typed response bodies of the completion routes
//! ([`response`]). Shapes only: no engine calls, no HTTP framing.

mod messages;
pub mod request;
pub mod response;

pub use messages::chat_messages;
pub use request::{ChatMessageParam, CompletionRequest, PromptInput};

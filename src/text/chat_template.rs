//! Chat template: the model's own Jinja template (GGUF
//! `tokenizer.chat_template` or `tokenizer_config.json`) rendered with
//! minijinja so that the text matches what Hugging Face `transformers`
//! renders (`apply_chat_template`).
//!
//! To match it this file sets up the environment the way transformers does:
//! `trim_blocks` and `lstrip_blocks` on, loop controls (`break`/`continue`),
//! Python string/dict methods (`.strip()`, `.items()`, ... through
//! minijinja-contrib's pycompat), `raise_exception`, `strftime_now`, and a
//! `tojson` that prints like Python's `json.dumps` (`", "` and `": "`
//! separators, no HTML escaping). It owns nothing else: which messages to
//! send is the server's business.
//!
//! Every render runs under the limits of [`super::template_limits`] (fuel,
//! recursion depth, output size), and `new` refuses a template that cannot
//! render a probe conversation within them.

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

use super::TextError;
use super::template_limits::{
    CappedWriter, LimitHit, MAX_OUTPUT_BYTES, MAX_RECURSION, fuel_for, probe_conversations,
};
use super::tool_calls::{TemplateToolCall, TemplateTools, messages_without_tool_fields};

const TEMPLATE_NAME: &str = "chat";

/// One message of a conversation, as the template sees it. The tool
/// fields are absent (not null) when unset: templates test `'tool_calls'
/// in message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<TemplateToolCall>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into(), tool_calls: None, tool_call_id: None }
    }
}

/// A compiled chat template with the special tokens it may refer to.
/// Cloning is cheap (the compiled template is shared), so a server can
/// move a copy onto a blocking thread to render.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    tools: TemplateTools,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source` and renders the probe conversations with it; a
    /// syntax error, or a template that fails its probe or hits a limit on
    /// it, is reported here, not at the first request.
    pub fn new(
        source: &str,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self, TextError> {
        let mut env = Environment::new();
        // transformers compiles templates with these two on; without them
        // block tags leave stray newlines and indentation in the prompt.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_recursion_limit(MAX_RECURSION);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.to_string()).map_err(template_error)?;
        let template = Self {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            tools: TemplateTools::of_template(source),
        };
        template.probe()?;
        Ok(template)
    }

    /// Renders the probe conversations: a limit hit on any is fatal; a
    /// refusal (`raise_exception`, e.g. of a system role) is fine as long
    /// as one probe renders.
    fn probe(&self) -> Result<(), TextError> {
        let mut first_error = None;
        for messages in probe_conversations() {
            match self.render_measured(&messages, true) {
                Ok(_) => return Ok(()),
                Err(e @ RenderError::Limit(_)) => return Err(e.into_probe_error()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error
            .map_or_else(|| TextError::Template("no probe rendered".into()), |e| e.into_probe_error()))
    }

    /// The prompt text for `messages`; `add_generation_prompt` appends the
    /// header that starts the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TextError> {
        self.render_measured(messages, add_generation_prompt).map(|r| r.text).map_err(TextError::from)
    }

    /// What this template does with tools.
    pub fn tools(&self) -> TemplateTools {
        self.tools
    }

    /// The prompt for a conversation that may carry tools (the function
    /// definitions, OpenAI's `tools` entries) and earlier calls: a template
    /// that knows tools gets them as transformers passes them (`tools`, and
    /// `tool_calls` with parsed arguments); one that ignores them gets them
    /// written into its messages.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        let has_tool_fields = messages.iter().any(|m| m.tool_calls.is_some() || m.tool_call_id.is_some());
        match self.tools {
            _ if tools.is_empty() && !has_tool_fields => self.render(messages, add_generation_prompt),
            TemplateTools::Ignores => {
                self.render(&messages_without_tool_fields(messages, tools), add_generation_prompt)
            }
            TemplateTools::Renders(_) | TemplateTools::Unsupported(_) => {
                let mut kwargs = serde_json::Map::new();
                if !tools.is_empty() {
                    kwargs.insert("tools".into(), serde_json::Value::Array(tools.to_vec()));
                }
                self.render_with(messages, add_generation_prompt, &kwargs)
            }
        }
    }

    /// [`ChatTemplate::render`] with extra template variables, as
    /// transformers' `apply_chat_template(**kwargs)` passes them (Qwen 3's
    /// `enable_thinking`, a `date_string`). They cannot replace `messages`,
    /// `add_generation_prompt` or the special tokens.
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TextError> {
        self.render_inner(messages, add_generation_prompt, kwargs).map(|r| r.text).map_err(TextError::from)
    }

    /// [`ChatTemplate::render`] with the fuel it used, to measure real
    /// templates against the limits.
    pub fn render_measured(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Rendered, RenderError> {
        self.render_inner(messages, add_generation_prompt, &serde_json::Map::new())
    }

    fn render_inner(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Rendered, RenderError> {
        // The fuel depends on the conversation; a clone of the environment
        // shares the compiled template (an `Arc`), so it costs little.
        let fuel = fuel_for(messages.len());
        let mut env = self.env.clone();
        env.set_fuel(Some(fuel));
        let template = env.get_template(TEMPLATE_NAME).map_err(RenderError::Template)?;
        let mut out = CappedWriter::new(MAX_OUTPUT_BYTES);
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            ..Value::from_serialize(kwargs)
        };
        let fuel_used = match template.render_captured_to(context, &mut out) {
            Ok(captured) => captured.state().fuel_levels().map_or(0, |(used, _)| used),
            Err(e) => {
                return Err(match LimitHit::of(&e, fuel, out.overflowed) {
                    Some(limit) => RenderError::Limit(limit),
                    None => RenderError::Template(e),
                });
            }
        };
        let text = String::from_utf8(out.bytes)
            .map_err(|e| RenderError::Template(Error::new(ErrorKind::BadSerialization, e.to_string())))?;
        Ok(Rendered { text, fuel_used })
    }
}

/// A rendered prompt and the fuel (minijinja instructions) it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub fuel_used: u64,
}

/// Why a render failed: the template's own error, or one of our limits.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0:#}")]
    Template(Error),
    #[error("{}", .0.message())]
    Limit(LimitHit),
}

impl RenderError {
    /// At load the message says that the probe failed, which is not the
    /// operator's conversation but ours.
    fn into_probe_error(self) -> TextError {
        let why = match TextError::from(self) {
            TextError::Template(msg) => msg,
            other => other.to_string(),
        };
        TextError::Template(format!("fails its probe conversation (system, user, assistant, user): {why}"))
    }
}

impl From<RenderError> for TextError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Template(e) => template_error(e),
            RenderError::Limit(limit) => TextError::Template(limit.message()),
        }
    }
}

fn template_error(e: Error) -> TextError {
    // `{:#}` adds the template line where rendering failed.
    TextError::Template(match e.detail() {
        Some(detail) if e.kind() == ErrorKind::InvalidOperation => detail.to_string(),
        _ => format!("{e:#}"),
    })
}

/// `raise_exception(msg)`: templates use it to reject bad conversations
/// (e.g. roles that do not alternate); the message reaches the client.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `x | tojson(indent=N)` printed like Python's `json.dumps`, which is what
/// transformers' `tojson` calls. Other keyword arguments (`ensure_ascii`,
/// ...) are accepted and ignored: their Python defaults already hold.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let json =
        serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_python_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

/// `value` as Python's `json.dumps` prints it (`", "` and `": "`), the
/// spacing models see in their templates and write in their calls.
pub fn python_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_python_json(value, None, 0, &mut out);
    out
}

fn write_python_json(v: &serde_json::Value, indent: Option<usize>, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    // Python: ", " between items without indent, "," plus a newline with it.
    let separator = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                write_python_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                out.push_str(&J::String(key.clone()).to_string());
                out.push_str(": ");
                write_python_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        // Scalars, "[]" and "{}" print the same as serde_json's compact form.
        other => out.push_str(&other.to_string()),
    }
}

/// `strftime_now(format)`: the current UTC date (Llama 3 templates put it in
/// the system prompt). Supports %Y %m %d %B %b %H %M %S %%.
fn strftime_now(format: String) -> Result<Value, Error> {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Ok(Value::from(format_utc(secs, &format)))
}

fn format_utc(unix_secs: u64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (year, month, day) = civil_from_days((unix_secs / 86_400) as i64);
    let secs_of_day = unix_secs % 86_400;
    let month_name = MONTHS[(month - 1) as usize % 12];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('H') => out.push_str(&format!("{:02}", secs_of_day / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs_of_day / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs_of_day % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31); Howard
/// Hinnant's `civil_from_days`, exact for the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as its GGUF carries it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_smollm2_with_and_without_system() -> Result<(), TextError> {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>")?;
        let with_system = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
        assert_eq!(
            t.render(&with_system, true)?,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let without = [ChatMessage::new("user", "Hi")];
        assert_eq!(
            t.render(&without, false)?,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
        Ok(())
    }

    #[test]
    fn trims_blocks_like_transformers_and_knows_python_methods() -> Result<(), TextError> {
        let source = "{{ bos_token }}\n{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content.strip() }}]\n  {% endif %}\n{% if loop.index > 1 %}{% break %}{% endif %}\n{% endfor %}";
        let t = ChatTemplate::new(source, "<s>", "</s>")?;
        let msgs =
            [ChatMessage::new("user", "  a  "), ChatMessage::new("user", "b"), ChatMessage::new("user", "c")];
        assert_eq!(t.render(&msgs, false)?, "<s>\n[a]\n[b]\n");
        Ok(())
    }

    #[test]
    fn raise_exception_becomes_an_error_with_its_message() -> Result<(), TextError> {
        let source = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}ok";
        let t = ChatTemplate::new(source, "", "")?;
        match t.render(&[ChatMessage::new("assistant", "x")], false) {
            Err(TextError::Template(msg)) => {
                assert!(msg.contains("Conversation roles must alternate"), "{msg}")
            }
            other => panic!("expected a template error, got {other:?}"),
        }
        assert_eq!(t.render(&[ChatMessage::new("user", "x")], false)?, "ok");
        Ok(())
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(TextError::Template(_))));
    }

    #[test]
    fn tojson_prints_like_python() -> Result<(), TextError> {
        let t = ChatTemplate::new(
            "{{ messages | tojson }}|{{ messages[0] | tojson(indent=2, ensure_ascii=False) }}",
            "",
            "",
        )?;
        let out = t.render(&[ChatMessage::new("user", "<b> & \"é\"")], false)?;
        assert_eq!(
            out,
            "[{\"role\": \"user\", \"content\": \"<b> & \\\"é\\\"\"}]|{\n  \"role\": \"user\",\n  \"content\": \"<b> & \\\"é\\\"\"\n}"
        );
        Ok(())
    }

    #[test]
    fn dates_format_like_strftime() {
        // 2024-07-04 12:34:56 UTC
        assert_eq!(format_utc(1_720_096_496, "%d %b %Y %H:%M:%S %B %m %%"), "04 Jul 2024 12:34:56 July 07 %");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}

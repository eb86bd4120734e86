//! Reading a generation's text back into answer text and tool calls, as it
//! grows: what streaming needs (content deltas, a call's start, its
//! arguments in fragments) and what a whole answer needs (the calls). The
//! forms are `tool_calls::ToolCallFormat`'s; the engine's grammar keeps
//! the text in form, and the reading never fails on text that strays.

use super::tool_calls::ToolCallFormat;

/// What the reader found new in the text since the last call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCallEvent {
    /// Answer text (never a part of a call).
    Content(String),
    /// Call `index` begins; its name is complete.
    CallStart { index: usize, name: String },
    /// More of call `index`'s arguments JSON.
    Arguments { index: usize, fragment: String },
}

/// A call read from the text; `complete` once its closing text was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    pub arguments: String,
    pub complete: bool,
}

/// Reads a generation's text as it grows into answer text and calls,
/// never holding back more than a possible start of a call. It relies on
/// the engine's grammar for the form; text that strays from it ends the
/// reading (what was read stands), it never fails.
#[derive(Debug, Clone)]
pub struct ToolCallReader {
    format: ToolCallFormat,
    text: String,
    content_sent: usize,
    /// Per call begun: bytes of arguments sent.
    arguments_sent: Vec<usize>,
}

impl ToolCallReader {
    pub fn new(format: ToolCallFormat) -> Self {
        Self { format, text: String::new(), content_sent: 0, arguments_sent: Vec::new() }
    }

    /// Takes the next piece of generated text.
    pub fn push(&mut self, delta: &str) -> Vec<ToolCallEvent> {
        self.text.push_str(delta);
        self.events(false)
    }

    /// The generation ended: text held back as a possible call start is
    /// answer text after all.
    pub fn finish(&mut self) -> Vec<ToolCallEvent> {
        self.events(true)
    }

    /// How many calls have begun (their names are complete).
    pub fn calls_started(&self) -> usize {
        self.arguments_sent.len()
    }

    /// The answer text and the calls read so far.
    pub fn parsed(&self, finished: bool) -> (String, Vec<ParsedCall>) {
        let scan = scan(self.format, &self.text, finished);
        (scan.content.to_string(), scan.calls.into_iter().filter_map(ScannedCall::parsed).collect())
    }

    fn events(&mut self, finished: bool) -> Vec<ToolCallEvent> {
        let scan = scan(self.format, &self.text, finished);
        let mut events = Vec::new();
        if scan.content.len() > self.content_sent {
            events.push(ToolCallEvent::Content(scan.content[self.content_sent..].to_string()));
            self.content_sent = scan.content.len();
        }
        for (index, call) in scan.calls.iter().enumerate() {
            let Some(name) = call.name else { break };
            if index == self.arguments_sent.len() {
                events.push(ToolCallEvent::CallStart { index, name: name.to_string() });
                self.arguments_sent.push(0);
            }
            let sent = self.arguments_sent[index];
            if call.arguments.len() > sent {
                events.push(ToolCallEvent::Arguments { index, fragment: call.arguments[sent..].to_string() });
                self.arguments_sent[index] = call.arguments.len();
            }
        }
        events
    }
}

struct Scan<'a> {
    content: &'a str,
    calls: Vec<ScannedCall<'a>>,
}

struct ScannedCall<'a> {
    name: Option<&'a str>,
    arguments: &'a str,
    complete: bool,
}

impl ScannedCall<'_> {
    fn parsed(self) -> Option<ParsedCall> {
        Some(ParsedCall {
            name: self.name?.to_string(),
            arguments: self.arguments.to_string(),
            complete: self.complete,
        })
    }
}

/// Where `literal` stands at `pos` of `text`.
enum Literal {
    /// All of it; the position after it.
    Whole(usize),
    /// The text ends inside it.
    Partial,
    Mismatch,
}

fn expect(text: &str, pos: usize, literal: &str) -> Literal {
    let rest = &text[pos..];
    if rest.starts_with(literal) {
        Literal::Whole(pos + literal.len())
    } else if literal.starts_with(rest) {
        Literal::Partial
    } else {
        Literal::Mismatch
    }
}

fn scan(format: ToolCallFormat, text: &str, finished: bool) -> Scan<'_> {
    let trigger = format.trigger();
    let calls_at =
        if format.text_before_calls() { text.find(trigger) } else { text.starts_with(trigger).then_some(0) };
    let Some(calls_at) = calls_at else {
        let held = if finished { 0 } else { held_back(format, text) };
        return Scan { content: &text[..text.len() - held], calls: Vec::new() };
    };
    let mut calls = Vec::new();
    let mut pos = calls_at;
    loop {
        let (call, next) = scan_call(format, text, pos);
        let complete = call.as_ref().is_some_and(|c| c.complete);
        calls.extend(call);
        let (Some(next), true) = (next, complete) else { break };
        let Some(separator) = format.call_separator() else { break };
        match expect(text, next, separator) {
            Literal::Whole(after) => pos = after,
            Literal::Partial | Literal::Mismatch => break,
        }
    }
    Scan { content: &text[..calls_at], calls }
}

/// Bytes at the end of `text` that may be the start of a call.
fn held_back(format: ToolCallFormat, text: &str) -> usize {
    let trigger = format.trigger();
    if !format.text_before_calls() {
        return if text.is_empty() { 0 } else { usize::from(trigger.starts_with(text)) * text.len() };
    }
    (1..trigger.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && trigger.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

/// One call from `pos`: what of it is there, and where the text after it
/// starts once it is complete.
fn scan_call(format: ToolCallFormat, text: &str, pos: usize) -> (Option<ScannedCall<'_>>, Option<usize>) {
    let Literal::Whole(pos) = expect(text, pos, format.call_open()) else { return (None, None) };
    let Literal::Whole(name_at) = expect(text, pos, "{\"name\": \"") else { return (None, None) };
    let Some(name_len) = text[name_at..].find('"') else { return (None, None) };
    let name = &text[name_at..name_at + name_len];
    let separator = format!(", \"{}\": ", format.arguments_key());
    let mut call = ScannedCall { name: Some(name), arguments: "", complete: false };
    let Literal::Whole(arguments_at) = expect(text, name_at + name_len + 1, &separator) else {
        return (Some(call), None);
    };
    let (arguments_end, whole) = json_extent(&text[arguments_at..]);
    call.arguments = &text[arguments_at..arguments_at + arguments_end];
    if !whole {
        return (Some(call), None);
    }
    let close = format!("}}{}", format.call_close());
    match expect(text, arguments_at + arguments_end, &close) {
        Literal::Whole(after) => {
            call.complete = true;
            (Some(call), Some(after))
        }
        Literal::Partial | Literal::Mismatch => (Some(call), None),
    }
}

/// The length of the JSON object or array at the start of `text` (all of
/// `text` if it is cut off) and whether it is whole.
fn json_extent(text: &str) -> (usize, bool) {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, byte) in text.bytes().enumerate() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return (i + 1, true);
                }
            }
            _ if depth == 0 => return (i, false),
            _ => {}
        }
    }
    (text.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_in_pieces(format: ToolCallFormat, text: &str, piece: usize) -> Vec<ToolCallEvent> {
        let mut reader = ToolCallReader::new(format);
        let mut events = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        for chunk in chars.chunks(piece) {
            events.extend(reader.push(&chunk.iter().collect::<String>()));
        }
        events.extend(reader.finish());
        events
    }

    /// Joins the events back into text, calls and arguments.
    fn reassemble(events: &[ToolCallEvent]) -> (String, Vec<(String, String)>) {
        let mut content = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        for event in events {
            match event {
                ToolCallEvent::Content(text) => content.push_str(text),
                ToolCallEvent::CallStart { index, name } => {
                    assert_eq!(*index, calls.len());
                    calls.push((name.clone(), String::new()));
                }
                ToolCallEvent::Arguments { index, fragment } => calls[*index].1.push_str(fragment),
            }
        }
        (content, calls)
    }

    #[test]
    fn hermes_text_then_two_calls_read_alike_in_any_pieces() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris \\\"}\", \"days\": [1, 2]}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>";
        for piece in [1, 2, 3, 7, 1000] {
            let (content, calls) = reassemble(&read_in_pieces(ToolCallFormat::Hermes, text, piece));
            assert_eq!(content, "Let me look.\n", "piece {piece}");
            assert_eq!(
                calls,
                vec![
                    ("get_weather".into(), "{\"city\": \"Paris \\\"}\", \"days\": [1, 2]}".into()),
                    ("time".into(), "{}".into())
                ],
                "piece {piece}"
            );
        }
        let mut reader = ToolCallReader::new(ToolCallFormat::Hermes);
        reader.push(text);
        let (_, calls) = reader.parsed(true);
        assert!(calls.iter().all(|c| c.complete));
    }

    #[test]
    fn text_that_only_looks_like_a_call_start_is_released() {
        let mut reader = ToolCallReader::new(ToolCallFormat::Hermes);
        assert_eq!(reader.push("a <tool"), vec![ToolCallEvent::Content("a ".into())]);
        assert_eq!(reader.push("box>"), vec![ToolCallEvent::Content("<toolbox>".into())]);
        assert_eq!(reader.push(" <"), vec![ToolCallEvent::Content(" ".into())]);
        assert_eq!(reader.finish(), vec![ToolCallEvent::Content("<".into())]);
    }

    #[test]
    fn a_cut_off_call_keeps_what_was_read() {
        let mut reader = ToolCallReader::new(ToolCallFormat::Hermes);
        reader.push("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1, ");
        let (content, calls) = reader.parsed(true);
        assert_eq!(content, "");
        assert_eq!(
            calls,
            vec![ParsedCall { name: "f".into(), arguments: "{\"a\": [1, ".into(), complete: false }]
        );
    }

    #[test]
    fn llama3_is_text_or_one_call() {
        let call = "{\"name\": \"f\", \"parameters\": {\"x\": 1}}";
        let (content, calls) = reassemble(&read_in_pieces(ToolCallFormat::Llama3Json, call, 2));
        assert_eq!((content.as_str(), calls), ("", vec![("f".into(), "{\"x\": 1}".into())]));
        let (content, calls) = reassemble(&read_in_pieces(ToolCallFormat::Llama3Json, "Hi {there}", 1));
        assert_eq!((content.as_str(), calls.len()), ("Hi {there}", 0));
    }

    #[test]
    fn call_text_is_what_the_reader_reads() {
        for format in [ToolCallFormat::Hermes, ToolCallFormat::Llama3Json] {
            let arguments = json!({"q": "x}y", "n": [1, {"a": null}]});
            let mut reader = ToolCallReader::new(format);
            reader.push(&format.call_text("search", &arguments));
            let (_, calls) = reader.parsed(true);
            assert_eq!(calls.len(), 1);
            assert!(calls[0].complete);
            let parsed: serde_json::Value = serde_json::from_str(&calls[0].arguments).unwrap();
            assert_eq!(parsed, arguments);
        }
    }
}

//! Structured output: what a request constrains its text to (a JSON
//! schema, any JSON object, a regex, a choice of strings, a Lark grammar),
//! compiled by llguidance against the model's vocabulary into a matcher
//! that says, before each token is sampled, which tokens keep the output
//! valid. The mask applies to that request's logits at sampling, so an
//! unconstrained request in the same batch pays nothing, and the output is
//! valid by construction rather than parsed and hoped for.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};

use crate::text::Tokenizer;
use crate::text::tool_calls::ToolCallFormat;

/// What a request's output must be.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputConstraint {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A JSON value that validates against this schema.
    JsonSchema(Value),
    /// Text the whole of which matches this regex.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// Text of this Lark grammar (llguidance's dialect, which also reads
    /// the GBNF of llama.cpp's grammars).
    Grammar(String),
    /// Calls of the request's tools in the model family's form.
    ToolCalls(ToolGrammar),
}

/// What tool calls a request allows, in which form.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolGrammar {
    pub format: ToolCallFormat,
    pub functions: Vec<FunctionSpec>,
    pub mode: ToolMode,
}

/// A callable function: its name (`[A-Za-z0-9_-]`, checked by the server)
/// and the JSON schema of its arguments object.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub name: String,
    pub parameters: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolMode {
    /// Text, or (where the form allows, after some text) calls; once a
    /// call starts it is held to the form.
    Auto { parallel: bool },
    /// At least one call (exactly one unless `parallel`), nothing else.
    Required { parallel: bool },
    /// One call of `functions[index]`.
    Named(usize),
}

impl ToolGrammar {
    /// The grammar in llguidance's Lark: one rule per function whose
    /// arguments are its schema (`%json`), calls in the family's
    /// literals, and for `Auto` free text that cannot contain the start
    /// of a call (so a call, once begun, is parsed as one).
    fn lark(&self) -> String {
        let format = self.format;
        let mut rules = Vec::new();
        let quote = |text: &str| Value::String(text.to_string()).to_string();
        for (i, function) in self.functions.iter().enumerate() {
            let head = quote(&format.call_head(&function.name));
            rules.push(format!("body_{i}: {head} args_{i} \"}}\""));
            rules.push(format!("args_{i}: %json {}", one_line(function.parameters.clone())));
        }
        let bodies: Vec<String> = (0..self.functions.len()).map(|i| format!("body_{i}")).collect();
        rules.push(format!("body: {}", bodies.join(" | ")));
        let open = format.call_open();
        let close = quote(format.call_close());
        let call_of = |body: &str| match open {
            "" => format!("{body} {close}"),
            open => format!("{} {body} {close}", quote(open)),
        };
        rules.push(format!("call: {}", call_of("body")));
        let more_calls = |parallel: bool| match format.call_separator() {
            Some(separator) if parallel => format!("({} call)*", quote(separator)),
            _ => String::new(),
        };
        let start = match self.mode {
            ToolMode::Named(index) => call_of(&format!("body_{index}")),
            ToolMode::Required { parallel } => format!("call {}", more_calls(parallel)),
            ToolMode::Auto { parallel } => {
                let trigger = format.trigger();
                let escaped_trigger = escape_regex(trigger);
                if format.text_before_calls() {
                    let rest_of_open = quote(open.strip_prefix(trigger).unwrap_or(open));
                    rules.push(format!("FREE: /(?s:.*)/ & ~/(?s:.*){escaped_trigger}(?s:.*)/"));
                    rules.push(format!("before_calls[lazy]: /(?s:.*){escaped_trigger}/"));
                    format!("FREE | before_calls {rest_of_open} body {close} {}", more_calls(parallel))
                } else {
                    // The answer is text or a call: text may not begin
                    // the way a call does.
                    rules.push(format!("FREE: /(?s:.*)/ & ~/{escaped_trigger}(?s:.*)/"));
                    "FREE | call".to_string()
                }
            }
        };
        rules.insert(0, format!("start: {start}"));
        rules.join("\n")
    }
}

impl OutputConstraint {
    fn grammar(&self) -> TopLevelGrammar {
        match self {
            OutputConstraint::JsonObject => {
                TopLevelGrammar::from_json_schema(one_line(json!({"type": "object"})))
            }
            OutputConstraint::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(one_line(schema.clone()))
            }
            OutputConstraint::Regex(regex) => TopLevelGrammar::from_regex(regex),
            OutputConstraint::Choice(choices) => {
                let alternatives: Vec<String> = choices.iter().map(|c| escape_regex(c)).collect();
                TopLevelGrammar::from_regex(&alternatives.join("|"))
            }
            OutputConstraint::Grammar(lark) => TopLevelGrammar::from_lark(lark.clone()),
            OutputConstraint::ToolCalls(tools) => TopLevelGrammar::from_lark(tools.lark()),
        }
    }
}

/// JSON on one line, `{"a": 1, "b": [2, 3]}`, unless the schema asks
/// otherwise (llguidance's `x-guidance` options): free whitespace would let
/// a sampled output spend its tokens on blank lines and end cut off.
fn one_line(mut schema: Value) -> Value {
    if let Value::Object(fields) = &mut schema
        && !fields.contains_key("x-guidance")
    {
        let options = json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
        fields.insert("x-guidance".into(), options);
    }
    schema
}

/// `text` as a regex that matches exactly it.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    escaped.push('(');
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push(')');
    escaped
}

/// Compiles constraints against one model's vocabulary; made once at load.
pub struct GrammarCompiler {
    factory: Arc<ParserFactory>,
}

/// llguidance's view of our tokenizer: each id's bytes in a trie, and
/// text -> ids through our own tokenizer.
struct VocabEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie
            .tokenize_with_greedy_fallback(s, |text| self.tokenizer.encode(text, false).unwrap_or_default())
    }
}

impl GrammarCompiler {
    /// For a model of `num_ids` output rows whose generation ends on
    /// `end_ids` (EOS first); an error says why this tokenizer cannot
    /// carry constraints.
    pub fn new(tokenizer: &Tokenizer, num_ids: usize, end_ids: &[u32]) -> Result<Self, String> {
        let bytes = tokenizer.token_bytes(num_ids).map_err(|e| e.to_string())?;
        let Some(&eos) = end_ids.first() else {
            return Err("the model has no end-of-generation token to end a constrained output".into());
        };
        let info = TokRxInfo { tok_bos: tokenizer.bos_id(), ..TokRxInfo::new(num_ids as u32, eos) };
        let end_ids: Vec<u32> = end_ids.iter().copied().filter(|&id| (id as usize) < num_ids).collect();
        // The trie builder asserts on what it does not expect; a stranger's
        // vocabulary must not take the server down with it.
        let trie = catch_unwind(AssertUnwindSafe(|| TokTrie::from(&info, &bytes).with_eos_tokens(&end_ids)))
            .map_err(|_| "the vocabulary does not make a token trie".to_string())?;
        let env: TokEnv = Arc::new(VocabEnv { trie, tokenizer: tokenizer.clone() });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Self { factory: Arc::new(factory) })
    }

    /// The matcher of one output, or the reason the constraint does not
    /// compile (a 400 for the client).
    pub fn compile(&self, constraint: &OutputConstraint) -> Result<Constraint, String> {
        let parser = self.factory.create_parser(constraint.grammar()).map_err(|e| e.to_string())?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(error) => Err(error),
            None => Ok(Constraint { matcher, prepared: None }),
        }
    }
}

/// One output's place in its grammar.
pub struct Constraint {
    matcher: Matcher,
    /// The mask of the next token, computed ahead while the device runs
    /// the step that produces its logits.
    prepared: Option<Result<SimpleVob, String>>,
}

impl Clone for Constraint {
    /// Each choice of `n` walks its own way through the grammar.
    fn clone(&self) -> Self {
        Self { matcher: self.matcher.deep_clone(), prepared: None }
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").field("stopped", &self.matcher.is_stopped()).finish()
    }
}

impl Constraint {
    /// Sets the logits of the tokens the grammar does not allow next to
    /// -inf; ids past the mask (none, for a mask of the model's rows) too.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let allowed = match self.prepared.take() {
            Some(prepared) => prepared?,
            None => self.allowed_next()?,
        };
        for (id, logit) in logits.iter_mut().enumerate() {
            if id >= allowed.len() || !allowed.is_allowed(id as TokenId) {
                *logit = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Computes the next mask now (on another thread while the device
    /// runs the step), for `mask` to apply; an error waits there too.
    pub fn prepare_mask(&mut self) {
        let allowed = catch_unwind(AssertUnwindSafe(|| self.allowed_next()))
            .unwrap_or_else(|_| Err("the grammar engine panicked computing a mask".into()));
        self.prepared = Some(allowed);
    }

    fn allowed_next(&mut self) -> Result<SimpleVob, String> {
        // A grammar that has just completed stops the parser while the
        // mask is computed; the output may then only end.
        self.matcher.compute_mask_or_eos().map_err(|e| e.to_string())
    }

    /// Moves past the sampled token.
    pub fn consume(&mut self, id: u32) -> Result<(), String> {
        self.prepared = None;
        self.matcher.consume_token(id).map_err(|e| e.to_string())
    }

    /// The grammar is complete and allows nothing more.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_matched_literally() {
        assert_eq!(escape_regex("a.b"), r"(a\.b)");
        assert_eq!(escape_regex("(x|y)*"), r"(\(x\|y\)\*)");
    }
}

//! Module boundaries (DESIGN.md, STYLE.md): `server -> engine -> model ->
//! gpu`, with `formats`, `text` and `config` as leaves. Reads every
//! `src/**/*.rs`, resolves each `crate::` path and each `super::` chain that
//! leaves its top-level module, and fails when a module reaches a layer it
//! may not use. Also keeps wgpu out of the engine and the leaves, and HTTP
//! (hyper) out of everything but the server.
//!
//! A small lexer (comments, strings, chars, raw strings skipped) rather than
//! `grep`, so that a path in a doc comment or an error message does not count
//! and a grouped `use crate::{a, b}` does.

use std::fmt;
use std::path::{Path, PathBuf};

/// What a top-level module may use of ours.
enum Uses {
    Only(&'static [&'static str]),
}

struct Layer {
    module: &'static str,
    uses: Uses,
    /// External crates it must not name.
    banned_crates: &'static [&'static str],
}

/// Each allow-list is "everything below me"; `main.rs`, `lib.rs` and
/// `src/bin` are the crate root and may use anything.
const LAYERS: &[Layer] = &[
    // The server reaches the engine only through its handle; the model is
    // loaded on the binary side (`src/cli/serve.rs`).
    Layer {
        module: "server",
        uses: Uses::Only(&["engine", "formats", "text", "config"]),
        banned_crates: &["wgpu"],
    },
    Layer {
        module: "engine",
        uses: Uses::Only(&["model", "formats", "text", "config"]),
        banned_crates: &["wgpu", "hyper"],
    },
    Layer {
        module: "model",
        uses: Uses::Only(&["gpu", "formats", "text", "config"]),
        banned_crates: &["hyper"],
    },
    Layer { module: "gpu", uses: Uses::Only(&["formats", "config"]), banned_crates: &["hyper"] },
    Layer { module: "formats", uses: Uses::Only(&[]), banned_crates: &["wgpu", "hyper"] },
    Layer { module: "text", uses: Uses::Only(&[]), banned_crates: &["wgpu", "hyper"] },
    Layer { module: "config", uses: Uses::Only(&[]), banned_crates: &["hyper"] },
];

/// What the engine may use of `model`: the `CausalLm` trait and its batch,
/// never a decoder architecture (so that adding one touches no engine
/// code). `bert` is the embedding worker's one encoder, until encoders get
/// a trait of their own.
const ENGINE_MODEL_API: &[&str] = &["causal_lm", "batch", "ModelError", "bert"];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    path: String,
    why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: `{}`: {}", self.file, self.line, self.path, self.why)
    }
}

/// Rust tokens that matter for paths; everything else is `Other`.
struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: usize,
    tokens: Vec<Token>,
}

impl Lexer {
    fn tokenize(source: &str) -> Vec<Token> {
        let mut lexer = Lexer { chars: source.chars().collect(), at: 0, line: 1, tokens: Vec::new() };
        while lexer.at < lexer.chars.len() {
            lexer.step();
        }
        lexer.tokens
    }

    fn peek(&self, ahead: usize) -> char {
        self.chars.get(self.at + ahead).copied().unwrap_or('\0')
    }

    fn bump(&mut self) {
        if self.peek(0) == '\n' {
            self.line += 1;
        }
        self.at += 1;
    }

    fn push(&mut self, tok: Tok, line: usize) {
        self.tokens.push(Token { tok, line });
    }

    fn step(&mut self) {
        let (c, line) = (self.peek(0), self.line);
        match c {
            '/' if self.peek(1) == '/' => {
                while self.at < self.chars.len() && self.peek(0) != '\n' {
                    self.bump();
                }
            }
            '/' if self.peek(1) == '*' => self.block_comment(),
            '"' => self.string(0),
            '\'' => self.quote(),
            ':' if self.peek(1) == ':' => {
                self.at += 2;
                self.push(Tok::PathSep, line);
            }
            '{' | '}' | ',' => {
                self.bump();
                self.push(
                    match c {
                        '{' => Tok::Open,
                        '}' => Tok::Close,
                        _ => Tok::Comma,
                    },
                    line,
                );
            }
            c if c.is_alphabetic() || c == '_' => self.ident(),
            // Digits with their suffix (`1u32`), so a suffix is not an ident.
            c if c.is_ascii_digit() => {
                while self.peek(0).is_alphanumeric() || self.peek(0) == '_' {
                    self.bump();
                }
                self.push(Tok::Other, line);
            }
            c if c.is_whitespace() => self.bump(),
            _ => {
                self.bump();
                self.push(Tok::Other, line);
            }
        }
    }

    fn block_comment(&mut self) {
        // Block comments nest in Rust.
        let mut depth = 0;
        while self.at < self.chars.len() {
            if self.peek(0) == '/' && self.peek(1) == '*' {
                depth += 1;
                self.at += 2;
            } else if self.peek(0) == '*' && self.peek(1) == '/' {
                depth -= 1;
                self.at += 2;
                if depth == 0 {
                    return;
                }
            } else {
                self.bump();
            }
        }
    }

    /// A string starting at the `"`; `hashes` > 0 means a raw string.
    fn string(&mut self, hashes: usize) {
        let line = self.line;
        self.bump();
        while self.at < self.chars.len() {
            match self.peek(0) {
                '\\' if hashes == 0 => {
                    self.bump();
                    self.bump();
                }
                '"' if (1..=hashes).all(|k| self.peek(k) == '#') => {
                    self.at += 1 + hashes;
                    break;
                }
                _ => self.bump(),
            }
        }
        self.push(Tok::Other, line);
    }

    /// A char literal (`'{'`, `'\''`, `'\u{7f}'`) or a lifetime (`'a`).
    fn quote(&mut self) {
        let line = self.line;
        if self.peek(1) == '\\' {
            self.at += 3;
            while self.at < self.chars.len() && self.peek(0) != '\'' {
                self.bump();
            }
            self.bump();
        } else if self.peek(2) == '\'' {
            self.bump();
            self.bump();
            self.bump();
        } else {
            // A lifetime: its name lexes as an ident, which names no module.
            self.bump();
        }
        self.push(Tok::Other, line);
    }

    fn ident(&mut self) {
        let (start, line) = (self.at, self.line);
        while self.peek(0).is_alphanumeric() || self.peek(0) == '_' {
            self.bump();
        }
        let word: String = self.chars[start..self.at].iter().collect();
        let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
        let string_prefix = raw_prefix || matches!(word.as_str(), "b" | "c");
        if string_prefix && self.peek(0) == '"' {
            return self.string(0);
        }
        if raw_prefix && self.peek(0) == '#' {
            let hashes = (0..).take_while(|&k| self.peek(k) == '#').count();
            if self.peek(hashes) == '"' {
                self.at += hashes;
                return self.string(hashes);
            }
            if word == "r" {
                // A raw identifier, `r#type`.
                self.bump();
                return self.ident();
            }
        }
        self.push(Tok::Ident(word), line);
    }
}

/// The module path a library file defines: `src/gpu/kernels/mod.rs` ->
/// `gpu::kernels`; `None` for the crate roots (`lib.rs`, `main.rs`,
/// `src/bin`) and for the modules of the binary (`bin_modules`, declared
/// in `main.rs`): the edge may use anything.
fn module_path(rel_path: &str, bin_modules: &[String]) -> Option<Vec<String>> {
    let inner = rel_path.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut parts: Vec<String> = inner.split('/').map(str::to_string).collect();
    let root = parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main");
    if root || parts[0] == "bin" || bin_modules.contains(&parts[0]) {
        return None;
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(word)) => Some(word),
        _ => None,
    }
}

fn is(tokens: &[Token], i: usize, tok: &Tok) -> bool {
    tokens.get(i).is_some_and(|t| &t.tok == tok)
}

/// `a::b::c` starting at `i`, for messages.
fn path_text(tokens: &[Token], mut i: usize) -> String {
    let mut text = String::new();
    while let Some(word) = ident(tokens, i) {
        text.push_str(word);
        if !(is(tokens, i + 1, &Tok::PathSep) && ident(tokens, i + 2).is_some()) {
            break;
        }
        text.push_str("::");
        i += 2;
    }
    text
}

/// A path that reaches the crate root: the top-level module it names, where
/// that name sits, and the path as written.
struct RootPath {
    top: String,
    line: usize,
    text: String,
}

/// The first names of a `{a::x, b::{y, z}}` group opening at `open`.
fn group_heads(tokens: &[Token], open: usize, prefix: &str, out: &mut Vec<RootPath>) {
    let mut depth = 0;
    for i in open..tokens.len() {
        match tokens[i].tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            _ => {}
        }
        let head = depth == 1 && (is(tokens, i, &Tok::Open) || is(tokens, i, &Tok::Comma));
        if let (true, Some(word)) = (head, ident(tokens, i + 1)) {
            let text = format!("{prefix}{}", path_text(tokens, i + 1));
            out.push(RootPath { top: word.to_string(), line: tokens[i + 1].line, text });
        }
    }
}

/// Every path in `tokens` that resolves to the crate root, with the top-level
/// module it enters. `module` is the file's own module path; inline `mod x {`
/// blocks deepen it for `super::`.
fn root_paths(tokens: &[Token], module: &[String]) -> Vec<RootPath> {
    let mut out = Vec::new();
    let mut scope: Vec<String> = module.to_vec();
    // (brace depth inside the inline module, its name)
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0;
    for i in 0..tokens.len() {
        match tokens[i].tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                if inline.last() == Some(&depth) {
                    inline.pop();
                    scope.pop();
                }
                depth -= 1;
            }
            _ => {}
        }
        if ident(tokens, i) == Some("mod")
            && let Some(name) = ident(tokens, i + 1)
            && is(tokens, i + 2, &Tok::Open)
        {
            scope.push(name.to_string());
            inline.push(depth + 1);
        }
        let after_sep = i > 0 && is(tokens, i - 1, &Tok::PathSep);
        let (base, next, prefix) = match ident(tokens, i) {
            Some("crate") if !after_sep && is(tokens, i + 1, &Tok::PathSep) => {
                (Vec::new(), i + 2, "crate::".to_string())
            }
            Some("super") if !after_sep => {
                let mut base = scope.clone();
                let mut j = i;
                let mut prefix = String::new();
                while ident(tokens, j) == Some("super") && is(tokens, j + 1, &Tok::PathSep) {
                    if base.pop().is_none() {
                        break;
                    }
                    prefix.push_str("super::");
                    j += 2;
                }
                (base, j, prefix)
            }
            _ => continue,
        };
        // A path still inside some top-level module stays in its layer.
        if !base.is_empty() {
            continue;
        }
        if is(tokens, next, &Tok::Open) {
            group_heads(tokens, next, &prefix, &mut out);
        } else if let Some(word) = ident(tokens, next) {
            let text = format!("{prefix}{}", path_text(tokens, next));
            out.push(RootPath { top: word.to_string(), line: tokens[next].line, text });
        }
    }
    out
}

/// The modules a crate root declares (`mod cli;`).
fn declared_modules(root_source: &str) -> Vec<String> {
    let tokens = Lexer::tokenize(root_source);
    (0..tokens.len())
        .filter(|&i| ident(&tokens, i) == Some("mod"))
        .filter_map(|i| ident(&tokens, i + 1).map(str::to_string))
        .collect()
}

/// The layer rules applied to one file's source.
fn check_source(rel_path: &str, source: &str, bin_modules: &[String]) -> Vec<Violation> {
    let Some(module) = module_path(rel_path, bin_modules) else { return Vec::new() };
    let violation = |line, path: &str, why: String| Violation {
        file: rel_path.to_string(),
        line,
        path: path.to_string(),
        why,
    };
    let top = module[0].as_str();
    let Some(layer) = LAYERS.iter().find(|l| l.module == top) else {
        let why = format!("top-level module `{top}` has no layer: add it to LAYERS in tests/architecture.rs");
        return vec![violation(1, top, why)];
    };
    let tokens = Lexer::tokenize(source);
    let mut found = Vec::new();
    for path in root_paths(&tokens, &module) {
        let allowed = match layer.uses {
            Uses::Only(list) => path.top == top || list.contains(&path.top.as_str()),
        };
        if !allowed {
            let why = format!(
                "`{top}` may not use `{}` (layers: server -> engine -> model -> gpu; formats, text, config are leaves)",
                path.top
            );
            found.push(violation(path.line, &path.text, why));
        }
        if top == "engine" && path.top == "model" {
            let item = path.text.split("model::").nth(1).unwrap_or("").split("::").next().unwrap_or("");
            if !ENGINE_MODEL_API.contains(&item) {
                let why = format!(
                    "the engine drives `model::causal_lm::CausalLm`, not `model::{item}`: an architecture \
                     must not need engine code"
                );
                found.push(violation(path.line, &path.text, why));
            }
        }
    }
    for (i, token) in tokens.iter().enumerate() {
        if let Tok::Ident(word) = &token.tok
            && layer.banned_crates.contains(&word.as_str())
            && !(i > 0 && is(&tokens, i - 1, &Tok::PathSep))
        {
            let why = format!("`{top}` may not name the `{word}` crate");
            found.push(violation(token.line, &path_text(&tokens, i), why));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 10, "found only {} files under src/", files.len());
    let bin_modules = declared_modules(&std::fs::read_to_string(root.join("src/main.rs")).unwrap());
    let mut violations = Vec::new();
    let mut resolved = 0;
    for file in &files {
        let rel = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let source = std::fs::read_to_string(file).unwrap();
        if let Some(module) = module_path(&rel, &bin_modules) {
            resolved += root_paths(&Lexer::tokenize(&source), &module).len();
        }
        violations.extend(check_source(&rel, &source, &bin_modules));
    }
    // Guards the checker: a lexer that lost every path would pass vacuously.
    assert!(resolved > 5, "the checker resolved only {resolved} crate paths in src/");
    let report: Vec<String> = violations.iter().map(Violation::to_string).collect();
    assert!(report.is_empty(), "layer violations:\n{}", report.join("\n"));
}

/// The checker on one synthetic file, with `cli` a module of the binary.
fn check(rel_path: &str, source: &str) -> Vec<Violation> {
    check_source(rel_path, source, &["cli".to_string()])
}

#[test]
fn flags_a_lower_layer_importing_a_higher_one() {
    let source = "//! gpu code\n\nuse crate::model::llama::Llama;\nuse crate::formats::TensorType;\n";
    let found = check("src/gpu/kernels/matmul.rs", source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].line, found[0].path.as_str()), (3, "crate::model::llama::Llama"));
    let message = found[0].to_string();
    assert!(message.starts_with("src/gpu/kernels/matmul.rs:3: `crate::model::llama::Llama`"), "{message}");
}

#[test]
fn flags_grouped_uses_and_inline_paths() {
    let source = "use crate::{formats::X, engine::{Y, Z}};\nfn f() -> crate::server::Error { panic!() }\n";
    let found = check("src/model/mod.rs", source);
    let paths: Vec<(usize, &str)> = found.iter().map(|v| (v.line, v.path.as_str())).collect();
    assert_eq!(paths, [(1, "crate::engine"), (2, "crate::server::Error")]);
}

#[test]
fn resolves_super_chains() {
    let source = "use super::super::pipelines::KernelSpec;\nuse super::super::super::model::X;\n";
    let found = check("src/gpu/kernels/matmul.rs", source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].line, found[0].path.as_str()), (2, "super::super::super::model::X"));
    // Inside an inline module, `super` is the file's module.
    let source = "mod tests {\n    use super::*;\n    use super::super::engine::Sequence;\n}\nuse super::text::Tokenizer;\n";
    let found = check("src/gpu/mod.rs", source);
    let paths: Vec<(usize, &str)> = found.iter().map(|v| (v.line, v.path.as_str())).collect();
    assert_eq!(paths, [(3, "super::super::engine::Sequence"), (5, "super::text::Tokenizer")]);
}

#[test]
fn ignores_comments_strings_and_chars() {
    let source = r####"
// use crate::engine::X;
/* crate::server /* nested */ crate::engine */
/// [`crate::engine::Engine`]
const A: &str = "crate::engine::X \" crate::server";
const B: &str = r#"crate::server "quoted" "#;
const C: char = '{';
const D: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { x }
pub(crate) fn g() {}
"####;
    assert_eq!(check("src/formats/gguf.rs", source), []);
    let found = check("src/formats/gguf.rs", &format!("{source}use crate::text::Tokenizer;\n"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].line, 11);
}

#[test]
fn flags_the_engine_naming_an_architecture() {
    let found = check(
        "src/engine/runner.rs",
        "use crate::model::llama::Llama;\nuse crate::model::batch::BatchInputs;\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].why.contains("CausalLm"), "{}", found[0].why);
    assert!(check("src/engine/core.rs", "use crate::model::causal_lm::{CausalLm, Output};\n").is_empty());
    assert!(check("src/engine/core.rs", "use crate::model::ModelError;\n").is_empty());
}

#[test]
fn flags_banned_crates_and_leaves() {
    let found = check("src/engine/runner.rs", "fn f(b: &wgpu::Buffer) {}\nuse crate::gpu::GpuContext;\n");
    let paths: Vec<(usize, &str)> = found.iter().map(|v| (v.line, v.path.as_str())).collect();
    assert_eq!(paths, [(2, "crate::gpu::GpuContext"), (1, "wgpu::Buffer")]);
    let found = check("src/text/tokenizer.rs", "use crate::config::Config;\n");
    assert_eq!(found.len(), 1, "{found:?}");
    // The crate roots may use anything; the server anything but the GPU and the model.
    assert_eq!(check("src/main.rs", "use crate::gpu::GpuContext;\n"), []);
    assert_eq!(check("src/cli/info.rs", "use wgserve::gpu::GpuContext;\nuse crate::cli::Cli;\n"), []);
    assert_eq!(check("src/server/router.rs", "use crate::engine::Handle;\n"), []);
    assert_eq!(check("src/server/router.rs", "use crate::model::llama::Llama;\n").len(), 1);
    assert_eq!(check("src/server/state.rs", "fn f(d: &wgpu::Device) {}\n").len(), 1);
    // A new top-level module must be given a layer.
    assert_eq!(check("src/util/mod.rs", "").len(), 1);
}

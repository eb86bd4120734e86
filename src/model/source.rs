//! Where weights come from: a GGUF file or a Hugging Face directory
//! (config.json + model.safetensors, or the shards that
//! model.safetensors.index.json lists). Tensors are asked for by their
//! GGUF names; for safetensors the name maps to the Hugging Face one.

use std::path::{Path, PathBuf};

use crate::formats::TensorType;
use crate::formats::gguf::GgufFile;
use crate::formats::safetensors::SafetensorsFile;

use super::ModelError;

pub enum WeightSource {
    Gguf(GgufFile),
    /// One file, or each shard of a split checkpoint.
    Safetensors {
        dir: PathBuf,
        shards: Vec<SafetensorsFile>,
    },
}

/// A tensor's bytes as stored, with its shape outermost first
/// (`[rows, cols]` for a matrix whose rows are outputs).
pub struct RawTensor<'a> {
    pub tensor_type: TensorType,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// The Hugging Face names a GGUF tensor name may have, most common first:
/// Phi-3 fuses Q/K/V into `qkv_proj` and gate/up into `gate_up_proj`,
/// which GGUF calls `attn_qkv` and `ffn_up` (twice as many rows).
fn hf_names(gguf_name: &str) -> Vec<String> {
    let global = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = global {
        return vec![name.to_string()];
    }
    let Some(rest) = gguf_name.strip_prefix("blk.") else { return vec![gguf_name.to_string()] };
    let Some((layer, leaf)) = rest.split_once('.') else { return vec![gguf_name.to_string()] };
    let hf_leaves: &[&str] = match leaf {
        "attn_norm.weight" => &["input_layernorm.weight"],
        "attn_q.weight" => &["self_attn.q_proj.weight"],
        "attn_k.weight" => &["self_attn.k_proj.weight"],
        "attn_v.weight" => &["self_attn.v_proj.weight"],
        "attn_q.bias" => &["self_attn.q_proj.bias"],
        "attn_k.bias" => &["self_attn.k_proj.bias"],
        "attn_v.bias" => &["self_attn.v_proj.bias"],
        "attn_qkv.weight" => &["self_attn.qkv_proj.weight"],
        "attn_q_norm.weight" => &["self_attn.q_norm.weight"],
        "attn_k_norm.weight" => &["self_attn.k_norm.weight"],
        "attn_output.weight" => &["self_attn.o_proj.weight"],
        "attn_output.bias" => &["self_attn.o_proj.bias"],
        "ffn_norm.weight" => &["post_attention_layernorm.weight"],
        "ffn_gate.weight" => &["mlp.gate_proj.weight"],
        "ffn_up.weight" => &["mlp.up_proj.weight", "mlp.gate_up_proj.weight"],
        "ffn_down.weight" => &["mlp.down_proj.weight"],
        other => return vec![format!("model.layers.{layer}.{other}")],
    };
    hf_leaves.iter().map(|hf_leaf| format!("model.layers.{layer}.{hf_leaf}")).collect()
}

impl WeightSource {
    /// Opens a `.gguf` file, or a directory holding `model.safetensors` or
    /// the shards its `model.safetensors.index.json` names.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        if !path.is_dir() {
            return Ok(WeightSource::Gguf(GgufFile::open(path)?));
        }
        let single = path.join("model.safetensors");
        let index = path.join("model.safetensors.index.json");
        let shards = if !single.exists() && index.exists() {
            shard_names(&index)?
                .iter()
                .map(|name| SafetensorsFile::open(&path.join(name)))
                .collect::<Result<_, _>>()?
        } else {
            vec![SafetensorsFile::open(&single)?]
        };
        Ok(WeightSource::Safetensors { dir: path.to_path_buf(), shards })
    }

    /// The tensor of that GGUF name, or `None` when the file lacks it.
    pub fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>, ModelError> {
        match self {
            WeightSource::Gguf(gguf) => {
                let Some(info) = gguf.tensor(name) else { return Ok(None) };
                let tensor_type = info.supported_type()?;
                let shape = info.dims.iter().rev().map(|&d| d as usize).collect();
                Ok(Some(RawTensor { tensor_type, shape, data: gguf.tensor_data(info) }))
            }
            WeightSource::Safetensors { shards, .. } => {
                let Some((shard, hf)) = stored(shards, name) else { return Ok(None) };
                let tensor = shard.tensor(&hf)?;
                Ok(Some(RawTensor {
                    tensor_type: tensor.tensor_type,
                    shape: tensor.shape,
                    data: tensor.data,
                }))
            }
        }
    }

    /// The tensor of that name with exactly `shape`, or an error naming it.
    /// Errors name it the way the file does, which is what the user can look up.
    pub fn require(&self, name: &str, shape: &[usize]) -> Result<RawTensor<'_>, ModelError> {
        let tensor = self.tensor(name)?.ok_or_else(|| ModelError::MissingTensor(self.file_name(name)))?;
        if tensor.shape != shape {
            return Err(ModelError::InvalidTensor {
                name: self.file_name(name),
                why: format!("shape {:?}, expected {shape:?}", tensor.shape),
            });
        }
        Ok(tensor)
    }

    /// The name the file itself uses for a tensor asked for by its GGUF name.
    pub fn file_name(&self, name: &str) -> String {
        match self {
            WeightSource::Gguf(_) => name.to_string(),
            WeightSource::Safetensors { shards, .. } => match stored(shards, name) {
                Some((_, hf)) => hf,
                None => hf_names(name).swap_remove(0),
            },
        }
    }

    pub fn gguf(&self) -> Option<&GgufFile> {
        match self {
            WeightSource::Gguf(gguf) => Some(gguf),
            WeightSource::Safetensors { .. } => None,
        }
    }

    /// The directory of a Hugging Face checkpoint.
    pub fn hf_dir(&self) -> Option<&Path> {
        match self {
            WeightSource::Gguf(_) => None,
            WeightSource::Safetensors { dir, .. } => Some(dir),
        }
    }
}

/// The shard holding the tensor of that GGUF name, and its name there.
fn stored<'a>(shards: &'a [SafetensorsFile], name: &str) -> Option<(&'a SafetensorsFile, String)> {
    hf_names(name).into_iter().find_map(|hf| {
        shards.iter().find(|shard| shard.tensor_names().contains(&hf)).map(|shard| (shard, hf))
    })
}

/// The shard files of a split checkpoint, each once, in name order: the
/// values of the index's `weight_map`. The index is input from strangers:
/// a shard must be a plain file name in the checkpoint's directory.
fn shard_names(index: &Path) -> Result<Vec<String>, ModelError> {
    let fail = |why: String| ModelError::Config(format!("{}: {why}", index.display()));
    let text = std::fs::read_to_string(index).map_err(|e| fail(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let map = json["weight_map"].as_object().ok_or_else(|| fail("no `weight_map` object".into()))?;
    let mut names = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| fail(format!("`{tensor}` maps to a non-string")))?;
        let plain = Path::new(file).file_name().is_some_and(|name| name == file) && file != "..";
        if !plain || !file.ends_with(".safetensors") {
            return Err(fail(format!(
                "`{tensor}` maps to {file:?}, not a .safetensors file beside the index"
            )));
        }
        names.push(file.to_string());
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(fail("the `weight_map` is empty".into()));
    }
    Ok(names)
}

//! Where weights come from: a GGUF file or a Hugging Face directory
//! (config.json + model.safetensors). Tensors are asked for by their GGUF
//! names; for safetensors the name maps to the Hugging Face one.

use std::path::{Path, PathBuf};

use crate::formats::TensorType;
use crate::formats::gguf::GgufFile;
use crate::formats::safetensors::SafetensorsFile;

use super::ModelError;

pub enum WeightSource {
    Gguf(GgufFile),
    Safetensors { dir: PathBuf, file: SafetensorsFile },
}

/// A tensor's bytes as stored, with its shape outermost first
/// (`[rows, cols]` for a matrix whose rows are outputs).
pub struct RawTensor<'a> {
    pub tensor_type: TensorType,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// The Hugging Face name of a GGUF Llama tensor name.
fn hf_name(gguf_name: &str) -> String {
    let global = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = global {
        return name.to_string();
    }
    let Some(rest) = gguf_name.strip_prefix("blk.") else { return gguf_name.to_string() };
    let Some((layer, leaf)) = rest.split_once('.') else { return gguf_name.to_string() };
    let hf_leaf = match leaf {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        other => other,
    };
    format!("model.layers.{layer}.{hf_leaf}")
}

impl WeightSource {
    /// Opens a `.gguf` file, or a directory holding `model.safetensors`.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        if path.is_dir() {
            let file = SafetensorsFile::open(&path.join("model.safetensors"))?;
            return Ok(WeightSource::Safetensors { dir: path.to_path_buf(), file });
        }
        Ok(WeightSource::Gguf(GgufFile::open(path)?))
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
            WeightSource::Safetensors { file, .. } => {
                let hf = hf_name(name);
                if !file.tensor_names().contains(&hf) {
                    return Ok(None);
                }
                let tensor = file.tensor(&hf)?;
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
            WeightSource::Safetensors { .. } => hf_name(name),
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

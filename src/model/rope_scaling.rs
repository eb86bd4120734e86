//! RoPE scaling, read from a GGUF file or a `config.json`: linear, Llama
//! 3's frequency ramp, llama.cpp's `rope_freqs` tensor and Phi-3's
//! longrope, all as one table of per-frequency divisors and an attention
//! factor, computed as transformers computes them.

use serde_json::Value;

use crate::formats::gguf::GgufFile;

use super::ModelError;
use super::weights::to_f32_vec;

/// RoPE frequencies stretched for a longer context: frequency i is
/// `base^(-2i/D) / factors[i]`, and cos and sin are multiplied by
/// `attention_factor`. Linear scaling, Llama 3's ramp, a GGUF
/// `rope_freqs` tensor and Phi-3's longrope factors all take this form.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeScaling {
    /// What the file asked for, as `wgserve info` shows it.
    pub kind: String,
    /// One divisor per frequency: `head_dim / 2` of them.
    pub factors: Vec<f32>,
    pub attention_factor: f32,
}

/// RoPE scaling from GGUF metadata and tensors, as llama.cpp reads it: a
/// linear factor (`rope.scaling.factor`, `rope.scale_linear`), the
/// per-frequency `rope_freqs` tensor (Llama 3.1's ramp, precomputed by the
/// converter), and Phi-3's `rope_factors_short` with its attention factor.
/// Other scaling types (YaRN, ...) are refused. Phi-3's short factors are
/// what transformers uses within the original context, so the context is
/// capped there (`max_positions`): beyond it transformers switches to the
/// long factors mid-sequence and llama.cpp picks by configured context, and
/// neither is one fixed table.
pub(super) fn gguf_rope_scaling(
    gguf: &GgufFile,
    arch: &str,
    head_dim: usize,
    max_positions: &mut usize,
) -> Result<Option<RopeScaling>, ModelError> {
    let key = |name: &str| format!("{arch}.{name}");
    let number = |name: &str| -> Result<Option<f64>, ModelError> {
        match gguf.get(&key(name)) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| ModelError::Config(format!("{} is not a number", key(name)))),
        }
    };
    let mut kinds = Vec::new();
    let mut factors = vec![1.0f32; head_dim / 2];
    let scaling_type = match gguf.get(&key("rope.scaling.type")) {
        None => "linear",
        Some(_) => gguf.get_str(&key("rope.scaling.type"))?,
    };
    // llama.cpp's default type is linear: a bare factor stretches every frequency.
    let linear =
        match (number("rope.scaling.factor")?, number("rope.scale_linear")?, number("rope.freq_scale")?) {
            (Some(factor), _, _) | (None, Some(factor), _) => factor,
            (None, None, Some(scale)) if scale != 0.0 => 1.0 / scale,
            _ => 1.0,
        };
    match scaling_type {
        "none" => {}
        "linear" if linear == 1.0 || linear == 0.0 => {}
        "linear" => {
            kinds.push(format!("linear, factor {linear}"));
            factors.iter_mut().for_each(|f| *f *= linear as f32);
        }
        other => {
            return Err(ModelError::Config(format!(
                "{} = {other:?} changes the math and wgserve does not carry it out (linear scaling, \
                 Llama 3's rope_freqs and Phi-3's longrope factors are)",
                key("rope.scaling.type")
            )));
        }
    }
    let half = head_dim / 2;
    let tensor = |name: &str| -> Result<Option<Vec<f32>>, ModelError> {
        let Some(info) = gguf.tensor(name) else { return Ok(None) };
        let values = to_f32_vec(name, info.supported_type()?, gguf.tensor_data(info))?;
        if values.len() != half {
            return Err(ModelError::InvalidTensor {
                name: name.to_string(),
                why: format!("{} values, expected {half} (one per RoPE frequency)", values.len()),
            });
        }
        Ok(Some(values))
    };
    if let Some(freqs) = tensor("rope_freqs.weight")? {
        kinds.push("per-frequency factors (rope_freqs)".to_string());
        factors.iter_mut().zip(&freqs).for_each(|(f, g)| *f *= g);
    }
    let mut attention_factor = number("rope.scaling.attn_factor")?.unwrap_or(1.0) as f32;
    match (tensor("rope_factors_short.weight")?, gguf.tensor("rope_factors_long.weight")) {
        (Some(short), _) => {
            let original = match gguf.get(&key("rope.scaling.original_context_length")) {
                Some(value) => value.as_u64().ok_or_else(|| {
                    ModelError::Config(format!(
                        "{} is not an integer",
                        key("rope.scaling.original_context_length")
                    ))
                })? as usize,
                None => *max_positions,
            };
            if number("rope.scaling.attn_factor")?.is_none() {
                attention_factor = longrope_attention_factor(*max_positions, original);
            }
            kinds.push(format!("longrope short factors within the original {original} positions"));
            factors.iter_mut().zip(&short).for_each(|(f, s)| *f *= s);
            *max_positions = (*max_positions).min(original);
        }
        (None, Some(_)) => {
            return Err(ModelError::Config(
                "rope_factors_long without rope_factors_short: longrope needs both".into(),
            ));
        }
        (None, None) => {}
    }
    if attention_factor != 1.0 && kinds.is_empty() {
        kinds.push(format!("attention factor {attention_factor}"));
    }
    Ok((!kinds.is_empty()).then(|| RopeScaling { kind: kinds.join(", "), factors, attention_factor }))
}

/// transformers' longrope attention factor where the config gives none:
/// `sqrt(1 + ln(scale) / ln(original))` for a context `scale` times the
/// original one, else 1.
fn longrope_attention_factor(max_positions: usize, original: usize) -> f32 {
    let scale = max_positions as f64 / original.max(1) as f64;
    if scale <= 1.0 { 1.0 } else { (1.0 + scale.ln() / (original as f64).ln()).sqrt() as f32 }
}

/// RoPE scaling from a `config.json`'s `rope_scaling` (or transformers 5's
/// `rope_parameters`), computed as transformers' `rope_utils` computes it.
pub(super) fn hf_rope_scaling(
    scaling: &Value,
    original_max_position_embeddings: Option<usize>,
    base: f32,
    head_dim: usize,
    max_positions: &mut usize,
) -> Result<Option<RopeScaling>, ModelError> {
    let rope_type = scaling["rope_type"].as_str().or(scaling["type"].as_str()).unwrap_or("default");
    let number = |name: &str| -> Result<f32, ModelError> {
        scaling[name].as_f64().map(|v| v as f32).ok_or_else(|| {
            ModelError::Config(format!("config.json: rope scaling {rope_type:?} needs a number {name:?}"))
        })
    };
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32)).collect();
    let (kind, factors, attention_factor) = match rope_type {
        "default" => return Ok(None),
        "linear" => {
            let factor = number("factor")?;
            (format!("linear, factor {factor}"), vec![factor; half], 1.0)
        }
        "llama3" => {
            let factor = number("factor")?;
            let (low, high) = (number("low_freq_factor")?, number("high_freq_factor")?);
            let original = number("original_max_position_embeddings")?;
            let (low_wavelen, high_wavelen) = (original / low, original / high);
            let factors = inv_freq
                .iter()
                .map(|&freq| {
                    let wavelen = 2.0 * std::f32::consts::PI / freq;
                    if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (original / wavelen - low) / (high - low);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    }
                })
                .collect();
            (format!("llama3, factor {factor}, original context {original}"), factors, 1.0)
        }
        "longrope" | "su" => {
            let short: Vec<f32> = scaling["short_factor"]
                .as_array()
                .map(|values| values.iter().filter_map(|v| v.as_f64()).map(|v| v as f32).collect())
                .unwrap_or_default();
            let original = original_max_position_embeddings
                .or_else(|| scaling["original_max_position_embeddings"].as_u64().map(|v| v as usize))
                .unwrap_or(*max_positions);
            let attention_factor = match scaling["attention_factor"].as_f64() {
                Some(given) => given as f32,
                None => longrope_attention_factor(*max_positions, original),
            };
            *max_positions = (*max_positions).min(original);
            (
                format!("longrope short factors within the original {original} positions"),
                short,
                attention_factor,
            )
        }
        other => {
            return Err(ModelError::Config(format!(
                "config.json: rope scaling {other:?} changes the math and wgserve does not carry it out \
                 (linear, llama3 and longrope are)"
            )));
        }
    };
    Ok(Some(RopeScaling { kind, factors, attention_factor }))
}

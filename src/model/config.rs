//! The hyperparameters every decoder architecture has, read from GGUF
//! metadata (under the architecture's own key prefix) or a Hugging Face
//! `config.json`, with the settings several families share: RoPE scaling
//! and a sliding attention window. What only one architecture has
//! (Gemma's local/global layer pattern) its own file reads.

use serde::Deserialize;
use serde_json::Value;

use crate::formats::gguf::GgufFile;

use super::ModelError;
use super::blocks::attention::AttentionMask;
pub use super::rope_scaling::RopeScaling;
use super::rope_scaling::{gguf_rope_scaling, hf_rope_scaling};
use super::source::WeightSource;

/// How RoPE pairs elements; it follows the weights' Q/K row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): GGUF Llama, whose Q/K rows llama.cpp permuted.
    Interleaved,
    /// Halves (i, i + D/2): Hugging Face checkpoints.
    Neox,
}

/// Attention within a window of recent tokens, on some or all layers.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// Keys a query sees: itself and the `tokens - 1` before it.
    pub tokens: usize,
    /// Per layer, whether it slides; the others see the whole context.
    pub layers: Vec<bool>,
}

/// GGUF settings (after `{arch}.`) that change what a model computes and
/// that `from_gguf` does not carry out itself (it reads RoPE scaling and
/// the sliding window): an architecture that does says so to
/// [`DecoderConfig::refuse_unhonoured`].
const MATH_SETTINGS: [&str; 4] = [
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "attention.scale",
    "rope.scaling.yarn_log_multiplier",
];

#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub rope_scaling: Option<RopeScaling>,
    pub sliding_window: Option<SlidingWindow>,
    /// The longest sequence served: the model's context, or less where
    /// its RoPE scaling is exact only within less (Phi-3's longrope).
    pub max_position_embeddings: usize,
    /// The output head is the token embedding table. GGUF says so by
    /// omitting `output.weight`; Hugging Face configs say it explicitly.
    pub tie_word_embeddings: Option<bool>,
}

/// The fields of a Hugging Face `config.json` the decoder families use.
/// transformers 5 writes `rope_parameters` (with `rope_theta` inside)
/// where earlier versions wrote `rope_theta` and `rope_scaling`; both load.
#[derive(Deserialize)]
struct HfConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f32,
    rope_theta: Option<f32>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    max_position_embeddings: usize,
    /// Phi-3's longrope: the context its short factors were trained for.
    original_max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    sliding_window: Option<usize>,
    /// Qwen 2/3: the window is off unless this says so, and then only
    /// from layer `max_window_layers` on.
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    /// transformers 5: "full_attention" or "sliding_attention" per layer.
    layer_types: Option<Vec<String>>,
    hidden_act: Option<String>,
    partial_rotary_factor: Option<f32>,
    mlp_bias: Option<bool>,
}

impl DecoderConfig {
    pub fn from_source(source: &WeightSource) -> Result<Self, ModelError> {
        match source {
            WeightSource::Gguf(gguf) => Self::from_gguf(gguf),
            WeightSource::Safetensors { dir, .. } => {
                let path = dir.join("config.json");
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ModelError::Config(format!("cannot read {}: {e}", path.display())))?;
                Self::from_hf_json(&text)
            }
        }
    }

    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, ModelError> {
        let arch = gguf.get_str("general.architecture")?;
        let key = |name: &str| format!("{arch}.{name}");
        let usize_of = |name: &str| -> Result<usize, ModelError> { Ok(gguf.get_u64(&key(name))? as usize) };
        let optional_usize = |name: &str| -> Result<Option<usize>, ModelError> {
            match gguf.get(&key(name)) {
                None => Ok(None),
                Some(value) => value
                    .as_u64()
                    .map(|v| Some(v as usize))
                    .ok_or_else(|| ModelError::Config(format!("{} is not an integer", key(name)))),
            }
        };
        let hidden_size = usize_of("embedding_length")?;
        let num_heads = usize_of("attention.head_count")?;
        let num_layers = usize_of("block_count")?;
        check_num_layers(num_layers)?;
        let vocab_size = match gguf.get(&key("vocab_size")) {
            Some(value) => value.as_u64().unwrap_or(0) as usize,
            None => gguf.get("tokenizer.ggml.tokens").and_then(|t| t.as_array()).map_or(0, |t| t.len()),
        };
        // Gemma's and Qwen 3's heads are wider than hidden / heads; the GGUF says so.
        let head_dim = optional_usize("attention.key_length")?.unwrap_or(hidden_size / num_heads.max(1));
        if let Some(rotated) = optional_usize("rope.dimension_count")?
            && rotated != head_dim
        {
            return Err(ModelError::Config(format!(
                "{} = {rotated}: RoPE on part of a {head_dim}-wide head is not carried out",
                key("rope.dimension_count")
            )));
        }
        let mut max_position_embeddings = usize_of("context_length")?;
        check_head_dim(head_dim)?;
        let rope_scaling = gguf_rope_scaling(gguf, arch, head_dim, &mut max_position_embeddings)?;
        let sliding_window = optional_usize("attention.sliding_window")?
            .map(|tokens| SlidingWindow { tokens, layers: vec![true; num_layers] });
        let config = Self {
            vocab_size,
            hidden_size,
            intermediate_size: usize_of("feed_forward_length")?,
            num_layers,
            num_heads,
            num_kv_heads: optional_usize("attention.head_count_kv")?.unwrap_or(num_heads),
            head_dim,
            rms_norm_eps: gguf.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
            rope_theta: gguf.get(&key("rope.freq_base")).and_then(|v| v.as_f64()).unwrap_or(10000.0) as f32,
            rope_style: RopeStyle::Interleaved,
            rope_scaling,
            sliding_window,
            max_position_embeddings,
            tie_word_embeddings: None,
        };
        config.validate()
    }

    pub fn from_hf_json(text: &str) -> Result<Self, ModelError> {
        let hf: HfConfig =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        let refuse = |why: String| Err(ModelError::Config(format!("config.json: {why}")));
        if let Some(act) = hf.hidden_act.as_deref().filter(|a| *a != "silu") {
            return refuse(format!("hidden_act {act:?} is not carried out (silu is)"));
        }
        if let Some(part) = hf.partial_rotary_factor.filter(|p| *p != 1.0) {
            return refuse(format!(
                "partial_rotary_factor {part}: RoPE on part of a head is not carried out"
            ));
        }
        if hf.mlp_bias == Some(true) {
            return refuse("mlp_bias = true is not carried out".into());
        }
        let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1));
        check_num_layers(hf.num_hidden_layers)?;
        // transformers 5 keeps rope_theta inside rope_parameters.
        let scaling = hf.rope_scaling.as_ref().or(hf.rope_parameters.as_ref()).filter(|v| !v.is_null());
        let rope_theta = hf
            .rope_theta
            .or_else(|| scaling.and_then(|s| s["rope_theta"].as_f64()).map(|t| t as f32))
            .unwrap_or(10000.0);
        let mut max_position_embeddings = hf.max_position_embeddings;
        check_head_dim(head_dim)?;
        let rope_scaling = match scaling {
            Some(scaling) => hf_rope_scaling(
                scaling,
                hf.original_max_position_embeddings,
                rope_theta,
                head_dim,
                &mut max_position_embeddings,
            )?,
            None => None,
        };
        let config = Self {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim,
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta,
            rope_style: RopeStyle::Neox,
            rope_scaling,
            sliding_window: hf_sliding_window(&hf)?,
            max_position_embeddings,
            // transformers' default for Llama is untied.
            tie_word_embeddings: Some(hf.tie_word_embeddings.unwrap_or(false)),
        };
        config.validate()
    }

    /// Refuses a GGUF whose metadata sets something that changes the math
    /// (soft-capping, an attention scale, ...) unless the architecture says
    /// it carries it out (`honoured`: key suffixes after `{arch}.`). A
    /// setting that is present but neutral (a factor of 1) is fine.
    pub fn refuse_unhonoured(gguf: &GgufFile, honoured: &[&str]) -> Result<(), ModelError> {
        let arch = gguf.get_str("general.architecture")?;
        for suffix in MATH_SETTINGS {
            if honoured.contains(&suffix) {
                continue;
            }
            let key = format!("{arch}.{suffix}");
            let Some(value) = gguf.get(&key) else { continue };
            let neutral = match value.as_str() {
                Some(text) => text == "none",
                None => value.as_f64().is_some_and(|v| suffix.ends_with("factor") && v == 1.0),
            };
            if !neutral {
                let shown: String = format!("{value:?}").chars().take(80).collect();
                return Err(ModelError::Config(format!(
                    "{key} = {shown} changes the math and wgserve does not carry it out for {arch}"
                )));
            }
        }
        Ok(())
    }

    /// Which cached positions layer `layer`'s queries see.
    pub fn attention_mask(&self, layer: usize) -> AttentionMask {
        match &self.sliding_window {
            Some(window) if window.layers.get(layer).copied().unwrap_or(false) => {
                AttentionMask::SlidingWindow(window.tokens)
            }
            _ => AttentionMask::Causal,
        }
    }

    /// Rejects shapes the kernels cannot run, with the reason.
    fn validate(self) -> Result<Self, ModelError> {
        let fail = |why: String| Err(ModelError::Config(why));
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.num_layers == 0 || self.vocab_size == 0 {
            return fail(format!("empty model: {self:?}"));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return fail(format!(
                "{} heads do not group over {} KV heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        check_head_dim(self.head_dim)?;
        if !self.hidden_size.is_multiple_of(32) || !self.intermediate_size.is_multiple_of(32) {
            return fail("hidden and intermediate sizes must be multiples of 32".into());
        }
        if self.max_position_embeddings == 0 || self.max_position_embeddings > 1 << 20 {
            return fail(format!("context length {} is out of range", self.max_position_embeddings));
        }
        if let Some(scaling) = &self.rope_scaling
            && (scaling.factors.len() != self.head_dim / 2
                || !scaling
                    .factors
                    .iter()
                    .chain([&scaling.attention_factor])
                    .all(|f| f.is_finite() && *f > 0.0))
        {
            return fail(format!(
                "RoPE scaling {} needs {} positive factors, found {:?} (attention factor {})",
                scaling.kind,
                self.head_dim / 2,
                &scaling.factors[..scaling.factors.len().min(8)],
                scaling.attention_factor
            ));
        }
        if let Some(window) = &self.sliding_window
            && (window.tokens == 0 || window.layers.len() != self.num_layers)
        {
            return fail(format!(
                "sliding window of {} tokens over {} layer flags for {} layers",
                window.tokens,
                window.layers.len(),
                self.num_layers
            ));
        }
        Ok(self)
    }

    /// Width of the fused Q/K/V projection.
    pub fn qkv_size(&self) -> usize {
        (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
    }
}

/// The deepest models have about 130 layers; a file claiming billions must
/// not size anything by that claim.
const MAX_LAYERS: usize = 1024;

fn check_num_layers(num_layers: usize) -> Result<(), ModelError> {
    if num_layers == 0 || num_layers > MAX_LAYERS {
        return Err(ModelError::Config(format!("{num_layers} layers is out of range (1..={MAX_LAYERS})")));
    }
    Ok(())
}

/// Head sizes the kernels run (RoPE takes each half head a vec4 at a
/// time); checked before anything is sized by one (a stranger's file may
/// claim a head of 2^32 elements).
fn check_head_dim(head_dim: usize) -> Result<(), ModelError> {
    let max = crate::gpu::kernels::attention::MAX_HEAD_DIM as usize;
    if head_dim == 0 || !head_dim.is_multiple_of(8) || head_dim > max {
        return Err(ModelError::Config(format!("head size {head_dim} is not a multiple of 8 up to {max}")));
    }
    Ok(())
}

/// Which layers attend within a window, as transformers decides: its own
/// `layer_types` when the config lists them; else Qwen's
/// `use_sliding_window` from layer `max_window_layers` on; else (Mistral,
/// Phi-3) every layer when `sliding_window` is set.
fn hf_sliding_window(hf: &HfConfig) -> Result<Option<SlidingWindow>, ModelError> {
    let layers: Vec<bool> = match (&hf.layer_types, hf.use_sliding_window) {
        (Some(types), _) => types
            .iter()
            .map(|t| match t.as_str() {
                "full_attention" => Ok(false),
                "sliding_attention" => Ok(true),
                other => {
                    Err(ModelError::Config(format!("config.json: layer type {other:?} is not carried out")))
                }
            })
            .collect::<Result<_, _>>()?,
        (None, Some(false)) => return Ok(None),
        (None, Some(true)) => {
            let first = hf.max_window_layers.unwrap_or(0);
            (0..hf.num_hidden_layers).map(|layer| layer >= first).collect()
        }
        (None, None) if hf.sliding_window.is_none() => return Ok(None),
        (None, None) => vec![true; hf.num_hidden_layers],
    };
    if !layers.contains(&true) {
        return Ok(None);
    }
    match hf.sliding_window {
        Some(tokens) => Ok(Some(SlidingWindow { tokens, layers })),
        None => Err(ModelError::Config("config.json: sliding layers without a sliding_window size".into())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(extra: Value) -> Result<DecoderConfig, ModelError> {
        let mut json = json!({
            "vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 4096,
        });
        json.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        DecoderConfig::from_hf_json(&json.to_string())
    }

    fn error(extra: Value) -> String {
        config(extra).expect_err("refused").to_string()
    }

    #[test]
    fn rope_settings_load_from_either_spelling() {
        let llama3 = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
        let classic = config(json!({"rope_theta": 500000.0, "rope_scaling": llama3})).unwrap();
        let mut inside = llama3.clone();
        inside["rope_theta"] = json!(500000.0);
        let v5 = config(json!({"rope_parameters": inside})).unwrap();
        assert_eq!(classic, v5);
        assert_eq!(v5.rope_theta, 500000.0);
        let factors = &v5.rope_scaling.as_ref().unwrap().factors;
        // High frequencies kept, low ones divided by the factor, a ramp between.
        assert_eq!(factors[0], 1.0);
        assert_eq!(factors[7], 8.0);
        assert!(factors.iter().any(|&f| f > 1.0 && f < 8.0), "{factors:?}");
        let plain = config(json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}})).unwrap();
        assert_eq!((plain.rope_theta, plain.rope_scaling), (1e6, None));
        let linear = config(json!({"rope_scaling": {"type": "linear", "factor": 4.0}})).unwrap();
        assert_eq!(linear.rope_scaling.unwrap().factors, vec![4.0; 8]);
    }

    #[test]
    fn longrope_keeps_to_the_original_context_with_its_attention_factor() {
        let short: Vec<f32> = (0..8).map(|i| 1.0 + i as f32 / 4.0).collect();
        let longrope = json!({"type": "su", "short_factor": short, "long_factor": vec![3.0; 8]});
        let c = config(json!({"rope_scaling": longrope, "original_max_position_embeddings": 1024})).unwrap();
        assert_eq!(c.max_position_embeddings, 1024);
        let scaling = c.rope_scaling.unwrap();
        assert_eq!(scaling.factors, short);
        let expected = (1.0 + 4f64.ln() / 1024f64.ln()).sqrt() as f32;
        assert!((scaling.attention_factor - expected).abs() < 1e-6);
        // Too few factors for the head is an error, not a short table.
        let bad = json!({"type": "longrope", "short_factor": [1.0, 2.0], "long_factor": [1.0, 2.0]});
        assert!(error(json!({"rope_scaling": bad})).contains("positive factors"));
    }

    #[test]
    fn settings_that_change_the_math_are_refused_by_name() {
        for (extra, named) in [
            (json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}), "yarn"),
            (json!({"rope_scaling": {"type": "dynamic", "factor": 2.0}}), "dynamic"),
            (json!({"partial_rotary_factor": 0.5}), "partial_rotary_factor"),
            (json!({"hidden_act": "gelu"}), "gelu"),
            (json!({"mlp_bias": true}), "mlp_bias"),
            (json!({"layer_types": ["full_attention", "chunked_attention", "full_attention"]}), "chunked"),
        ] {
            let message = error(extra.clone());
            assert!(message.contains(named), "{extra}: {message}");
        }
    }

    #[test]
    fn sizes_claimed_by_a_stranger_are_checked_before_anything_is_allocated() {
        assert!(
            error(json!({"head_dim": 1u64 << 33, "rope_scaling": {"type": "linear", "factor": 2.0}}))
                .contains("head size")
        );
        assert!(error(json!({"num_hidden_layers": 1u64 << 40, "sliding_window": 4})).contains("layers"));
    }

    #[test]
    fn sliding_windows_follow_each_familys_switches() {
        let layers = |c: DecoderConfig| c.sliding_window.map(|w| (w.tokens, w.layers));
        // Mistral and Phi-3: a window size means every layer.
        assert_eq!(layers(config(json!({"sliding_window": 8})).unwrap()), Some((8, vec![true; 3])));
        // Qwen: off unless switched on, then from max_window_layers on.
        let off = json!({"sliding_window": 32768, "use_sliding_window": false, "max_window_layers": 1});
        assert_eq!(layers(config(off).unwrap()), None);
        let on = json!({"sliding_window": 16, "use_sliding_window": true, "max_window_layers": 1});
        assert_eq!(layers(config(on).unwrap()), Some((16, vec![false, true, true])));
        // transformers 5's layer_types decide when present.
        let typed = json!({"sliding_window": 16,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]});
        let c = config(typed).unwrap();
        assert_eq!(c.attention_mask(0), AttentionMask::SlidingWindow(16));
        assert_eq!(c.attention_mask(1), AttentionMask::Causal);
        let untyped = json!({"layer_types": ["sliding_attention", "full_attention", "full_attention"]});
        assert!(error(untyped).contains("sliding_window"));
        assert_eq!(layers(config(json!({})).unwrap()), None);
    }
}

//! A plain, slow CPU Llama in Hugging Face conventions (transformers'
//! `LlamaForCausalLM`): the reference our GPU forward is checked against,
//! and a writer of tiny random checkpoints in the HF layout.
//!
//! Written for obviousness, not speed: one position and one head at a time,
//! activations in f64 so that its own rounding is negligible next to the
//! GPU's f32. Weights are f32 (round them first with `rounded` to compare
//! against an F16/BF16 file). RoPE follows HF exactly: `rotate_half` pairs
//! (i, i + d/2), `inv_freq` and the angle `position * inv_freq` in f32.

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wgserve::formats::TensorType;
use wgserve::formats::safetensors::{self, SafeTensor};

/// The `config.json` fields of a `LlamaForCausalLM` that the forward uses.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    /// `lm_head` is `embed_tokens` (and absent from the file).
    pub tie_word_embeddings: bool,
}

impl TinyConfig {
    /// hidden 64, 2 layers, 4 heads over 2 KV heads (GQA), head size 16.
    pub fn small() -> Self {
        TinyConfig {
            vocab_size: 100,
            hidden_size: 64,
            intermediate_size: 96,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_position_embeddings: 256,
            tie_word_embeddings: false,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Every tensor of the checkpoint with its HF shape (`[out, in]` for
    /// linear layers).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (hidden, inter, head_dim) = (self.hidden_size, self.intermediate_size, self.head_dim());
        let q_size = self.num_attention_heads * head_dim;
        let kv_size = self.num_key_value_heads * head_dim;
        let mut shapes = vec![("model.embed_tokens.weight".to_string(), vec![self.vocab_size, hidden])];
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            shapes.extend([
                (format!("{p}.input_layernorm.weight"), vec![hidden]),
                (format!("{p}.self_attn.q_proj.weight"), vec![q_size, hidden]),
                (format!("{p}.self_attn.k_proj.weight"), vec![kv_size, hidden]),
                (format!("{p}.self_attn.v_proj.weight"), vec![kv_size, hidden]),
                (format!("{p}.self_attn.o_proj.weight"), vec![hidden, q_size]),
                (format!("{p}.post_attention_layernorm.weight"), vec![hidden]),
                (format!("{p}.mlp.gate_proj.weight"), vec![inter, hidden]),
                (format!("{p}.mlp.up_proj.weight"), vec![inter, hidden]),
                (format!("{p}.mlp.down_proj.weight"), vec![hidden, inter]),
            ]);
        }
        shapes.push(("model.norm.weight".to_string(), vec![hidden]));
        if !self.tie_word_embeddings {
            shapes.push(("lm_head.weight".to_string(), vec![self.vocab_size, hidden]));
        }
        shapes
    }

    /// `config.json` as transformers writes it (the fields we read and a few
    /// it always has).
    pub fn to_json(&self, dtype: TensorType) -> serde_json::Value {
        let torch_dtype = match dtype {
            TensorType::F16 => "float16",
            TensorType::BF16 => "bfloat16",
            _ => "float32",
        };
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": torch_dtype,
        })
    }
}

pub struct TinyLlama {
    pub config: TinyConfig,
    /// HF name -> (shape, row-major values).
    pub weights: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Rounds through a 16-bit float type (round to nearest even), as a
/// checkpoint saved in that type would hold the value.
pub fn round_to(value: f32, dtype: TensorType) -> f32 {
    match dtype {
        TensorType::F16 => f16::from_f32(value).to_f32(),
        TensorType::BF16 => bf16::from_f32(value).to_f32(),
        TensorType::F32 => value,
        other => panic!("{other} is not a float type"),
    }
}

impl TinyLlama {
    /// Random weights: linear layers uniform with variance 1/fan_in (so
    /// activations and attention scores stay of order 1 and the softmax is
    /// far from uniform), embeddings uniform in [-1, 1], norm weights in
    /// [0.8, 1.2].
    pub fn random(config: TinyConfig, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut weights = BTreeMap::new();
        for (name, shape) in config.tensor_shapes() {
            let len: usize = shape.iter().product();
            let values: Vec<f32> = if shape.len() == 1 {
                (0..len).map(|_| rng.random_range(0.8..1.2)).collect()
            } else if name == "model.embed_tokens.weight" {
                (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
            } else {
                let bound = (3.0 / shape[1] as f32).sqrt();
                (0..len).map(|_| rng.random_range(-bound..bound)).collect()
            };
            weights.insert(name, (shape, values));
        }
        TinyLlama { config, weights }
    }

    /// The same model with every weight rounded through `dtype`: what a
    /// checkpoint written in `dtype` holds.
    pub fn rounded(&self, dtype: TensorType) -> Self {
        let weights = self
            .weights
            .iter()
            .map(|(name, (shape, values))| {
                (name.clone(), (shape.clone(), values.iter().map(|&v| round_to(v, dtype)).collect()))
            })
            .collect();
        TinyLlama { config: self.config.clone(), weights }
    }

    fn weight(&self, name: &str) -> &[f32] {
        &self.weights.get(name).unwrap_or_else(|| panic!("no weight {name}")).1
    }

    /// `weight [out, in] @ x`.
    fn linear(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let w = self.weight(name);
        assert_eq!(w.len() % x.len(), 0, "{name}: {} weights for input {}", w.len(), x.len());
        w.chunks_exact(x.len()).map(|row| row.iter().zip(x).map(|(&w, &x)| w as f64 * x).sum()).collect()
    }

    /// HF `LlamaRMSNorm`: `weight * x / sqrt(mean(x^2) + eps)`.
    fn rms_norm(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let mean_square = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let scale = 1.0 / (mean_square + self.config.rms_norm_eps).sqrt();
        x.iter().zip(self.weight(name)).map(|(&v, &w)| w as f64 * v * scale).collect()
    }

    /// Logits `[vocab]` at every position of `tokens`, which start at
    /// position 0.
    pub fn forward(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let c = &self.config;
        let embed = self.weight("model.embed_tokens.weight");
        let mut x: Vec<Vec<f64>> = tokens
            .iter()
            .map(|&t| {
                let row = &embed[t as usize * c.hidden_size..][..c.hidden_size];
                row.iter().map(|&v| v as f64).collect()
            })
            .collect();
        for layer in 0..c.num_hidden_layers {
            let p = format!("model.layers.{layer}");
            let h: Vec<Vec<f64>> =
                x.iter().map(|x| self.rms_norm(&format!("{p}.input_layernorm.weight"), x)).collect();
            let attn = self.attention(&p, &h);
            for (x, a) in x.iter_mut().zip(&attn) {
                let out = self.linear(&format!("{p}.self_attn.o_proj.weight"), a);
                x.iter_mut().zip(out).for_each(|(x, o)| *x += o);
            }
            for x in x.iter_mut() {
                let h = self.rms_norm(&format!("{p}.post_attention_layernorm.weight"), x);
                let gate = self.linear(&format!("{p}.mlp.gate_proj.weight"), &h);
                let up = self.linear(&format!("{p}.mlp.up_proj.weight"), &h);
                let act: Vec<f64> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
                let out = self.linear(&format!("{p}.mlp.down_proj.weight"), &act);
                x.iter_mut().zip(out).for_each(|(x, o)| *x += o);
            }
        }
        let lm_head = if c.tie_word_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" };
        x.iter()
            .map(|x| {
                let h = self.rms_norm("model.norm.weight", x);
                self.linear(lm_head, &h).into_iter().map(|v| v as f32).collect()
            })
            .collect()
    }

    /// Causal self-attention of one layer over the normed inputs `h`
    /// `[seq, hidden]`; returns the heads' outputs `[seq, heads * head_dim]`
    /// before `o_proj`.
    fn attention(&self, p: &str, h: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let c = &self.config;
        let d = c.head_dim();
        // HF `repeat_kv`: KV head g serves query heads g*group..(g+1)*group.
        let group = c.num_attention_heads / c.num_key_value_heads;
        let project = |name: &str| -> Vec<Vec<f64>> {
            h.iter().map(|h| self.linear(&format!("{p}.self_attn.{name}.weight"), h)).collect()
        };
        let (mut q, mut k, v) = (project("q_proj"), project("k_proj"), project("v_proj"));
        for (pos, (q, k)) in q.iter_mut().zip(&mut k).enumerate() {
            q.chunks_exact_mut(d).for_each(|head| rope(head, pos, c.rope_theta));
            k.chunks_exact_mut(d).for_each(|head| rope(head, pos, c.rope_theta));
        }
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![vec![0.0; c.num_attention_heads * d]; h.len()];
        for (i, out) in out.iter_mut().enumerate() {
            for head in 0..c.num_attention_heads {
                let kv = head / group;
                let q = &q[i][head * d..][..d];
                let scores: Vec<f64> = (0..=i)
                    .map(|j| q.iter().zip(&k[j][kv * d..][..d]).map(|(a, b)| a * b).sum::<f64>() * scale)
                    .collect();
                let probs = softmax(&scores);
                for (j, prob) in probs.iter().enumerate() {
                    let v = &v[j][kv * d..][..d];
                    out[head * d..][..d].iter_mut().zip(v).for_each(|(o, v)| *o += prob * v);
                }
            }
        }
        out
    }

    /// Writes `config.json` and an F32 `model.safetensors` into `dir`.
    pub fn write_hf_dir(&self, dir: &Path) {
        self.write_hf_dir_as(dir, TensorType::F32);
    }

    /// Writes `config.json` and `model.safetensors` with every tensor stored
    /// as `dtype` (F32, F16 or BF16; values rounded to nearest even).
    pub fn write_hf_dir_as(&self, dir: &Path, dtype: TensorType) {
        std::fs::create_dir_all(dir).unwrap();
        let json = serde_json::to_string_pretty(&self.config.to_json(dtype)).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
        let bytes: Vec<(&str, &[usize], Vec<u8>)> = self
            .weights
            .iter()
            .map(|(name, (shape, values))| (name.as_str(), shape.as_slice(), to_bytes(values, dtype)))
            .collect();
        let tensors: Vec<(&str, SafeTensor<'_>)> = bytes
            .iter()
            .map(|(name, shape, data)| {
                (*name, SafeTensor { shape: shape.to_vec(), tensor_type: dtype, data })
            })
            .collect();
        safetensors::write_file(&dir.join("model.safetensors"), &tensors).unwrap();
    }
}

fn to_bytes(values: &[f32], dtype: TensorType) -> Vec<u8> {
    match dtype {
        TensorType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        TensorType::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        TensorType::BF16 => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        other => panic!("safetensors cannot hold {other}"),
    }
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// HF `apply_rotary_pos_emb` on one head: `x * cos + rotate_half(x) * sin`,
/// `rotate_half(x) = [-x2, x1]` over the halves. Like HF, `inv_freq =
/// 1 / theta^(2i/d)` and the angle are f32; only cos/sin are taken in f64.
fn rope(head: &mut [f64], position: usize, theta: f64) {
    let half = head.len() / 2;
    for i in 0..half {
        let inv_freq = 1.0 / (theta as f32).powf((2 * i) as f32 / head.len() as f32);
        let angle = (position as f32 * inv_freq) as f64;
        let (sin, cos) = angle.sin_cos();
        let (x1, x2) = (head[i], head[i + half]);
        head[i] = x1 * cos - x2 * sin;
        head[i + half] = x2 * cos + x1 * sin;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(layers: usize, tie: bool) -> TinyConfig {
        TinyConfig {
            num_hidden_layers: layers,
            tie_word_embeddings: tie,
            vocab_size: 40,
            ..TinyConfig::small()
        }
    }

    #[test]
    fn cpu_llama_is_causal() {
        let model = TinyLlama::random(tiny(1, false), 7);
        let long = model.forward(&[3, 1, 4, 1, 5, 9]);
        let short = model.forward(&[3, 1, 4]);
        let other = model.forward(&[3, 1, 4, 2, 7, 1]);
        assert_eq!(long.len(), 6);
        assert_eq!(long[0].len(), 40);
        // The same arithmetic on the same prefix: bitwise equal.
        assert_eq!(&long[..3], &short[..]);
        assert_eq!(&long[..3], &other[..3]);
        assert_ne!(long[3], other[3]);
    }

    /// GQA indexing: repeating each KV head's rows for its query heads
    /// gives an MHA model with the very same outputs.
    #[test]
    fn cpu_llama_gqa_matches_repeated_kv_heads() {
        let gqa = TinyLlama::random(tiny(2, true), 11);
        let c = &gqa.config;
        let (d, group) = (c.head_dim(), c.num_attention_heads / c.num_key_value_heads);
        let mut mha = TinyLlama {
            config: TinyConfig { num_key_value_heads: c.num_attention_heads, ..c.clone() },
            weights: gqa.weights.clone(),
        };
        for (name, (shape, values)) in mha.weights.iter_mut() {
            if name.ends_with("k_proj.weight") || name.ends_with("v_proj.weight") {
                let rows = d * c.hidden_size;
                *values = values.chunks_exact(rows).flat_map(|head| head.repeat(group)).collect();
                shape[0] *= group;
            }
        }
        let tokens = [5, 0, 39, 12, 12];
        assert_eq!(gqa.forward(&tokens), mha.forward(&tokens));
    }

    #[test]
    fn rope_rotates_halves_and_keeps_norms() {
        let mut head = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let original = head.clone();
        rope(&mut head, 0, 10000.0);
        assert_eq!(head, original);
        rope(&mut head, 3, 10000.0);
        // Pair (0, 4) turns by 3 radians (inv_freq 1).
        let (sin, cos) = 3.0f64.sin_cos();
        assert!((head[0] - (1.0 * cos - 5.0 * sin)).abs() < 1e-12);
        assert!((head[4] - (5.0 * cos + 1.0 * sin)).abs() < 1e-12);
        for i in 0..4 {
            let before = original[i].hypot(original[i + 4]);
            assert!((head[i].hypot(head[i + 4]) - before).abs() < 1e-12);
        }
    }

    #[test]
    fn hf_dir_round_trips() {
        let model = TinyLlama::random(tiny(1, true), 3);
        let dir = std::env::temp_dir().join(format!("wgserve-cpu-llama-{}", std::process::id()));
        model.write_hf_dir_as(&dir, TensorType::BF16);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(json["hidden_size"], 64);
        assert_eq!(json["tie_word_embeddings"], true);
        let file = safetensors::SafetensorsFile::open(&dir.join("model.safetensors")).unwrap();
        let rounded = model.rounded(TensorType::BF16);
        assert_eq!(file.tensor_names().len(), rounded.weights.len());
        assert!(!rounded.weights.contains_key("lm_head.weight"));
        for (name, (shape, values)) in &rounded.weights {
            let tensor = file.tensor(name).unwrap();
            assert_eq!((&tensor.shape, tensor.tensor_type), (shape, TensorType::BF16), "{name}");
            assert_eq!(tensor.data, to_bytes(values, TensorType::BF16), "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! A tiny random BERT: its weights, a plain CPU forward pass in f64 (one
//! input at a time, no batching, no padding), and a writer of the Hugging
//! Face layout (config.json, model.safetensors, optionally the
//! sentence-transformers files), so that the loader and the GPU encoder
//! can be checked against an implementation that shares nothing with them.

use std::collections::BTreeMap;
use std::path::Path;

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use wgserve::formats::TensorType;
use wgserve::formats::safetensors::{SafeTensor, write_file};

pub const VOCAB: usize = 60;
pub const HIDDEN: usize = 64;
pub const HEADS: usize = 4;
pub const LAYERS: usize = 2;
pub const INTERMEDIATE: usize = 96;
pub const MAX_POSITIONS: usize = 24;
const TYPES: usize = 2;
const EPS: f64 = 1e-12;

/// How the checkpoint names and pools, as checkpoints in the wild differ.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// `bert.` before every name (task-head checkpoints).
    pub prefix: bool,
    /// LayerNorm `gamma`/`beta` instead of `weight`/`bias` (old checkpoints).
    pub gamma_beta: bool,
    /// sentence-transformers files: mean pooling + Normalize; without
    /// them the loader's default is the same.
    pub pooling: Pooling,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pooling {
    /// No modules.json: mean pooling, normalised (the loader's default).
    Default,
    /// modules.json with a [CLS] pooling and no Normalize module.
    ClsUnnormalised,
}

/// Every tensor by its `BertModel` name (without prefix), f32 values.
pub struct TinyBert {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

fn linear_names() -> Vec<(String, usize, usize)> {
    let mut names = Vec::new();
    for i in 0..LAYERS {
        let l = |leaf: &str| format!("encoder.layer.{i}.{leaf}");
        for leaf in
            ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]
        {
            names.push((l(leaf), HIDDEN, HIDDEN));
        }
        names.push((l("intermediate.dense"), INTERMEDIATE, HIDDEN));
        names.push((l("output.dense"), HIDDEN, INTERMEDIATE));
    }
    names
}

fn norm_names() -> Vec<String> {
    let mut names = vec!["embeddings.LayerNorm".to_string()];
    for i in 0..LAYERS {
        names.push(format!("encoder.layer.{i}.attention.output.LayerNorm"));
        names.push(format!("encoder.layer.{i}.output.LayerNorm"));
    }
    names
}

impl TinyBert {
    pub fn random(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut random = |len: usize, center: f32, scale: f32| -> Vec<f32> {
            (0..len).map(|_| center + rng.random_range(-scale..scale)).collect()
        };
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "embeddings.word_embeddings.weight".into(),
            (vec![VOCAB, HIDDEN], random(VOCAB * HIDDEN, 0.0, 1.0)),
        );
        let positions = random(MAX_POSITIONS * HIDDEN, 0.0, 0.5);
        tensors
            .insert("embeddings.position_embeddings.weight".into(), (vec![MAX_POSITIONS, HIDDEN], positions));
        tensors.insert(
            "embeddings.token_type_embeddings.weight".into(),
            (vec![TYPES, HIDDEN], random(TYPES * HIDDEN, 0.0, 0.5)),
        );
        for (name, rows, cols) in linear_names() {
            // Weights already on the f16 grid: the GPU stores f32 matrices as f16.
            let weights =
                random(rows * cols, 0.0, 0.25).into_iter().map(|w| f16::from_f32(w).to_f32()).collect();
            tensors.insert(format!("{name}.weight"), (vec![rows, cols], weights));
            tensors.insert(format!("{name}.bias"), (vec![rows], random(rows, 0.0, 0.1)));
        }
        for name in norm_names() {
            tensors.insert(format!("{name}.weight"), (vec![HIDDEN], random(HIDDEN, 1.0, 0.2)));
            tensors.insert(format!("{name}.bias"), (vec![HIDDEN], random(HIDDEN, 0.0, 0.1)));
        }
        Self { tensors }
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.tensors[name].1
    }

    /// y[rows] = W x + b for the linear layer `name`.
    fn linear(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let (w, b) = (self.get(&format!("{name}.weight")), self.get(&format!("{name}.bias")));
        let cols = x.len();
        b.iter()
            .enumerate()
            .map(|(r, &bias)| {
                bias as f64 + x.iter().zip(&w[r * cols..][..cols]).map(|(&x, &w)| x * w as f64).sum::<f64>()
            })
            .collect()
    }

    fn layer_norm(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let (w, b) = (self.get(&format!("{name}.weight")), self.get(&format!("{name}.bias")));
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let variance = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let scale = 1.0 / (variance + EPS).sqrt();
        x.iter().zip(w.iter().zip(b)).map(|(v, (&w, &b))| (v - mean) * scale * w as f64 + b as f64).collect()
    }

    /// The embedding of one input (token type 0 throughout).
    pub fn embed(&self, ids: &[u32], pooling: Pooling) -> Vec<f32> {
        let row = |name: &str, r: usize| self.get(name)[r * HIDDEN..][..HIDDEN].to_vec();
        let mut x: Vec<Vec<f64>> = ids
            .iter()
            .enumerate()
            .map(|(t, &id)| {
                let (w, p, k) = (
                    row("embeddings.word_embeddings.weight", id as usize),
                    row("embeddings.position_embeddings.weight", t),
                    row("embeddings.token_type_embeddings.weight", 0),
                );
                let sum: Vec<f64> = (0..HIDDEN).map(|c| (w[c] + p[c] + k[c]) as f64).collect();
                self.layer_norm("embeddings.LayerNorm", &sum)
            })
            .collect();
        let d = HIDDEN / HEADS;
        for i in 0..LAYERS {
            let l = |leaf: &str| format!("encoder.layer.{i}.{leaf}");
            let q: Vec<Vec<f64>> = x.iter().map(|h| self.linear(&l("attention.self.query"), h)).collect();
            let k: Vec<Vec<f64>> = x.iter().map(|h| self.linear(&l("attention.self.key"), h)).collect();
            let v: Vec<Vec<f64>> = x.iter().map(|h| self.linear(&l("attention.self.value"), h)).collect();
            let mut next = Vec::with_capacity(x.len());
            for t in 0..x.len() {
                let mut context = vec![0f64; HIDDEN];
                for head in 0..HEADS {
                    let range = head * d..(head + 1) * d;
                    let scores: Vec<f64> = (0..x.len())
                        .map(|j| {
                            q[t][range.clone()]
                                .iter()
                                .zip(&k[j][range.clone()])
                                .map(|(a, b)| a * b)
                                .sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for c in range.clone() {
                        context[c] = (0..x.len()).map(|j| weights[j] * v[j][c]).sum::<f64>() / total;
                    }
                }
                let out = self.linear(&l("attention.output.dense"), &context);
                let residual: Vec<f64> = x[t].iter().zip(&out).map(|(a, b)| a + b).collect();
                let h = self.layer_norm(&l("attention.output.LayerNorm"), &residual);
                let inner: Vec<f64> = self
                    .linear(&l("intermediate.dense"), &h)
                    .into_iter()
                    .map(|v| 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)))
                    .collect();
                let out = self.linear(&l("output.dense"), &inner);
                let residual: Vec<f64> = h.iter().zip(&out).map(|(a, b)| a + b).collect();
                next.push(self.layer_norm(&l("output.LayerNorm"), &residual));
            }
            x = next;
        }
        let pooled: Vec<f64> = match pooling {
            Pooling::Default => {
                (0..HIDDEN).map(|c| x.iter().map(|h| h[c]).sum::<f64>() / x.len() as f64).collect()
            }
            Pooling::ClsUnnormalised => x[0].clone(),
        };
        let norm = match pooling {
            Pooling::Default => pooled.iter().map(|v| v * v).sum::<f64>().sqrt(),
            Pooling::ClsUnnormalised => 1.0,
        };
        pooled.iter().map(|v| (v / norm) as f32).collect()
    }

    /// Writes the checkpoint in `layout`, leaving out the tensors in `omit`.
    pub fn write_hf_dir(&self, dir: &Path, layout: Layout, omit: &[&str]) {
        let config = json!({
            "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
            "vocab_size": VOCAB, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS, "intermediate_size": INTERMEDIATE,
            "max_position_embeddings": MAX_POSITIONS, "type_vocab_size": TYPES,
            "layer_norm_eps": EPS, "position_embedding_type": "absolute"
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let file_name = |name: &str| {
            let name = if layout.gamma_beta && name.contains("LayerNorm") {
                name.replace(".weight", ".gamma").replace(".bias", ".beta")
            } else {
                name.to_string()
            };
            if layout.prefix { format!("bert.{name}") } else { name }
        };
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .filter(|(name, _)| !omit.contains(&name.as_str()))
            .map(|(name, (shape, values))| {
                (file_name(name), shape.clone(), values.iter().flat_map(|v| v.to_le_bytes()).collect())
            })
            .collect();
        let tensors: Vec<(&str, SafeTensor)> = bytes
            .iter()
            .map(|(name, shape, data)| {
                (name.as_str(), SafeTensor { shape: shape.clone(), tensor_type: TensorType::F32, data })
            })
            .collect();
        write_file(&dir.join("model.safetensors"), &tensors).unwrap();
        if layout.pooling == Pooling::ClsUnnormalised {
            let modules = json!([
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
            ]);
            std::fs::write(dir.join("modules.json"), modules.to_string()).unwrap();
            std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
            let pooling = json!({"word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": true,
                "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false});
            std::fs::write(dir.join("1_Pooling/config.json"), pooling.to_string()).unwrap();
        }
    }
}

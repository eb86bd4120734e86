//! `shaders/rope.wgsl`: rotary embedding in place on the Q and K heads.

use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct RopeBindings<'a> {
    /// Uniform; `num_tokens` rows.
    pub step: &'a GpuBuffer,
    /// [M, (Hq + 2 Hkv) D] f32, fused Q/K/V; Q and K heads rotated in place.
    pub qkv: &'a GpuBuffer,
    /// [M] u32, position of each token.
    pub positions: &'a GpuBuffer,
    /// [max_positions, D / 2] (cos, sin) f32 pairs, from `rope_table`.
    pub rope_table: &'a GpuBuffer,
}

impl KernelBindings for RopeBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.qkv, self.positions, self.rope_table]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RopeKey {
    pub head_dim: u32,
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    /// Rotate halves (i, i + D/2) instead of adjacent pairs (2i, 2i + 1):
    /// Hugging Face weights, and GGUF files of the architectures llama.cpp
    /// marks `LLAMA_ROPE_TYPE_NEOX` (Gemma 3 among them).
    pub neox: bool,
}

impl RopeKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "rope",
            source: include_str!("../../../shaders/rope.wgsl"),
            entry_point: "rope",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageReadWrite,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
            ],
            constants: vec![
                ("HEAD_DIM", self.head_dim as f64),
                ("N_Q_HEADS", self.n_q_heads as f64),
                ("N_KV_HEADS", self.n_kv_heads as f64),
                ("NEOX", if self.neox { 1.0 } else { 0.0 }),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups((self.n_q_heads + self.n_kv_heads) * self.head_dim / 2), num_tokens, 1]
    }
}

/// The (cos, sin) table the kernel reads: `[max_positions, head_dim / 2]`,
/// computed in f32 the way Hugging Face does (inverse frequencies in f32,
/// angle = f32(position) * inv_freq), with cos/sin taken in f64.
pub fn rope_table(head_dim: u32, theta: f32, max_positions: u32) -> Vec<[f32; 2]> {
    rope_table_scaled(head_dim, theta, max_positions, &[], 1.0)
}

/// `rope_table` with frequency i divided by `factors[i]` (RoPE scaling; an
/// empty slice divides by nothing) and cos and sin multiplied by
/// `attention_factor`, as transformers folds longrope's scale into them.
pub fn rope_table_scaled(
    head_dim: u32,
    theta: f32,
    max_positions: u32,
    factors: &[f32],
    attention_factor: f32,
) -> Vec<[f32; 2]> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let freq = 1.0f32 / theta.powf((2 * i) as f32 / head_dim as f32);
            factors.get(i as usize).map_or(freq, |factor| freq / factor)
        })
        .collect();
    let mut table = Vec::with_capacity((max_positions * half) as usize);
    for pos in 0..max_positions {
        for &freq in &inv_freq {
            let angle = (pos as f32 * freq) as f64;
            table.push([(angle.cos() as f32) * attention_factor, (angle.sin() as f32) * attention_factor]);
        }
    }
    table
}

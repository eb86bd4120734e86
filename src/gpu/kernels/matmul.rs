//! `shaders/matmul.wgsl`: y[M, N] (+)= x[M, K] · W[N, K]^T.
//! Bindings: step, x, w_data, w_scales, y.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::groups;

/// How a weight matrix is packed on the GPU (see `model::weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl WeightFormat {
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::Q4_1 => "q4_1",
        }
    }
}

/// Tokens per invocation: each dequantized weight block is reused this often.
pub const MAX_TILE_TOKENS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulKey {
    pub format: WeightFormat,
    pub k: u32,
    pub n: u32,
    pub tile_tokens: u32,
    /// Add into `y` instead of overwriting it (fuses a residual add).
    pub accumulate: bool,
}

impl MatmulKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        let entry_point = match self.format {
            WeightFormat::F32 => "matmul_f32",
            WeightFormat::F16 => "matmul_f16",
            WeightFormat::Q8_0 => "matmul_q8_0",
            WeightFormat::Q4_0 => "matmul_q4_0",
            WeightFormat::Q4_1 => "matmul_q4_1",
        };
        KernelSpec {
            label: "matmul",
            source: include_str!("../../../shaders/matmul.wgsl"),
            entry_point,
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
            ],
            constants: vec![
                ("K", self.k as f64),
                ("N", self.n as f64),
                ("TILE_TOKENS", self.tile_tokens as f64),
                ("ACCUMULATE", if self.accumulate { 1.0 } else { 0.0 }),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups(self.n), num_tokens.div_ceil(self.tile_tokens), 1]
    }

    /// Decode steps (few tokens) waste registers on a wide tile; prefill
    /// steps reuse each weight block across the widest tile.
    pub fn tile_for(num_tokens: u32) -> u32 {
        if num_tokens <= 1 {
            1
        } else if num_tokens <= 4 {
            4
        } else {
            MAX_TILE_TOKENS
        }
    }
}

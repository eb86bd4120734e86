//! `shaders/matmul.wgsl`: y[M, N] (+)= x[M, K] · W[N, K]^T.
//! Bindings: step, x, w_data, w_scales, y.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::WORKGROUP_SIZE;

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

/// The largest register tile: rows x tokens per invocation (64 partial sums).
pub const MAX_TILE_ROWS: u32 = 8;
pub const MAX_TILE_TOKENS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulKey {
    pub format: WeightFormat,
    pub k: u32,
    pub n: u32,
    /// Output rows per invocation: each loaded activation serves this many.
    pub tile_rows: u32,
    /// Tokens per invocation: each dequantized weight serves this many.
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
                ("TILE_ROWS", self.tile_rows as f64),
                ("TILE_TOKENS", self.tile_tokens as f64),
                ("ACCUMULATE", if self.accumulate { 1.0 } else { 0.0 }),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [self.n.div_ceil(self.tile_rows * WORKGROUP_SIZE), num_tokens.div_ceil(self.tile_tokens), 1]
    }

    /// The (rows, tokens) tile for a step of `num_tokens`: decode steps
    /// spend the registers on rows, prefill steps on tokens too.
    pub fn tile_for(num_tokens: u32) -> (u32, u32) {
        match num_tokens {
            0..=1 => (8, 1),
            2..=3 => (4, 2),
            4..=7 => (4, 4),
            _ => (4, 8),
        }
    }

    /// Every tile shape `tile_for` can pick.
    pub const TILES: [(u32, u32); 4] = [(8, 1), (4, 2), (4, 4), (4, 8)];
}

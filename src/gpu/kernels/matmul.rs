//! `shaders/matmul.wgsl`: y[M, N] (+)= x[M, K] · W[N, K]^T (+ bias[N]).
//! Bindings: `MatmulBindings`. A matrix over the storage binding limit
//! runs as row chunks, each keyed with its first row and y's row stride.
//! The 5- and 6-bit, K-quant and IQ4 formats run `shaders/matmul_quant.wgsl`
//! (see `matmul_quant.rs`) with the same bindings, tiles and dispatch.
//! Each shader holds both kernel families: the CPU family's register tiles
//! and the GPU family's `matvec_gpu` / `matmul_gpu` (`KernelFamily`).

use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::glu::GluActivation;
use super::{KernelBindings, KernelFamily, matmul_quant};

/// How a weight matrix is packed on the GPU (see `model::weights` and
/// `model::quant_pack`). Quantized formats keep ggml's names.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
}

impl WeightFormat {
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::Q4_1 => "q4_1",
            WeightFormat::Q5_0 => "q5_0",
            WeightFormat::Q5_1 => "q5_1",
            WeightFormat::Q2_K => "q2_k",
            WeightFormat::Q3_K => "q3_k",
            WeightFormat::Q4_K => "q4_k",
            WeightFormat::Q5_K => "q5_k",
            WeightFormat::Q6_K => "q6_k",
            WeightFormat::IQ4_NL => "iq4_nl",
            WeightFormat::IQ4_XS => "iq4_xs",
        }
    }
}

/// How many rows and tokens one invocation computes (CPU family), or
/// which kernel runs (GPU family: `Rows8` the matvec, a workgroup per 8
/// rows of one token; `Rows4Tokens4` the tiled matmul, a workgroup per
/// 64 rows x 64 tokens, each invocation 4 x 4 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tile {
    /// 8 rows x 1 token: decode steps and small batches.
    Rows8,
    /// 4 rows x 4 tokens: prefill and larger batches.
    Rows4Tokens4,
}

/// The most tokens the GPU family's matvec (`matvec_gpu`) takes in one
/// workgroup, each weight read once for all of them: MV_TOKENS in
/// shaders/matmul_gpu.wgsl, as llama.cpp's mul_mat_vec takes up to 8
/// columns. Decode steps of up to this many sequences run it.
pub const GPU_MATVEC_TOKENS: u32 = 8;

impl Tile {
    pub const ALL: [Tile; 2] = [Tile::Rows8, Tile::Rows4Tokens4];

    /// The tile `family` runs a step of `num_tokens` tokens with. CPU:
    /// below four tokens a 4x4 tile would compute mostly padding. GPU: up
    /// to `GPU_MATVEC_TOKENS` the matvec, which reads each weight once for
    /// all of them, where a 64x64 tile would compute mostly padding.
    pub fn for_step(family: KernelFamily, num_tokens: u32) -> Tile {
        let matvec_tokens = match family {
            KernelFamily::Cpu => 3,
            KernelFamily::Gpu => GPU_MATVEC_TOKENS,
        };
        if num_tokens <= matvec_tokens { Tile::Rows8 } else { Tile::Rows4Tokens4 }
    }

    pub(crate) fn rows(self) -> u32 {
        match self {
            Tile::Rows8 => 8,
            Tile::Rows4Tokens4 => 4,
        }
    }

    pub(crate) fn tokens(self) -> u32 {
        match self {
            Tile::Rows8 => 1,
            Tile::Rows4Tokens4 => 4,
        }
    }

    /// Invocations per workgroup (the `@workgroup_size` of its entry points).
    fn workgroup_size(self) -> u32 {
        match self {
            Tile::Rows8 => 8,
            Tile::Rows4Tokens4 => 16,
        }
    }
}

/// The buffers of one matmul dispatch (both matmul shaders).
pub struct MatmulBindings<'a> {
    /// Uniform; `num_tokens` is M.
    pub step: &'a GpuBuffer,
    /// [M, K] f32
    pub x: &'a GpuBuffer,
    /// [N, K/32, words per block] packed weights (a row chunk of W)
    pub w_data: &'a GpuBuffer,
    /// [N, ...] block scales, format-specific (a placeholder for floats)
    pub w_scales: &'a GpuBuffer,
    /// [M, y_stride] f32
    pub y: &'a GpuBuffer,
    /// [N] f32; any small buffer when the key has no bias (never read)
    pub bias: &'a GpuBuffer,
}

impl KernelBindings for MatmulBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.x, self.w_data, self.w_scales, self.y, self.bias]
    }
}

/// Binding kinds of `MatmulBindings`, in order.
pub(crate) const BINDINGS: &[BindingKind] = &[
    BindingKind::Uniform,
    BindingKind::StorageRead,
    BindingKind::StorageRead,
    BindingKind::StorageRead,
    BindingKind::StorageReadWrite,
    BindingKind::StorageRead,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatmulKey {
    pub format: WeightFormat,
    pub k: u32,
    /// Rows of W this dispatch computes (a chunk's, or all of them).
    pub n: u32,
    /// The first of them among W's rows: the first column of y written.
    pub row_start: u32,
    /// Row length of y: all rows of W (`n` when W is one chunk).
    pub y_stride: u32,
    pub tile: Tile,
    /// Add into `y` instead of overwriting it (fuses a residual add).
    pub accumulate: bool,
    /// Add `bias[row]` to every output row.
    pub bias: bool,
    pub family: KernelFamily,
    /// The gated MLP fused into the matvec (CPU family, `Tile::Rows8`
    /// only): W is [gate; up] (n = 2 I) and y receives act(gate) * up,
    /// [M, I]. Needs the whole matrix in one chunk, no bias, no accumulate.
    pub glu: Option<GluActivation>,
    /// Use the adapter's subgroups (of 8 or more lanes,
    /// `GpuContext::kernel_subgroups`): the CPU family loads a block of
    /// activations once per subgroup and shuffles it to its lanes
    /// (`shaders/x_loads_subgroup.wgsl`); the GPU family's matvec sums a
    /// row's partial dot products by shuffles instead of a tree in
    /// workgroup memory (`shaders/matvec_gpu_subgroup.wgsl`).
    pub subgroups: bool,
    /// The GPU family's prompt tile (`Tile::Rows4Tokens4`) stages its
    /// operands and sums each 32-wide block's products in f16
    /// (`shaders/matmul_gpu_f16.wgsl`; `--f16-arithmetic`, needs the
    /// adapter's `SHADER_F16`). Changes results; false elsewhere.
    pub f16_arithmetic: bool,
}

/// `shader` (a concat! of a matmul shader's files) with the files that
/// depend on whether `key` uses subgroups appended: the CPU family's
/// activation loads and the GPU family's matvec.
macro_rules! subgroup_variant {
    ($key:expr, $shader:expr) => {
        super::with_subgroup_files!(
            $key.subgroups,
            $shader,
            plain: ["../../../shaders/x_loads.wgsl", "../../../shaders/matvec_gpu.wgsl"],
            subgroup: ["../../../shaders/x_loads_subgroup.wgsl", "../../../shaders/matvec_gpu_subgroup.wgsl"]
        )
    };
}
pub(crate) use subgroup_variant;

/// The source of a matmul shader: its `files` (paths relative to this
/// directory), the GPU family's prompt tile arithmetic (f16, with the
/// `enable f16;` WGSL wants before anything else, or f32), then the
/// files of `subgroup_variant`.
macro_rules! matmul_source {
    ($key:expr, [$($file:literal),+]) => {
        if $key.f16_arithmetic {
            super::matmul::subgroup_variant!(
                $key,
                concat!("enable f16;\n", $(include_str!($file)),+, include_str!("../../../shaders/matmul_gpu_f16.wgsl"))
            )
        } else {
            super::matmul::subgroup_variant!(
                $key,
                concat!($(include_str!($file)),+, include_str!("../../../shaders/matmul_gpu_f32.wgsl"))
            )
        }
    };
}
pub(crate) use matmul_source;

/// The GPU family's entry point of a tile, the same in both matmul shaders.
pub(crate) fn gpu_entry_point(tile: Tile) -> &'static str {
    match tile {
        Tile::Rows8 => "matvec_gpu",
        Tile::Rows4Tokens4 => "matmul_gpu",
    }
}

impl MatmulKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        if let Some(layout) = matmul_quant::QuantLayout::of(self.format) {
            return matmul_quant::spec(self, layout);
        }
        let entry_point = match (self.tile, self.format) {
            _ if self.family == KernelFamily::Gpu => gpu_entry_point(self.tile),
            (Tile::Rows8, WeightFormat::F32 | WeightFormat::F16) => "matvec_float",
            (Tile::Rows8, WeightFormat::Q8_0) => "matvec_q8_0",
            (Tile::Rows8, WeightFormat::Q4_0) => "matvec_q4_0",
            (Tile::Rows8, WeightFormat::Q4_1) => "matvec_q4_1",
            (Tile::Rows4Tokens4, WeightFormat::F32 | WeightFormat::F16) => "matmul_float",
            (Tile::Rows4Tokens4, WeightFormat::Q8_0) => "matmul_q8_0",
            (Tile::Rows4Tokens4, WeightFormat::Q4_0) => "matmul_q4_0",
            (Tile::Rows4Tokens4, WeightFormat::Q4_1) => "matmul_q4_1",
            // Never reached: `QuantLayout::of` took these above.
            (
                _,
                WeightFormat::Q5_0
                | WeightFormat::Q5_1
                | WeightFormat::Q2_K
                | WeightFormat::Q3_K
                | WeightFormat::Q4_K
                | WeightFormat::Q5_K
                | WeightFormat::Q6_K
                | WeightFormat::IQ4_NL
                | WeightFormat::IQ4_XS,
            ) => "matvec_float",
        };
        let mut constants = self.output_constants();
        constants.push(("HALF_WEIGHTS", if self.format == WeightFormat::F16 { 1.0 } else { 0.0 }));
        if self.family == KernelFamily::Gpu {
            // The GPU family's `weights8` picks the format by this.
            let weights = match self.format {
                WeightFormat::Q8_0 => 1,
                WeightFormat::Q4_0 => 2,
                WeightFormat::Q4_1 => 3,
                _ => 0,
            };
            constants.push(("WEIGHTS", weights as f64));
        }
        KernelSpec {
            label: "matmul",
            source: matmul_source!(
                self,
                [
                    "../../../shaders/matmul.wgsl",
                    "../../../shaders/matvec_rows.wgsl",
                    "../../../shaders/mul_add.wgsl",
                    "../../../shaders/activation.wgsl",
                    "../../../shaders/matmul_gpu.wgsl"
                ]
            ),
            entry_point,
            bindings: BINDINGS,
            constants,
        }
    }

    /// The constants every matmul shader reads: its shape, where its rows
    /// land in y, and what it does there.
    pub(crate) fn output_constants(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("K", self.k as f64),
            ("N", self.n as f64),
            ("ROW_START", self.row_start as f64),
            ("Y_STRIDE", self.y_stride as f64),
            ("ACCUMULATE", if self.accumulate { 1.0 } else { 0.0 }),
            ("BIAS", if self.bias { 1.0 } else { 0.0 }),
            ("GLU", if self.glu.is_some() { 1.0 } else { 0.0 }),
            ("GLU_ACTIVATION", self.glu.map_or(0.0, GluActivation::id)),
        ]
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        if self.family == KernelFamily::Gpu {
            // Rows and tokens per workgroup: MV_ROWS / MM_TILE in the shaders.
            return match self.tile {
                Tile::Rows8 => [self.n.div_ceil(8), num_tokens.div_ceil(GPU_MATVEC_TOKENS), 1],
                Tile::Rows4Tokens4 => [self.n.div_ceil(64), num_tokens.div_ceil(64), 1],
            };
        }
        // With GLU an invocation takes 4 gate and 4 up rows: n / 8 all the same.
        [
            self.n.div_ceil(self.tile.rows() * self.tile.workgroup_size()),
            num_tokens.div_ceil(self.tile.tokens()),
            1,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_runs_its_matvec_up_to_its_token_count() {
        for (family, matvec_tokens) in [(KernelFamily::Cpu, 3), (KernelFamily::Gpu, GPU_MATVEC_TOKENS)] {
            for tokens in 1..=matvec_tokens {
                assert_eq!(Tile::for_step(family, tokens), Tile::Rows8, "{family:?} {tokens}");
            }
            assert_eq!(Tile::for_step(family, matvec_tokens + 1), Tile::Rows4Tokens4, "{family:?}");
        }
    }
}

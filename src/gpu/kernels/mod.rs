//! Launch code of each WGSL kernel: its pipeline key (the specialization),
//! bindings in order, and dispatch size. Shapes are written beside each
//! binding in the `.wgsl` files.

use super::GpuBuffer;

pub mod argmax;
pub mod attention;
pub mod embedding;
pub mod encoder_attention;
pub mod encoder_embedding;
pub mod gelu;
pub mod glu;
pub mod head_rmsnorm;
pub mod kv_write;
pub mod layernorm;
pub mod matmul;
pub mod matmul_quant;
pub mod pooling;
pub mod rmsnorm;
pub mod rope;

/// The per-step uniform every kernel reads (`struct Step` in the shaders).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub num_tokens: u32,
    pub num_seqs: u32,
    pub max_blocks_per_seq: u32,
    pub _pad: u32,
}

/// A kernel's buffers by name: each launch file defines one struct of
/// named buffers per kernel, and only its `in_binding_order` knows the
/// shader's `@binding(i)` numbers, so callers never count positions.
pub trait KernelBindings {
    fn in_binding_order(&self) -> Vec<&GpuBuffer>;
}

pub(crate) const WORKGROUP_SIZE: u32 = 64;

pub(crate) fn groups(items: u32) -> u32 {
    items.div_ceil(WORKGROUP_SIZE)
}

//! Launch code of each WGSL kernel: its pipeline key (the specialization),
//! bindings in order, and dispatch size. Shapes are written beside each
//! binding in the `.wgsl` files.
//!
//! The matmul and attention kernels come in two families (`KernelFamily`):
//! one shaped for CPU drivers (lavapipe), one for real GPUs. Both are in
//! every key, so one adapter can build and test both.

use super::GpuBuffer;

/// `shader` (a `concat!` of a kernel's files) with one of two lists of
/// files appended: `subgroup` where `subgroups` (the adapter has subgroups
/// of 8 or more lanes, `GpuContext::kernel_subgroups`: loads shared and sums
/// taken through the subgroup), else `plain` (the same functions and entry
/// points without subgroup operations). Paths are relative to this
/// directory.
macro_rules! with_subgroup_files {
    ($subgroups:expr, $shader:expr, plain: [$($plain:literal),+], subgroup: [$($subgroup:literal),+]) => {
        if $subgroups {
            concat!($shader, $(include_str!($subgroup)),+)
        } else {
            concat!($shader, $(include_str!($plain)),+)
        }
    };
}
pub(crate) use with_subgroup_files;

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

/// Which shape of matmul and attention kernels to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelFamily {
    /// Tiny workgroups, register tiles, no workgroup memory: what a CPU
    /// driver (llvmpipe) runs fast. See the header of `shaders/matmul.wgsl`.
    Cpu,
    /// Workgroups of 64-256 invocations, the K dimension split over them
    /// and reduced through the subgroup (or in workgroup memory without
    /// subgroups), decode steps of up to 8 tokens reading each weight
    /// once, prefill tiled through workgroup memory: what a discrete or
    /// integrated GPU runs fast.
    Gpu,
}

impl KernelFamily {
    /// The family an adapter of this type runs best.
    pub fn for_device_type(device_type: wgpu::DeviceType) -> Self {
        match device_type {
            wgpu::DeviceType::Cpu => KernelFamily::Cpu,
            wgpu::DeviceType::DiscreteGpu
            | wgpu::DeviceType::IntegratedGpu
            | wgpu::DeviceType::VirtualGpu
            | wgpu::DeviceType::Other => KernelFamily::Gpu,
        }
    }

    /// Parses `cpu`, `gpu` or `auto` (`None`: chosen by the adapter).
    pub fn parse_choice(name: &str) -> Result<Option<Self>, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Some(KernelFamily::Cpu)),
            "gpu" => Ok(Some(KernelFamily::Gpu)),
            "auto" | "" => Ok(None),
            other => Err(format!("unknown kernel family {other:?}: expected cpu, gpu or auto")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KernelFamily::Cpu => "cpu",
            KernelFamily::Gpu => "gpu",
        }
    }
}

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

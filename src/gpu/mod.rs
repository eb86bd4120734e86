//! The GPU layer: the wgpu context and its limits, buffers, the pipeline
//! cache (typed keys), the KV-cache pages, and the launch code of each WGSL
//! kernel. It knows nothing of models or requests: kernels take buffers and
//! shapes.

pub mod buffers;
pub mod context;
pub mod kernels;
pub mod kv_cache;
pub mod pipelines;
pub mod probes;
pub mod profiler;

pub use buffers::{GpuBuffer, ReadbackBuffer};
pub use context::{GpuContext, GpuError};
pub use pipelines::{KernelKey, PipelineCache};

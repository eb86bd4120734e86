//! A kernel bound to its buffers: the pipeline, its key and the bind group
//! it always runs with, built once at load. Forward passes only record.

use std::sync::Arc;

use crate::gpu::kernels::KernelBindings;
use crate::gpu::pipelines::Kernel;
use crate::gpu::profiler::{DispatchWork, KernelKind, Recorder};
use crate::gpu::{GpuBuffer, GpuContext, KernelKey, PipelineCache};

pub struct Bound {
    key: KernelKey,
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
}

impl Bound {
    pub fn new(ctx: &GpuContext, cache: &mut PipelineCache, key: KernelKey, buffers: &[&GpuBuffer]) -> Self {
        let kernel = cache.get(ctx, key);
        let raw: Vec<&wgpu::Buffer> = buffers.iter().map(|b| &b.buffer).collect();
        let bind_group = kernel.bind_group(ctx, &raw);
        Self { key, kernel, bind_group }
    }

    /// Binds a kernel to its named buffers.
    pub fn bind(
        ctx: &GpuContext,
        cache: &mut PipelineCache,
        key: KernelKey,
        bindings: &impl KernelBindings,
    ) -> Self {
        Self::new(ctx, cache, key, &bindings.in_binding_order())
    }

    /// Dispatches over `count` items (tokens, sampled rows or sequences).
    pub fn record(&self, pass: &mut dyn Recorder, count: u32) {
        let work = DispatchWork::kernel(KernelKind::of(&self.key));
        pass.dispatch(work, &self.kernel, &self.bind_group, self.key.workgroups(count));
    }
}

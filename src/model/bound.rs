//! A kernel bound to its buffers: the pipeline, its key and the bind group
//! it always runs with, built once at load. Forward passes only record.

use std::sync::Arc;

use crate::gpu::kernels::KernelBindings;
use crate::gpu::pipelines::Kernel;
use crate::gpu::profiler::{DispatchWork, KernelKind, Recorder};
use crate::gpu::{GpuContext, KernelKey, PipelineCache};

pub struct Bound {
    key: KernelKey,
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
}

impl Bound {
    /// Binds a kernel to its named buffers (the launch file's bindings
    /// struct for `key`).
    pub fn bind(
        ctx: &GpuContext,
        cache: &mut PipelineCache,
        key: KernelKey,
        bindings: &impl KernelBindings,
    ) -> Self {
        let kernel = cache.get(ctx, key);
        let bind_group = kernel.bind(ctx, bindings);
        Self { key, kernel, bind_group }
    }

    /// Dispatches over `count` items (tokens, sampled rows or sequences).
    pub fn record(&self, pass: &mut dyn Recorder, count: u32) {
        let work = DispatchWork::kernel(KernelKind::of(&self.key));
        pass.dispatch(work, &self.kernel, &self.bind_group, self.key.workgroups(count));
    }
}

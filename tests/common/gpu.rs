//! Test harness: one GPU context, run one kernel, read buffers back.

use wgserve::gpu::kernels::{KernelFamily, StepParams};
use wgserve::gpu::{GpuBuffer, GpuContext, KernelKey, PipelineCache, ReadbackBuffer};

/// Both kernel families: kernel tests run each against the CPU reference.
pub const FAMILIES: [KernelFamily; 2] = [KernelFamily::Cpu, KernelFamily::Gpu];

/// The GPU context of a whole-model test, with the kernel family named by
/// `WGSERVE_KERNELS` (`cpu`, `gpu`, or unset / `auto`: the adapter's), so
/// that `WGSERVE_KERNELS=gpu cargo test --test golden` runs the GPU kernels
/// on lavapipe and `scripts/gpu-check.sh` both families on a real GPU.
pub fn context_from_env() -> GpuContext {
    let choice = std::env::var("WGSERVE_KERNELS").unwrap_or_default();
    let family = KernelFamily::parse_choice(&choice).unwrap_or_else(|e| panic!("WGSERVE_KERNELS: {e}"));
    let ctx = GpuContext::new().expect("a wgpu adapter (run scripts/setup.sh for software Vulkan)");
    let ctx = ctx.with_kernels(family);
    eprintln!("{} kernels on {}", ctx.kernels().name(), ctx.adapter_info.name);
    ctx
}

pub struct Harness {
    pub ctx: GpuContext,
    pub cache: PipelineCache,
}

impl Harness {
    pub fn new() -> Self {
        let ctx = GpuContext::new().expect("a wgpu adapter (run scripts/setup.sh for software Vulkan)");
        Self { ctx, cache: PipelineCache::new() }
    }

    /// The matmul kernels to test: each family, without and (where the
    /// adapter has them) with subgroups (`MatmulKey::subgroups`).
    pub fn matmul_variants(&self) -> Vec<(KernelFamily, bool)> {
        let subgroups: &[bool] = if self.ctx.kernel_subgroups() { &[false, true] } else { &[false] };
        [KernelFamily::Cpu, KernelFamily::Gpu]
            .into_iter()
            .flat_map(|family| subgroups.iter().map(move |&s| (family, s)))
            .collect()
    }

    pub fn step(&self, num_tokens: u32, num_seqs: u32, max_blocks_per_seq: u32) -> GpuBuffer {
        let buffer = GpuBuffer::uniform(&self.ctx, "step", std::mem::size_of::<StepParams>() as u64);
        let params = StepParams { num_tokens, num_seqs, max_blocks_per_seq, _pad: 0 };
        buffer.write(&self.ctx, bytemuck::bytes_of(&params));
        buffer
    }

    pub fn f32s(&self, values: &[f32]) -> GpuBuffer {
        GpuBuffer::storage_init(&self.ctx, "f32s", bytemuck::cast_slice(values)).unwrap()
    }

    pub fn u32s(&self, values: &[u32]) -> GpuBuffer {
        GpuBuffer::storage_init(&self.ctx, "u32s", bytemuck::cast_slice(values)).unwrap()
    }

    pub fn zeros(&self, len: usize) -> GpuBuffer {
        GpuBuffer::storage_zeroed(&self.ctx, "zeros", (len * 4) as u64).unwrap()
    }

    pub fn run(&mut self, key: KernelKey, buffers: &[&GpuBuffer], workgroups: [u32; 3]) {
        let kernel = self.cache.get(&self.ctx, key);
        let raw: Vec<&wgpu::Buffer> = buffers.iter().map(|b| &b.buffer).collect();
        let bind_group = kernel.bind_group(&self.ctx, &raw);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            kernel.dispatch(&mut pass, &bind_group, workgroups);
        }
        self.ctx.queue.submit([encoder.finish()]);
    }

    pub fn read_u32(&self, buffer: &GpuBuffer, len: usize) -> Vec<u32> {
        let readback = ReadbackBuffer::new(&self.ctx, "readback", (len * 4) as u64);
        let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
        readback.record_copy(&mut encoder, buffer, (len * 4) as u64);
        self.ctx.queue.submit([encoder.finish()]);
        let bytes = readback.read(&self.ctx, len * 4).unwrap();
        bytemuck::cast_slice(&bytes).to_vec()
    }

    pub fn read_f32(&self, buffer: &GpuBuffer, len: usize) -> Vec<f32> {
        self.read_u32(buffer, len).into_iter().map(f32::from_bits).collect()
    }
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise, naming the first miss.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tolerance = atol + rtol * w.abs();
        assert!(
            (g - w).abs() <= tolerance && g.is_finite(),
            "{what}: element {i}: got {g}, want {w} (tolerance {tolerance})"
        );
    }
}

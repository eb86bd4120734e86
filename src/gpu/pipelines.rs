//! Compute pipelines, built once with explicit layouts and cached under a
//! typed key. Each kernel's launch file says how its key becomes a
//! `KernelSpec` (shader, entry point, bindings, override constants).

use std::collections::HashMap;
use std::sync::Arc;

use super::context::GpuContext;
use super::kernels::{
    KernelBindings, argmax::ArgmaxKey, attention::AttentionKey, embedding::EmbeddingKey,
    encoder_attention::EncoderAttentionKey, encoder_embedding::EncoderEmbeddingKey, gelu::GeluKey,
    glu::GluKey, head_rmsnorm::HeadRmsNormKey, kv_write::KvWriteKey, layernorm::LayerNormKey,
    matmul::MatmulKey, pooling::PoolingKey, rmsnorm::RmsNormKey,
};

/// Every pipeline we build, with the specialization it was built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelKey {
    Embedding(EmbeddingKey),
    RmsNorm(RmsNormKey),
    HeadRmsNorm(HeadRmsNormKey),
    Matmul(MatmulKey),
    KvWrite(KvWriteKey),
    Attention(AttentionKey),
    Glu(GluKey),
    Argmax(ArgmaxKey),
    // Encoders (BERT).
    EncoderEmbedding(EncoderEmbeddingKey),
    LayerNorm(LayerNormKey),
    Gelu(GeluKey),
    EncoderAttention(EncoderAttentionKey),
    Pooling(PoolingKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindingKind {
    Uniform,
    StorageRead,
    StorageReadWrite,
}

/// What it takes to build one pipeline.
pub struct KernelSpec {
    pub label: &'static str,
    pub source: &'static str,
    pub entry_point: &'static str,
    pub bindings: &'static [BindingKind],
    pub constants: Vec<(&'static str, f64)>,
}

impl KernelKey {
    /// Workgroups that cover `count` items: tokens, or rows for the
    /// sampling kernels (RMSNorm with gather, argmax), or sequences for
    /// pooling.
    pub fn workgroups(&self, count: u32) -> [u32; 3] {
        match self {
            KernelKey::Embedding(key) => key.workgroups(count),
            KernelKey::RmsNorm(key) => key.workgroups(count),
            KernelKey::HeadRmsNorm(key) => key.workgroups(count),
            KernelKey::Matmul(key) => key.workgroups(count),
            KernelKey::KvWrite(key) => key.workgroups(count),
            KernelKey::Attention(key) => key.workgroups(count),
            KernelKey::Glu(key) => key.workgroups(count),
            KernelKey::Argmax(key) => key.workgroups(count),
            KernelKey::EncoderEmbedding(key) => key.workgroups(count),
            KernelKey::LayerNorm(key) => key.workgroups(count),
            KernelKey::Gelu(key) => key.workgroups(count),
            KernelKey::EncoderAttention(key) => key.workgroups(count),
            KernelKey::Pooling(key) => key.workgroups(count),
        }
    }

    fn spec(&self) -> KernelSpec {
        match self {
            KernelKey::Embedding(key) => key.spec(),
            KernelKey::RmsNorm(key) => key.spec(),
            KernelKey::HeadRmsNorm(key) => key.spec(),
            KernelKey::Matmul(key) => key.spec(),
            KernelKey::KvWrite(key) => key.spec(),
            KernelKey::Attention(key) => key.spec(),
            KernelKey::Glu(key) => key.spec(),
            KernelKey::Argmax(key) => key.spec(),
            KernelKey::EncoderEmbedding(key) => key.spec(),
            KernelKey::LayerNorm(key) => key.spec(),
            KernelKey::Gelu(key) => key.spec(),
            KernelKey::EncoderAttention(key) => key.spec(),
            KernelKey::Pooling(key) => key.spec(),
        }
    }
}

/// A built pipeline and the layout its bind groups must follow.
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub label: &'static str,
}

impl Kernel {
    /// A bind group with `buffers` at bindings 0, 1, 2, ... in order.
    pub fn bind_group(&self, ctx: &GpuContext, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding: binding as u32,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.label),
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// A bind group with a kernel's named buffers (see `KernelBindings`).
    pub fn bind(&self, ctx: &GpuContext, bindings: &impl KernelBindings) -> wgpu::BindGroup {
        let buffers: Vec<&wgpu::Buffer> = bindings.in_binding_order().iter().map(|b| &b.buffer).collect();
        self.bind_group(ctx, &buffers)
    }

    /// Records one dispatch of this kernel.
    pub fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) {
        if workgroups.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
    }
}

/// Pipelines with the same binding kinds share one bind group layout, so a
/// bind group made for one specialization (say, a matmul tile size) fits
/// all of them.
#[derive(Default)]
pub struct PipelineCache {
    /// By source: a label's variants (e.g. activation loads through the
    /// subgroup or not) are different sources, each its own module.
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    layouts: HashMap<&'static [BindingKind], wgpu::BindGroupLayout>,
    kernels: HashMap<KernelKey, Arc<Kernel>>,
}

impl PipelineCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&mut self, ctx: &GpuContext, key: KernelKey) -> Arc<Kernel> {
        if let Some(kernel) = self.kernels.get(&key) {
            return kernel.clone();
        }
        let spec = key.spec();
        let module = self.modules.entry(spec.source).or_insert_with(|| {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(spec.label),
                source: wgpu::ShaderSource::Wgsl(spec.source.into()),
            };
            // SAFETY: our shaders are trusted code: every loop is bounded by
            // constants or step sizes, no divisor is zero (override constants
            // are validated > 0 on the CPU), and indices that come from the
            // CPU are checked there (`Llama::check_batch`) or clamped in the
            // shader. The injected loop counters and per-access clamps cost
            // about 15% of decode time on lavapipe (measured with a matvec).
            unsafe { ctx.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        });
        let layout =
            self.layouts.entry(spec.bindings).or_insert_with(|| create_layout(ctx, spec.bindings)).clone();
        let pipeline_layout = ctx.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(spec.label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.entry_point),
            layout: Some(&pipeline_layout),
            module,
            entry_point: Some(spec.entry_point),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &spec.constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let kernel = Arc::new(Kernel { pipeline, layout, label: spec.label });
        self.kernels.insert(key, kernel.clone());
        kernel
    }
}

fn create_layout(ctx: &GpuContext, bindings: &[BindingKind]) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
        .iter()
        .enumerate()
        .map(|(binding, kind)| wgpu::BindGroupLayoutEntry {
            binding: binding as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: match kind {
                    BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                    BindingKind::StorageRead => wgpu::BufferBindingType::Storage { read_only: true },
                    BindingKind::StorageReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        })
        .collect();
    ctx.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("kernel bindings"),
        entries: &entries,
    })
}

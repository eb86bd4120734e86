//! Per-dispatch timing of one step, for `wgserve bench --profile`.
//!
//! Forward passes record every dispatch through `Recorder`. The normal
//! path's recorder is the step's one compute pass, which only dispatches
//! (a virtual call per dispatch, nothing more). `StepProfiler` instead gives
//! each dispatch a compute pass of its own with GPU timestamps at its
//! beginning and end where the adapter has `TIMESTAMP_QUERY` (the base
//! feature: no timestamps inside passes needed), or, without them, a
//! submission of its own timed by the CPU clock. Each dispatch carries a
//! label (`DispatchWork`: its kind, and for a matmul the bytes and FLOPs
//! it moves) so that the caller can sum time by kind. This module owns
//! the query sets; it knows kernels, never a model.

use std::time::Instant;

use super::context::{GpuContext, GpuError};
use super::pipelines::{Kernel, KernelKey};

/// What a matmul computes in its layer; the model names it when it binds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MatmulRole {
    Qkv,
    AttnOut,
    GateUp,
    Down,
    LmHead,
    /// A matmul its model did not name (the encoders).
    Unnamed,
}

/// The kind of a dispatch, the rows of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelKind {
    Embedding,
    RmsNorm,
    QkNorm,
    Matmul(MatmulRole),
    RopeKvWrite,
    Attention,
    Glu,
    /// RMSNorm of a block's output added into the residual stream (Gemma).
    PostNorm,
    /// RMSNorm of each sequence's sampled row, before the output head.
    FinalNorm,
    Argmax,
    EncoderEmbedding,
    LayerNorm,
    Gelu,
    EncoderAttention,
    Pooling,
}

impl KernelKind {
    /// A kernel's kind by its key; a matmul's role is `Unnamed` until its
    /// model names it.
    pub fn of(key: &KernelKey) -> Self {
        match key {
            KernelKey::Embedding(_) => Self::Embedding,
            KernelKey::RmsNorm(k) if k.gather => Self::FinalNorm,
            KernelKey::RmsNorm(k) if k.accumulate => Self::PostNorm,
            KernelKey::RmsNorm(_) => Self::RmsNorm,
            KernelKey::HeadRmsNorm(_) => Self::QkNorm,
            KernelKey::Matmul(_) => Self::Matmul(MatmulRole::Unnamed),
            KernelKey::KvWrite(_) => Self::RopeKvWrite,
            KernelKey::Attention(_) => Self::Attention,
            KernelKey::Glu(_) => Self::Glu,
            KernelKey::Argmax(_) => Self::Argmax,
            KernelKey::EncoderEmbedding(_) => Self::EncoderEmbedding,
            KernelKey::LayerNorm(_) => Self::LayerNorm,
            KernelKey::Gelu(_) => Self::Gelu,
            KernelKey::EncoderAttention(_) => Self::EncoderAttention,
            KernelKey::Pooling(_) => Self::Pooling,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Embedding => "embedding",
            Self::RmsNorm => "rmsnorm",
            Self::QkNorm => "qk_norm",
            Self::Matmul(MatmulRole::Qkv) => "matmul qkv",
            Self::Matmul(MatmulRole::AttnOut) => "matmul attn_out",
            Self::Matmul(MatmulRole::GateUp) => "matmul gate_up",
            Self::Matmul(MatmulRole::Down) => "matmul down",
            Self::Matmul(MatmulRole::LmHead) => "matmul lm_head",
            Self::Matmul(MatmulRole::Unnamed) => "matmul",
            Self::RopeKvWrite => "rope_kv_write",
            Self::Attention => "attention",
            Self::Glu => "glu",
            Self::PostNorm => "post_norm",
            Self::FinalNorm => "final_norm",
            Self::Argmax => "argmax",
            Self::EncoderEmbedding => "encoder_embedding",
            Self::LayerNorm => "layernorm",
            Self::Gelu => "gelu",
            Self::EncoderAttention => "encoder_attention",
            Self::Pooling => "pooling",
        }
    }

    pub fn is_matmul(self) -> bool {
        matches!(self, Self::Matmul(_))
    }
}

/// What one dispatch is, and the work a matmul does (0 for other kernels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchWork {
    pub kind: KernelKind,
    /// Bytes of packed weights it reads.
    pub weight_bytes: u64,
    /// 2 * tokens * rows * cols for a matmul.
    pub flops: u64,
}

impl DispatchWork {
    pub fn kernel(kind: KernelKind) -> Self {
        Self { kind, weight_bytes: 0, flops: 0 }
    }
}

/// Where a forward pass records its dispatches.
pub trait Recorder {
    fn dispatch(
        &mut self,
        work: DispatchWork,
        kernel: &Kernel,
        bind_group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    );
}

/// The normal path: every dispatch into the step's one compute pass.
impl Recorder for wgpu::ComputePass<'_> {
    fn dispatch(
        &mut self,
        _work: DispatchWork,
        kernel: &Kernel,
        bind_group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) {
        kernel.dispatch(self, bind_group, workgroups);
    }
}

/// How the times of a profile were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingMethod {
    /// Timestamps written by the GPU at the beginning and end of each
    /// dispatch's own compute pass, all in one submission.
    GpuTimestamps,
    /// The CPU clock around each dispatch's own submission and wait: it
    /// includes the cost of a submission.
    CpuClock,
}

impl TimingMethod {
    /// Timestamps where the device has them, else the CPU clock.
    pub fn best(ctx: &GpuContext) -> Self {
        if ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            Self::GpuTimestamps
        } else {
            Self::CpuClock
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::GpuTimestamps => "GPU timestamp queries, one compute pass per dispatch",
            Self::CpuClock => "CPU clock around one submission per dispatch (no timestamp queries)",
        }
    }
}

/// The time one dispatch took.
#[derive(Debug, Clone, Copy)]
pub struct DispatchTiming {
    pub work: DispatchWork,
    pub seconds: f64,
}

/// The dispatches of one step and their times.
#[derive(Debug, Clone)]
pub struct StepProfile {
    pub method: TimingMethod,
    /// Every dispatch the step recorded, in order.
    pub dispatches: Vec<DispatchTiming>,
    /// The profiled step on the CPU clock, from its first dispatch recorded
    /// to its last result back: every dispatch's time lies within it.
    pub wall_seconds: f64,
    /// CPU time to record the same step's commands on the normal path (one
    /// encoder, one compute pass, finished): what a step recorded once and
    /// replayed could save, which WebGPU does not offer for compute
    /// (command buffers are single-use and bundles are render-only).
    pub record_seconds: f64,
    /// Submissions of the same step on the normal (unprofiled) path.
    pub submissions_per_step: usize,
}

/// Queries per query set (wgpu's maximum): two per dispatch.
const QUERIES_PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES;

/// Records a step one dispatch at a time and times each (see the module doc).
pub struct StepProfiler<'a> {
    ctx: &'a GpuContext,
    method: TimingMethod,
    encoder: wgpu::CommandEncoder,
    query_sets: Vec<wgpu::QuerySet>,
    works: Vec<DispatchWork>,
    /// Per dispatch, with `TimingMethod::CpuClock`.
    cpu_seconds: Vec<f64>,
}

impl<'a> StepProfiler<'a> {
    /// Flushes the queue's pending writes (the step's inputs) first, so
    /// that the first dispatch's time does not include them.
    pub fn new(ctx: &'a GpuContext, method: TimingMethod) -> Result<Self, GpuError> {
        ctx.queue.submit([]);
        ctx.wait()?;
        let encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("profile") });
        Ok(Self { ctx, method, encoder, query_sets: Vec::new(), works: Vec::new(), cpu_seconds: Vec::new() })
    }

    /// The encoder the step's last commands (its readback copy) go into;
    /// they are submitted with the dispatches by `finish`.
    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        &mut self.encoder
    }

    /// Submits what is left, waits, and returns each dispatch's time in
    /// recording order.
    pub fn finish(self) -> Result<Vec<DispatchTiming>, GpuError> {
        let Self { ctx, method, encoder, query_sets, works, cpu_seconds } = self;
        let seconds = match method {
            TimingMethod::CpuClock => {
                ctx.queue.submit([encoder.finish()]);
                ctx.wait()?;
                cpu_seconds
            }
            TimingMethod::GpuTimestamps => {
                let ticks = resolve_timestamps(ctx, encoder, &query_sets, 2 * works.len() as u32)?;
                let ns_per_tick = f64::from(ctx.queue.get_timestamp_period());
                ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * ns_per_tick * 1e-9).collect()
            }
        };
        Ok(works.into_iter().zip(seconds).map(|(work, seconds)| DispatchTiming { work, seconds }).collect())
    }

    /// The query set and first index of the next dispatch's two timestamps.
    fn next_queries(&mut self) -> (usize, u32) {
        let first = 2 * self.works.len() as u32;
        let (set, index) = ((first / QUERIES_PER_SET) as usize, first % QUERIES_PER_SET);
        if set == self.query_sets.len() {
            self.query_sets.push(self.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES_PER_SET,
            }));
        }
        (set, index)
    }
}

impl Recorder for StepProfiler<'_> {
    fn dispatch(
        &mut self,
        work: DispatchWork,
        kernel: &Kernel,
        bind_group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) {
        // `Kernel::dispatch` records nothing for an empty grid; neither do we.
        if workgroups.contains(&0) {
            return;
        }
        match self.method {
            TimingMethod::GpuTimestamps => {
                let (set, index) = self.next_queries();
                let mut pass = self.encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(kernel.label),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &self.query_sets[set],
                        beginning_of_pass_write_index: Some(index),
                        end_of_pass_write_index: Some(index + 1),
                    }),
                });
                kernel.dispatch(&mut pass, bind_group, workgroups);
            }
            TimingMethod::CpuClock => {
                let started = Instant::now();
                let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    kernel.dispatch(&mut pass, bind_group, workgroups);
                }
                self.ctx.queue.submit([encoder.finish()]);
                // A failed wait leaves this dispatch's time as the time to the failure;
                // `finish` waits again and reports the error.
                let _ = self.ctx.wait();
                self.cpu_seconds.push(started.elapsed().as_secs_f64());
            }
        }
        self.works.push(work);
    }
}

/// Resolves the first `count` queries of `query_sets` and reads them back
/// (ticks; the queue's timestamp period converts them to nanoseconds).
fn resolve_timestamps(
    ctx: &GpuContext,
    mut encoder: wgpu::CommandEncoder,
    query_sets: &[wgpu::QuerySet],
    count: u32,
) -> Result<Vec<u64>, GpuError> {
    let set_bytes = u64::from(QUERIES_PER_SET) * wgpu::QUERY_SIZE as u64;
    let total_bytes = (set_bytes * query_sets.len() as u64).max(wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT);
    let resolved = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile resolve"),
        size: total_bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = super::ReadbackBuffer::new(ctx, "profile readback", total_bytes);
    for (i, set) in query_sets.iter().enumerate() {
        let queries = count.saturating_sub(i as u32 * QUERIES_PER_SET).min(QUERIES_PER_SET);
        encoder.resolve_query_set(set, 0..queries, &resolved, i as u64 * set_bytes);
    }
    let resolved = super::GpuBuffer { buffer: resolved, size: total_bytes };
    readback.record_copy(&mut encoder, &resolved, total_bytes);
    ctx.queue.submit([encoder.finish()]);
    let bytes = readback.read(ctx, total_bytes as usize)?;
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
    // Set i resolves at query i * QUERIES_PER_SET: one index per query.
    Ok(ticks.into_iter().take(count as usize).collect())
}

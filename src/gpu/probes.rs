//! Probes of the adapter's fixed costs and peak rate, for
//! `wgserve bench --profile`: what one dispatch that does nothing costs,
//! what one submission and wait costs, and how many f32 FLOPs per second
//! an FMA loop reaches (shaders/probes.wgsl). Built on demand and dropped
//! after: no model kernel uses them, so they stay out of the pipeline cache.

use std::time::Instant;

use super::context::{GpuContext, GpuError};

/// Empty dispatches recorded into one pass for the per-dispatch cost.
const EMPTY_DISPATCHES: u32 = 2000;
/// Submissions timed for the per-submission cost.
const SUBMISSIONS: u32 = 50;
/// Trips of the FMA loop (the shader's `ITERATIONS`) and its grid.
const FMA_ITERATIONS: u32 = 1024;
const FMA_WORKGROUPS: u32 = 512;
const FMA_WORKGROUP_SIZE: u64 = 64;
const FLOPS_PER_TRIP: u64 = 256;

/// What the probes measured (best of a few runs each).
#[derive(Debug, Clone, Copy)]
pub struct AdapterCosts {
    /// Recording, submitting and running one one-workgroup dispatch that
    /// does nothing, amortized over a pass of many.
    pub empty_dispatch_seconds: f64,
    /// Submitting one command buffer of one empty dispatch and waiting for it.
    pub submission_seconds: f64,
    /// f32 FLOPs per second of a loop of independent multiply-adds.
    pub peak_flops: f64,
}

struct Probe {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
}

impl Probe {
    fn new(ctx: &GpuContext, module: &wgpu::ShaderModule, sink: &wgpu::Buffer, entry_point: &str) -> Self {
        let constants: &[(&str, f64)] =
            if entry_point == "fma_peak" { &[("ITERATIONS", FMA_ITERATIONS as f64)] } else { &[] };
        let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry_point),
            layout: None,
            module,
            entry_point: Some(entry_point),
            compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
            cache: None,
        });
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry_point),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: sink.as_entire_binding() }],
        });
        Self { pipeline, bind_group }
    }

    /// Seconds to record `dispatches` dispatches of `workgroups` in one
    /// pass, submit them and wait: best of `runs`.
    fn time(&self, ctx: &GpuContext, dispatches: u32, workgroups: u32, runs: usize) -> Result<f64, GpuError> {
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            let started = Instant::now();
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &self.bind_group, &[]);
                for _ in 0..dispatches {
                    pass.dispatch_workgroups(workgroups, 1, 1);
                }
            }
            ctx.queue.submit([encoder.finish()]);
            ctx.wait()?;
            best = best.min(started.elapsed().as_secs_f64());
        }
        Ok(best)
    }
}

/// Runs the probes (about a second on lavapipe).
pub fn measure(ctx: &GpuContext) -> Result<AdapterCosts, GpuError> {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some("probes"),
        source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/probes.wgsl").into()),
    };
    // SAFETY: the loop is bounded by a constant and the one index is 0.
    // Unchecked like the model's kernels (`PipelineCache::get`), so the FMA
    // loop carries no injected counter and the peak is the kernels' peak.
    let module =
        unsafe { ctx.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) };
    let sink = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("probe sink"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let empty = Probe::new(ctx, &module, &sink, "empty");
    let fma = Probe::new(ctx, &module, &sink, "fma_peak");
    // First runs compile the pipelines in the driver.
    empty.time(ctx, 1, 1, 1)?;
    fma.time(ctx, 1, 1, 1)?;

    let empty_dispatch_seconds = empty.time(ctx, EMPTY_DISPATCHES, 1, 5)? / f64::from(EMPTY_DISPATCHES);
    let mut submission_seconds = f64::INFINITY;
    for _ in 0..SUBMISSIONS {
        submission_seconds = submission_seconds.min(empty.time(ctx, 1, 1, 1)?);
    }
    let flops = u64::from(FMA_WORKGROUPS) * FMA_WORKGROUP_SIZE * u64::from(FMA_ITERATIONS) * FLOPS_PER_TRIP;
    let peak_flops = flops as f64 / fma.time(ctx, 1, FMA_WORKGROUPS, 3)?;
    Ok(AdapterCosts { empty_dispatch_seconds, submission_seconds, peak_flops })
}

//! What every decoder-only model shares, whatever its layers: the step
//! inputs on the GPU, the paged KV cache, the residual stream, the output
//! head (final norm over each sequence's last token, logits, greedy
//! argmax) and the checks on a batch. An architecture file supplies only
//! its embedding and layers (`DecoderBody`); `Decoder` runs them in one
//! command encoder and one submission per step and implements `CausalLm`.
//! `profile_step` records the same dispatches into a `StepProfiler`
//! instead of the step's compute pass, so the normal path pays nothing.

/// Submissions of one `forward` step: every dispatch and the readback in
/// one (the queued input writes ride on it).
pub const SUBMISSIONS_PER_STEP: usize = 1;

use std::time::Instant;

use crate::gpu::kernels::StepParams;
use crate::gpu::kernels::argmax::{ArgmaxBindings, ArgmaxKey};
use crate::gpu::kernels::attention::MAX_SPLIT_TOKENS;
use crate::gpu::kernels::rmsnorm::{RmsNormBindings, RmsNormKey};
use crate::gpu::kv_cache::KvCache;
use crate::gpu::profiler::{MatmulRole, Recorder, StepProfile, StepProfiler, TimingMethod};
use crate::gpu::{GpuBuffer, GpuContext, KernelKey, ReadbackBuffer};

use super::batch::BatchInputs;
use super::bound::Bound;
use super::builder::ModelBuilder;
use super::causal_lm::{CausalLm, ForwardOutput, Output};
use super::config::DecoderConfig;
use super::matmul::{GpuMatrix, MatmulOp};
use super::{LoadOptions, ModelError};

/// An architecture's own part of the forward pass: the token embedding
/// into `DecoderBuffers::hidden`, then every layer over it.
pub trait DecoderBody: Send {
    /// A step of `num_tokens` tokens of `num_seqs` sequences.
    fn record(&self, pass: &mut dyn Recorder, num_tokens: u32, num_seqs: u32);
    /// Bytes of weights its matmuls read per step.
    fn matmul_weight_bytes(&self) -> u64;
}

/// A step's inputs as the kernels read them, sized for the largest step.
pub struct StepInputs {
    /// Uniform of the token-wide kernels (num_tokens = batch tokens).
    pub step: GpuBuffer,
    /// Uniform of the sampling kernels (num_tokens = num_seqs).
    pub sample_step: GpuBuffer,
    /// [M] u32
    pub token_ids: GpuBuffer,
    /// [M] u32
    pub positions: GpuBuffer,
    /// [M] u32: cache slot of each token's K/V.
    pub slot_mapping: GpuBuffer,
    /// [M] u32: the sequence of each token.
    pub token_seq: GpuBuffer,
    /// [S, max_blocks_per_seq] u32
    pub block_tables: GpuBuffer,
    /// [S] u32: the token each sequence samples from.
    pub sample_indices: GpuBuffer,
}

/// What an architecture's layers bind to besides their weights.
pub struct DecoderBuffers {
    pub inputs: StepInputs,
    /// [M, H] f32: the residual stream, embedding in, last layer out.
    pub hidden: GpuBuffer,
    pub kv_cache: KvCache,
}

impl DecoderBuffers {
    pub fn new(
        builder: &ModelBuilder,
        config: &DecoderConfig,
        options: &LoadOptions,
    ) -> Result<Self, ModelError> {
        options.validate()?;
        options.check_kv_cache_dtype(config)?;
        let ctx = &builder.ctx;
        let (m, s) = (options.max_batch_tokens, options.max_seqs);
        let step_size = std::mem::size_of::<StepParams>() as u64;
        let inputs = StepInputs {
            step: GpuBuffer::uniform(ctx, "step", step_size),
            sample_step: GpuBuffer::uniform(ctx, "sample_step", step_size),
            token_ids: builder.activation("token_ids", m)?,
            positions: builder.activation("positions", m)?,
            slot_mapping: builder.activation("slot_mapping", m)?,
            token_seq: builder.activation("token_seq", m)?,
            block_tables: builder.activation("block_tables", s * options.max_blocks_per_seq(config))?,
            sample_indices: builder.activation("sample_indices", s)?,
        };
        let num_blocks = options.num_kv_blocks(config, ctx.max_storage_binding());
        let kv_cache = KvCache::new(
            ctx,
            config.num_layers,
            num_blocks,
            options.block_size,
            config.num_kv_heads,
            config.head_dim,
            options.kv_cache_dtype,
        )?;
        tracing::info!(
            num_blocks,
            block_size = options.block_size,
            tokens = num_blocks * options.block_size,
            dtype = options.kv_cache_dtype.name(),
            "KV cache allocated"
        );
        Ok(Self { inputs, hidden: builder.activation("hidden", m * config.hidden_size)?, kv_cache })
    }
}

/// Final norm of each sequence's sampled row, logits, greedy ids.
struct OutputHead {
    final_norm: Bound,
    lm_head: MatmulOp,
    argmax: Bound,
    /// [S, V] f32
    logits: GpuBuffer,
    /// [S] u32
    next_ids: GpuBuffer,
    readback: ReadbackBuffer,
}

pub struct Decoder<B> {
    ctx: std::sync::Arc<GpuContext>,
    pub config: DecoderConfig,
    options: LoadOptions,
    buffers: DecoderBuffers,
    body: B,
    head: OutputHead,
}

impl<B: DecoderBody> Decoder<B> {
    /// Completes a model: `body` over `buffers`, then the output head
    /// (RMSNorm with `final_norm` weights, `lm_head` [V, H]).
    pub fn new(
        builder: &mut ModelBuilder,
        config: DecoderConfig,
        options: &LoadOptions,
        buffers: DecoderBuffers,
        body: B,
        final_norm: &GpuBuffer,
        lm_head: GpuMatrix,
    ) -> Result<Self, ModelError> {
        let (h, v, s) = (config.hidden_size, config.vocab_size, options.max_seqs);
        let ctx = builder.ctx.clone();
        let inputs = &buffers.inputs;
        let last_normed = builder.activation("last_normed", s * h)?; // [S, H]
        let logits = builder.activation("logits", s * v)?;
        let next_ids = builder.activation("next_ids", s)?;
        let norm_key = RmsNormKey {
            hidden: h as u32,
            eps_bits: config.rms_norm_eps.to_bits(),
            gather: true,
            accumulate: false,
        };
        let norm_bindings = RmsNormBindings {
            step: &inputs.step,
            x: &buffers.hidden,
            weight: final_norm,
            row_index: &inputs.sample_indices,
            out: &last_normed,
        };
        let final_norm = Bound::bind(&ctx, &mut builder.cache, KernelKey::RmsNorm(norm_key), &norm_bindings);
        let lm_head = MatmulOp::new(
            &ctx,
            &mut builder.cache,
            lm_head,
            &inputs.sample_step,
            &last_normed,
            &logits,
            false,
        )
        .with_role(MatmulRole::LmHead);
        let argmax = Bound::bind(
            &ctx,
            &mut builder.cache,
            KernelKey::Argmax(ArgmaxKey { vocab: v as u32 }),
            &ArgmaxBindings { step: &inputs.sample_step, logits: &logits, out: &next_ids },
        );
        let readback = ReadbackBuffer::new(&ctx, "readback", (s * v * 4) as u64);
        let head = OutputHead { final_norm, lm_head, argmax, logits, next_ids, readback };
        Ok(Self { ctx, config, options: options.clone(), buffers, body, head })
    }

    /// Runs a throwaway step with each kernel variant, so the driver compiles
    /// them now rather than during the first request (seconds on lavapipe).
    /// It writes K/V into the first blocks, which a sequence overwrites
    /// before it reads them.
    pub fn warm_up(&self) -> Result<(), ModelError> {
        // 1 and 4: both matmul tiles; past MAX_SPLIT_TOKENS: the prefill attention.
        for num_tokens in [1, 4, MAX_SPLIT_TOKENS as usize + 1] {
            let mut batch = BatchInputs::default();
            let tokens = vec![0u32; num_tokens];
            let blocks = num_tokens.div_ceil(self.block_size());
            if blocks > self.num_kv_blocks() || num_tokens > self.options.max_batch_tokens {
                continue;
            }
            let block_table: Vec<u32> = (0..blocks as u32).collect();
            batch.push_sequence(&tokens, 0, &block_table, self.block_size());
            self.forward(&batch, Output::TokenIds)?;
        }
        Ok(())
    }

    pub fn forward(&self, batch: &BatchInputs, output: Output) -> Result<ForwardOutput, ModelError> {
        self.check_batch(batch)?;
        let (m, s) = self.write_inputs(batch);
        let ctx = &self.ctx;
        let head = &self.head;
        let mut encoder = self.encode_step(m, s, output);
        let (source, read_len) = match output {
            Output::TokenIds => (&head.next_ids, s as usize * 4),
            Output::Logits => (&head.logits, s as usize * self.config.vocab_size * 4),
        };
        head.readback.record_copy(&mut encoder, source, read_len as u64);
        ctx.queue.submit([encoder.finish()]);
        let bytes = head.readback.read(ctx, read_len)?;
        Ok(match output {
            Output::TokenIds => ForwardOutput::TokenIds(bytemuck::pod_collect_to_vec(&bytes)),
            Output::Logits => ForwardOutput::Logits(bytemuck::pod_collect_to_vec(&bytes)),
        })
    }

    /// Runs one greedy step as `forward` does, each dispatch timed (see
    /// `StepProfiler`); the K/V it writes land in the batch's slots.
    pub fn profile_step(&self, batch: &BatchInputs) -> Result<StepProfile, ModelError> {
        self.profile_step_with(batch, TimingMethod::best(&self.ctx))
    }

    /// `profile_step` timed by `method` (tests take the CPU clock too).
    pub fn profile_step_with(
        &self,
        batch: &BatchInputs,
        method: TimingMethod,
    ) -> Result<StepProfile, ModelError> {
        self.check_batch(batch)?;
        let (m, s) = self.write_inputs(batch);
        // The CPU's part of a step that `forward` pays every time: its
        // commands recorded and finished as there (here never submitted).
        let recording = Instant::now();
        drop(self.encode_step(m, s, Output::TokenIds).finish());
        let record_seconds = recording.elapsed().as_secs_f64();
        let mut profiler = StepProfiler::new(&self.ctx, method)?;
        let started = Instant::now();
        self.record_step(&mut profiler, m, s, Output::TokenIds);
        self.head.readback.record_copy(profiler.encoder(), &self.head.next_ids, u64::from(s) * 4);
        let dispatches = profiler.finish()?;
        let wall_seconds = started.elapsed().as_secs_f64();
        Ok(StepProfile {
            method,
            dispatches,
            wall_seconds,
            record_seconds,
            submissions_per_step: SUBMISSIONS_PER_STEP,
        })
    }

    /// An encoder holding one compute pass with every dispatch of a step
    /// over `m` tokens of `s` sequences (the normal path's recording).
    fn encode_step(&self, m: u32, s: u32, output: Output) -> wgpu::CommandEncoder {
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            self.record_step(&mut pass, m, s, output);
        }
        encoder
    }

    /// Every dispatch of a step over `m` tokens of `s` sequences.
    fn record_step(&self, pass: &mut dyn Recorder, m: u32, s: u32, output: Output) {
        self.body.record(pass, m, s);
        self.head.final_norm.record(pass, s);
        self.head.lm_head.record(pass, s);
        if output == Output::TokenIds {
            self.head.argmax.record(pass, s);
        }
    }

    /// Queues the writes of a checked batch's inputs; returns (tokens, sequences).
    fn write_inputs(&self, batch: &BatchInputs) -> (u32, u32) {
        let ctx = &self.ctx;
        let (m, s) = (batch.num_tokens() as u32, batch.num_seqs() as u32);
        let inputs = &self.buffers.inputs;
        let max_blocks_per_seq = batch.max_blocks_per_seq as u32;
        let step = StepParams { num_tokens: m, num_seqs: s, max_blocks_per_seq, _pad: 0 };
        inputs.step.write(ctx, bytemuck::bytes_of(&step));
        let sample_step = StepParams { num_tokens: s, ..step };
        inputs.sample_step.write(ctx, bytemuck::bytes_of(&sample_step));
        inputs.token_ids.write(ctx, bytemuck::cast_slice(&batch.token_ids));
        inputs.positions.write(ctx, bytemuck::cast_slice(&batch.positions));
        inputs.slot_mapping.write(ctx, bytemuck::cast_slice(&batch.slot_mapping));
        inputs.token_seq.write(ctx, bytemuck::cast_slice(&batch.token_seq));
        inputs.block_tables.write(ctx, bytemuck::cast_slice(&batch.block_tables));
        inputs.sample_indices.write(ctx, bytemuck::cast_slice(&batch.sample_indices));
        (m, s)
    }

    pub fn block_size(&self) -> usize {
        self.buffers.kv_cache.block_size
    }

    pub fn num_kv_blocks(&self) -> usize {
        self.buffers.kv_cache.num_blocks
    }

    pub fn kv_cache_tokens(&self, options: &LoadOptions) -> usize {
        options.num_kv_blocks(&self.config, self.ctx.max_storage_binding()) * options.block_size
    }

    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn matmul_weight_bytes(&self) -> u64 {
        self.body.matmul_weight_bytes() + self.head.lm_head.weight_bytes()
    }

    /// The GPU trusts these indices, so every one is checked here.
    fn check_batch(&self, batch: &BatchInputs) -> Result<(), ModelError> {
        let fail = |why: String| Err(ModelError::InvalidBatch(why));
        let (m, s) = (batch.num_tokens(), batch.num_seqs());
        let o = &self.options;
        let kv_cache = &self.buffers.kv_cache;
        if m == 0 || m > o.max_batch_tokens {
            return fail(format!("{m} tokens in a step; 1..={} allowed", o.max_batch_tokens));
        }
        if s == 0 || s > o.max_seqs {
            return fail(format!("{s} sequences in a step; 1..={} allowed", o.max_seqs));
        }
        let max_blocks = batch.max_blocks_per_seq;
        if max_blocks == 0
            || max_blocks > o.max_blocks_per_seq(&self.config)
            || batch.block_tables.len() != s * max_blocks
        {
            return fail(format!(
                "block tables of {} entries for {s} sequences of {max_blocks}",
                batch.block_tables.len()
            ));
        }
        if batch.positions.len() != m || batch.slot_mapping.len() != m || batch.token_seq.len() != m {
            return fail("per-token arrays differ in length".into());
        }
        if let Some(&id) = batch.token_ids.iter().find(|&&id| id as usize >= self.config.vocab_size) {
            return fail(format!("token id {id} is outside the vocabulary of {}", self.config.vocab_size));
        }
        let num_slots = kv_cache.num_blocks * kv_cache.block_size;
        for t in 0..m {
            let (pos, seq) = (batch.positions[t] as usize, batch.token_seq[t] as usize);
            if pos >= self.config.max_position_embeddings
                || seq >= s
                || pos / kv_cache.block_size >= max_blocks
            {
                return fail(format!("token {t}: position {pos} of sequence {seq} is out of range"));
            }
            if batch.slot_mapping[t] as usize >= num_slots {
                return fail(format!("token {t}: slot {} is outside the cache", batch.slot_mapping[t]));
            }
        }
        if batch.block_tables.iter().any(|&b| b as usize >= kv_cache.num_blocks) {
            return fail("a block table names a block outside the cache".into());
        }
        if batch.sample_indices.iter().any(|&i| i as usize >= m) {
            return fail("a sample index is outside the batch".into());
        }
        Ok(())
    }
}

impl<B: DecoderBody> CausalLm for Decoder<B> {
    fn forward(&self, batch: &BatchInputs, output: Output) -> Result<ForwardOutput, ModelError> {
        Decoder::forward(self, batch, output)
    }
    fn warm_up(&self) -> Result<(), ModelError> {
        Decoder::warm_up(self)
    }
    fn profile_step(&self, batch: &BatchInputs) -> Result<StepProfile, ModelError> {
        Decoder::profile_step(self, batch)
    }
    fn options(&self) -> &LoadOptions {
        Decoder::options(self)
    }
    fn block_size(&self) -> usize {
        Decoder::block_size(self)
    }
    fn kv_cache_tokens(&self, options: &LoadOptions) -> usize {
        Decoder::kv_cache_tokens(self, options)
    }
    fn num_kv_blocks(&self) -> usize {
        Decoder::num_kv_blocks(self)
    }
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn max_model_len(&self) -> usize {
        self.config.max_position_embeddings
    }
    fn matmul_weight_bytes(&self) -> u64 {
        Decoder::matmul_weight_bytes(self)
    }
    fn gpu(&self) -> &GpuContext {
        Decoder::gpu(self)
    }
}

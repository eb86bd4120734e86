//! The Llama forward pass: loads and packs the weights, then runs a varlen
//! batch through every layer in one command encoder and one submission,
//! reading back only what sampling needs (the next token ids, or the
//! logits of the sampled positions).
//!
//! Per layer: RMSNorm, fused QKV matmul, RoPE, KV-cache write, paged
//! attention, output matmul (+ residual), RMSNorm, fused gate/up matmul,
//! SiLU gate, down matmul (+ residual). The residual stream stays in f32.

use std::path::Path;
use std::sync::Arc;

use crate::gpu::kernels::StepParams;
use crate::gpu::kernels::argmax::{ArgmaxBindings, ArgmaxKey};
use crate::gpu::kernels::attention::AttentionKey;
use crate::gpu::kernels::kv_write::KvWriteKey;
use crate::gpu::kernels::rmsnorm::RmsNormKey;
use crate::gpu::kernels::rope::{RopeKey, rope_table};
use crate::gpu::kernels::silu_gate::SiluGateKey;
use crate::gpu::kv_cache::KvCache;
use crate::gpu::{GpuBuffer, GpuContext, KernelKey, PipelineCache, ReadbackBuffer};

use super::batch::BatchInputs;
use super::bound::Bound;
pub use super::causal_lm::{CausalLm, ForwardOutput, Output};
use super::config::{LlamaConfig, RopeStyle};
use super::embedding::EmbeddingOp;
use super::matmul::{GpuMatrix, MatmulOp};
use super::source::WeightSource;
use super::weights::{concat_rows, pack_matrix, to_f32_vec};
use super::{LoadOptions, ModelError};

struct Layer {
    attn_norm: Bound,
    attn_qkv: MatmulOp,
    rope: Bound,
    kv_write: Bound,
    attention: Bound,
    attn_output: MatmulOp,
    ffn_norm: Bound,
    ffn_gate_up: MatmulOp,
    silu_gate: Bound,
    ffn_down: MatmulOp,
}

/// Step inputs and activations, sized for the largest step.
struct Scratch {
    /// Uniform of the token-wide kernels (num_tokens = batch tokens).
    step: GpuBuffer,
    /// Uniform of the sampling kernels (num_tokens = num_seqs).
    sample_step: GpuBuffer,
    token_ids: GpuBuffer,      // [M] u32
    positions: GpuBuffer,      // [M] u32
    slot_mapping: GpuBuffer,   // [M] u32
    token_seq: GpuBuffer,      // [M] u32
    block_tables: GpuBuffer,   // [S, max_blocks_per_seq] u32
    sample_indices: GpuBuffer, // [S] u32
    logits: GpuBuffer,         // [S, V] f32
    next_ids: GpuBuffer,       // [S] u32
    readback: ReadbackBuffer,
}

pub struct Llama {
    ctx: Arc<GpuContext>,
    pub config: LlamaConfig,
    options: LoadOptions,
    kv_cache: KvCache,
    scratch: Scratch,
    embedding: EmbeddingOp,
    layers: Vec<Layer>,
    final_norm: Bound,
    lm_head: MatmulOp,
    argmax: Bound,
}

impl Llama {
    /// Loads a `.gguf` file or a Hugging Face directory (config.json + model.safetensors).
    pub fn load(ctx: Arc<GpuContext>, path: &Path, options: &LoadOptions) -> Result<Self, ModelError> {
        Self::from_source(ctx, &WeightSource::open(path)?, options)
    }

    pub fn from_source(
        ctx: Arc<GpuContext>,
        source: &WeightSource,
        options: &LoadOptions,
    ) -> Result<Self, ModelError> {
        options.validate()?;
        let config = LlamaConfig::from_source(source)?;
        let c = &config;
        let (h, v) = (c.hidden_size, c.vocab_size);
        let q_rows = c.num_heads * c.head_dim;
        let kv_rows = c.num_kv_heads * c.head_dim;
        let (m, s) = (options.max_batch_tokens, options.max_seqs);
        let mut cache = PipelineCache::new();
        let f32_buffer =
            |label: &str, elements: usize| GpuBuffer::storage_zeroed(&ctx, label, (elements * 4) as u64);

        let step_size = std::mem::size_of::<StepParams>() as u64;
        let scratch = Scratch {
            step: GpuBuffer::uniform(&ctx, "step", step_size),
            sample_step: GpuBuffer::uniform(&ctx, "sample_step", step_size),
            token_ids: f32_buffer("token_ids", m)?,
            positions: f32_buffer("positions", m)?,
            slot_mapping: f32_buffer("slot_mapping", m)?,
            token_seq: f32_buffer("token_seq", m)?,
            block_tables: f32_buffer("block_tables", s * options.max_blocks_per_seq(c))?,
            sample_indices: f32_buffer("sample_indices", s)?,
            logits: f32_buffer("logits", s * v)?,
            next_ids: f32_buffer("next_ids", s)?,
            readback: ReadbackBuffer::new(&ctx, "readback", (s * v * 4) as u64),
        };
        let hidden = f32_buffer("hidden", m * h)?; // [M, H] residual stream
        let normed = f32_buffer("normed", m * h)?; // [M, H]
        let qkv = f32_buffer("qkv", m * c.qkv_size())?; // [M, (Hq + 2 Hkv) D]
        let attn = f32_buffer("attn", m * q_rows)?; // [M, Hq D]
        let gate_up = f32_buffer("gate_up", m * 2 * c.intermediate_size)?; // [M, 2 I]
        let act = f32_buffer("act", m * c.intermediate_size)?; // [M, I]
        let last_normed = f32_buffer("last_normed", s * h)?; // [S, H]
        let rope = rope_table(c.head_dim as u32, c.rope_theta, c.max_position_embeddings as u32);
        let rope_buffer = GpuBuffer::storage_init(&ctx, "rope_table", bytemuck::cast_slice(&rope))?;

        let num_blocks = options.num_kv_blocks(c, ctx.max_storage_binding());
        let kv_cache =
            KvCache::new(&ctx, c.num_layers, num_blocks, options.block_size, c.num_kv_heads, c.head_dim)?;
        tracing::info!(num_blocks, block_size = options.block_size, "KV cache allocated");

        let load_matrix = |name: &str, rows: usize, cols: usize| {
            let raw = source.require(name, &[rows, cols])?;
            pack_matrix(name, raw.tensor_type, raw.data, rows, cols)
        };
        let load_norm = |name: &str| -> Result<GpuBuffer, ModelError> {
            let raw = source.require(name, &[h])?;
            let values = to_f32_vec(name, raw.tensor_type, raw.data)?;
            Ok(GpuBuffer::storage_init(&ctx, name, bytemuck::cast_slice(&values))?)
        };

        let token_embd = GpuMatrix::upload(&ctx, "token_embd", load_matrix("token_embd.weight", v, h)?)?;
        let embedding =
            EmbeddingOp::new(&ctx, &mut cache, &token_embd, &scratch.step, &scratch.token_ids, &hidden, 1.0);
        let norm_key = |gather| {
            KernelKey::RmsNorm(RmsNormKey { hidden: h as u32, eps_bits: c.rms_norm_eps.to_bits(), gather })
        };
        let rope_key = RopeKey {
            head_dim: c.head_dim as u32,
            n_q_heads: c.num_heads as u32,
            n_kv_heads: c.num_kv_heads as u32,
            neox: c.rope_style == RopeStyle::Neox,
        };
        let kv_key = KvWriteKey {
            head_dim: c.head_dim as u32,
            n_q_heads: c.num_heads as u32,
            n_kv_heads: c.num_kv_heads as u32,
        };
        let attention_key = AttentionKey {
            head_dim: c.head_dim as u32,
            n_q_heads: c.num_heads as u32,
            n_kv_heads: c.num_kv_heads as u32,
            block_size: options.block_size as u32,
        };
        let silu_key = SiluGateKey { intermediate: c.intermediate_size as u32 };

        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let name = |leaf: &str| format!("blk.{i}.{leaf}.weight");
            let attn_norm_w = load_norm(&name("attn_norm"))?;
            let ffn_norm_w = load_norm(&name("ffn_norm"))?;
            let qkv_w = concat_rows(vec![
                load_matrix(&name("attn_q"), q_rows, h)?,
                load_matrix(&name("attn_k"), kv_rows, h)?,
                load_matrix(&name("attn_v"), kv_rows, h)?,
            ])?;
            let qkv_w = GpuMatrix::upload(&ctx, &name("attn_qkv"), qkv_w)?;
            let out_w =
                GpuMatrix::upload(&ctx, &name("attn_output"), load_matrix(&name("attn_output"), h, q_rows)?)?;
            let gate_up_w = concat_rows(vec![
                load_matrix(&name("ffn_gate"), c.intermediate_size, h)?,
                load_matrix(&name("ffn_up"), c.intermediate_size, h)?,
            ])?;
            let gate_up_w = GpuMatrix::upload(&ctx, &name("ffn_gate_up"), gate_up_w)?;
            let down_w = GpuMatrix::upload(
                &ctx,
                &name("ffn_down"),
                load_matrix(&name("ffn_down"), h, c.intermediate_size)?,
            )?;
            let st = &scratch;
            layers.push(Layer {
                attn_norm: Bound::new(
                    &ctx,
                    &mut cache,
                    norm_key(false),
                    &[&st.step, &hidden, &attn_norm_w, &st.sample_indices, &normed],
                ),
                attn_qkv: MatmulOp::new(&ctx, &mut cache, qkv_w, &st.step, &normed, &qkv, false),
                rope: Bound::new(
                    &ctx,
                    &mut cache,
                    KernelKey::Rope(rope_key),
                    &[&st.step, &qkv, &st.positions, &rope_buffer],
                ),
                kv_write: Bound::new(
                    &ctx,
                    &mut cache,
                    KernelKey::KvWrite(kv_key),
                    &[&st.step, &qkv, &st.slot_mapping, &kv_cache.k[i], &kv_cache.v[i]],
                ),
                attention: Bound::new(
                    &ctx,
                    &mut cache,
                    KernelKey::Attention(attention_key),
                    &[
                        &st.step,
                        &qkv,
                        &kv_cache.k[i],
                        &kv_cache.v[i],
                        &st.block_tables,
                        &st.token_seq,
                        &st.positions,
                        &attn,
                    ],
                ),
                attn_output: MatmulOp::new(&ctx, &mut cache, out_w, &st.step, &attn, &hidden, true),
                ffn_norm: Bound::new(
                    &ctx,
                    &mut cache,
                    norm_key(false),
                    &[&st.step, &hidden, &ffn_norm_w, &st.sample_indices, &normed],
                ),
                ffn_gate_up: MatmulOp::new(&ctx, &mut cache, gate_up_w, &st.step, &normed, &gate_up, false),
                silu_gate: Bound::new(
                    &ctx,
                    &mut cache,
                    KernelKey::SiluGate(silu_key),
                    &[&st.step, &gate_up, &act],
                ),
                ffn_down: MatmulOp::new(&ctx, &mut cache, down_w, &st.step, &act, &hidden, true),
            });
        }

        let output_norm_w = load_norm("output_norm.weight")?;
        let final_norm = Bound::new(
            &ctx,
            &mut cache,
            norm_key(true),
            &[&scratch.step, &hidden, &output_norm_w, &scratch.sample_indices, &last_normed],
        );
        // Tied embeddings: the output head reads the token embedding table.
        let tied = c.tie_word_embeddings.unwrap_or(source.tensor("output.weight")?.is_none());
        let lm_head_w = if tied {
            token_embd
        } else {
            GpuMatrix::upload(&ctx, "output", load_matrix("output.weight", v, h)?)?
        };
        let lm_head = MatmulOp::new(
            &ctx,
            &mut cache,
            lm_head_w,
            &scratch.sample_step,
            &last_normed,
            &scratch.logits,
            false,
        );
        let argmax = Bound::bind(
            &ctx,
            &mut cache,
            KernelKey::Argmax(ArgmaxKey { vocab: v as u32 }),
            &ArgmaxBindings { step: &scratch.sample_step, logits: &scratch.logits, out: &scratch.next_ids },
        );
        Ok(Self {
            ctx,
            config,
            options: options.clone(),
            kv_cache,
            scratch,
            embedding,
            layers,
            final_norm,
            lm_head,
            argmax,
        })
    }

    pub fn block_size(&self) -> usize {
        self.kv_cache.block_size
    }

    pub fn num_kv_blocks(&self) -> usize {
        self.kv_cache.num_blocks
    }

    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.ctx
    }

    /// Bytes of weights every forward step streams through the matmuls:
    /// the floor of a decode step's memory traffic.
    pub fn matmul_weight_bytes(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| {
                l.attn_qkv.weight_bytes()
                    + l.attn_output.weight_bytes()
                    + l.ffn_gate_up.weight_bytes()
                    + l.ffn_down.weight_bytes()
            })
            .sum();
        layers + self.lm_head.weight_bytes()
    }

    /// Runs a throwaway step with each kernel variant, so the driver compiles
    /// them now rather than during the first request (seconds on lavapipe).
    /// It writes K/V into the first blocks, which a sequence overwrites
    /// before it reads them.
    pub fn warm_up(&self) -> Result<(), ModelError> {
        for num_tokens in [1, 4] {
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

    /// Runs one step: every layer over the batch's new tokens, writing their
    /// K/V into the cache, then the output head on each sequence's last token.
    pub fn forward(&self, batch: &BatchInputs, output: Output) -> Result<ForwardOutput, ModelError> {
        self.check_batch(batch)?;
        let ctx = &self.ctx;
        let (m, s) = (batch.num_tokens() as u32, batch.num_seqs() as u32);
        let st = &self.scratch;
        let max_blocks = batch.max_blocks_per_seq as u32;
        st.step.write(
            ctx,
            bytemuck::bytes_of(&StepParams {
                num_tokens: m,
                num_seqs: s,
                max_blocks_per_seq: max_blocks,
                _pad: 0,
            }),
        );
        st.sample_step.write(
            ctx,
            bytemuck::bytes_of(&StepParams {
                num_tokens: s,
                num_seqs: s,
                max_blocks_per_seq: max_blocks,
                _pad: 0,
            }),
        );
        st.token_ids.write(ctx, bytemuck::cast_slice(&batch.token_ids));
        st.positions.write(ctx, bytemuck::cast_slice(&batch.positions));
        st.slot_mapping.write(ctx, bytemuck::cast_slice(&batch.slot_mapping));
        st.token_seq.write(ctx, bytemuck::cast_slice(&batch.token_seq));
        st.block_tables.write(ctx, bytemuck::cast_slice(&batch.block_tables));
        st.sample_indices.write(ctx, bytemuck::cast_slice(&batch.sample_indices));

        let c = &self.config;
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            self.embedding.record(&mut pass, m);
            for layer in &self.layers {
                layer.attn_norm.record(&mut pass, m);
                layer.attn_qkv.record(&mut pass, m);
                layer.rope.record(&mut pass, m);
                layer.kv_write.record(&mut pass, m);
                layer.attention.record(&mut pass, m);
                layer.attn_output.record(&mut pass, m);
                layer.ffn_norm.record(&mut pass, m);
                layer.ffn_gate_up.record(&mut pass, m);
                layer.silu_gate.record(&mut pass, m);
                layer.ffn_down.record(&mut pass, m);
            }
            self.final_norm.record(&mut pass, s);
            self.lm_head.record(&mut pass, s);
            if output == Output::TokenIds {
                self.argmax.record(&mut pass, s);
            }
        }
        let read_len = match output {
            Output::TokenIds => {
                st.readback.record_copy(&mut encoder, &st.next_ids, s as u64 * 4);
                s as usize * 4
            }
            Output::Logits => {
                let len = s as usize * c.vocab_size * 4;
                st.readback.record_copy(&mut encoder, &st.logits, len as u64);
                len
            }
        };
        ctx.queue.submit([encoder.finish()]);
        let bytes = st.readback.read(ctx, read_len)?;
        Ok(match output {
            Output::TokenIds => ForwardOutput::TokenIds(bytemuck::pod_collect_to_vec(&bytes)),
            Output::Logits => ForwardOutput::Logits(bytemuck::pod_collect_to_vec(&bytes)),
        })
    }

    /// The GPU trusts these indices, so every one is checked here.
    fn check_batch(&self, batch: &BatchInputs) -> Result<(), ModelError> {
        let fail = |why: String| Err(ModelError::InvalidBatch(why));
        let (m, s) = (batch.num_tokens(), batch.num_seqs());
        let o = &self.options;
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
        let num_slots = self.kv_cache.num_blocks * self.kv_cache.block_size;
        for t in 0..m {
            let (pos, seq) = (batch.positions[t] as usize, batch.token_seq[t] as usize);
            if pos >= self.config.max_position_embeddings
                || seq >= s
                || pos / self.kv_cache.block_size >= max_blocks
            {
                return fail(format!("token {t}: position {pos} of sequence {seq} is out of range"));
            }
            if batch.slot_mapping[t] as usize >= num_slots {
                return fail(format!("token {t}: slot {} is outside the cache", batch.slot_mapping[t]));
            }
        }
        if batch.block_tables.iter().any(|&b| b as usize >= self.kv_cache.num_blocks) {
            return fail("a block table names a block outside the cache".into());
        }
        if batch.sample_indices.iter().any(|&i| i as usize >= m) {
            return fail("a sample index is outside the batch".into());
        }
        Ok(())
    }
}

impl CausalLm for Llama {
    fn forward(&self, batch: &BatchInputs, output: Output) -> Result<ForwardOutput, ModelError> {
        Llama::forward(self, batch, output)
    }
    fn options(&self) -> &LoadOptions {
        Llama::options(self)
    }
    fn block_size(&self) -> usize {
        Llama::block_size(self)
    }
    fn num_kv_blocks(&self) -> usize {
        Llama::num_kv_blocks(self)
    }
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn max_model_len(&self) -> usize {
        self.config.max_position_embeddings
    }
    fn matmul_weight_bytes(&self) -> u64 {
        Llama::matmul_weight_bytes(self)
    }
    fn gpu(&self) -> &GpuContext {
        Llama::gpu(self)
    }
}

//! The attention block over the paged KV cache: the fused Q/K/V
//! projection, optional per-head q/k RMSNorm, RoPE, the write of this
//! step's K/V into the cache, paged attention over each sequence's blocks
//! (causal, or within a sliding window), and the output projection joined
//! to the residual stream.

use crate::gpu::kernels::KernelFamily;
use crate::gpu::kernels::attention::{AttentionBindings, AttentionKey, AttentionPass};
use crate::gpu::kernels::head_rmsnorm::{HeadRmsNormBindings, HeadRmsNormKey};
use crate::gpu::kernels::kv_write::{KvWriteBindings, KvWriteKey};
use crate::gpu::profiler::{MatmulRole, Recorder};
use crate::gpu::{GpuBuffer, KernelKey};
use crate::model::ModelError;
use crate::model::bound::Bound;
use crate::model::builder::ModelBuilder;
use crate::model::config::{DecoderConfig, RopeStyle};
use crate::model::decoder::DecoderBuffers;
use crate::model::matmul::{GpuMatrix, MatmulOp};

use super::rope::RopeTable;
use super::{LayerScratch, Residual, ResidualProjection};

pub struct AttentionWeights {
    /// [(Hq + 2 Hkv) D, H]: Q, K and V stacked by rows.
    pub qkv: GpuMatrix,
    /// [D] each: RMSNorm weights of every query and key head (Gemma 3).
    pub qk_norm: Option<(GpuBuffer, GpuBuffer)>,
    /// [H, Hq D]
    pub output: GpuMatrix,
}

impl AttentionWeights {
    /// Layer `layer`'s Q/K/V projection (GGUF names): `attn_qkv` where the
    /// file fuses them (Phi-3), else `attn_q`, `attn_k`, `attn_v` stacked;
    /// their biases `attn_{q,k,v}.bias` where the file has them (Qwen 2
    /// must: `qkv_bias_required`); `attn_output` with its bias if any; and,
    /// with `qk_norm`, the per-head norms `attn_q_norm` and `attn_k_norm`.
    pub fn load(
        b: &ModelBuilder,
        c: &DecoderConfig,
        layer: usize,
        qk_norm: bool,
        qkv_bias_required: bool,
    ) -> Result<Self, ModelError> {
        let name = |leaf: &str| format!("blk.{layer}.{leaf}.weight");
        let bias = |leaf: &str| format!("blk.{layer}.{leaf}.bias");
        let (h, q_rows, kv_rows) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let fused_name = name("attn_qkv");
        let qkv = if b.source.tensor(&fused_name)?.is_some() {
            let qkv = b.matrix(&fused_name, c.qkv_size(), h)?;
            b.with_bias_if_stored(qkv, &bias("attn_qkv"))?
        } else {
            let parts = [("attn_q", q_rows), ("attn_k", kv_rows), ("attn_v", kv_rows)];
            let weights: Vec<(String, usize)> =
                parts.iter().map(|&(leaf, rows)| (name(leaf), rows)).collect();
            let weights: Vec<(&str, usize)> = weights.iter().map(|(n, rows)| (n.as_str(), *rows)).collect();
            let qkv = b.fused(&fused_name, &weights, h)?;
            if qkv_bias_required || b.source.tensor(&bias("attn_q"))?.is_some() {
                let mut values = Vec::with_capacity(c.qkv_size());
                for (leaf, rows) in parts {
                    values.extend(b.f32_values(&bias(leaf), &[rows])?);
                }
                qkv.with_bias(&b.ctx, &fused_name, &values)?
            } else {
                qkv
            }
        };
        let qk_norm = match qk_norm {
            true => Some((
                b.vector(&name("attn_q_norm"), c.head_dim)?,
                b.vector(&name("attn_k_norm"), c.head_dim)?,
            )),
            false => None,
        };
        let output =
            b.with_bias_if_stored(b.matrix(&name("attn_output"), h, q_rows)?, &bias("attn_output"))?;
        Ok(Self { qkv, qk_norm, output })
    }
}

/// Which cached positions a query sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMask {
    /// Every position up to its own.
    Causal,
    /// Its own and the `n - 1` before it.
    SlidingWindow(usize),
}

pub struct PagedAttention {
    qkv: MatmulOp,
    qk_norm: Option<Bound>,
    /// RoPE and the K/V cache write.
    kv_write: Bound,
    /// Each of the family's passes (`AttentionPass::all`), bound.
    attention: Vec<(AttentionPass, Bound)>,
    family: KernelFamily,
    output: ResidualProjection,
}

impl PagedAttention {
    /// Reads `scratch.normed`, adds its output into `buffers.hidden`;
    /// `layer` picks the layer's K/V pools.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        builder: &mut ModelBuilder,
        config: &DecoderConfig,
        buffers: &DecoderBuffers,
        scratch: &LayerScratch,
        layer: usize,
        weights: AttentionWeights,
        rope: &RopeTable,
        mask: AttentionMask,
        residual: Residual,
    ) -> Self {
        let c = config;
        let inputs = &buffers.inputs;
        let (k_cache, v_cache) = (&buffers.kv_cache.k[layer], &buffers.kv_cache.v[layer]);
        let (head_dim, n_q_heads, n_kv_heads) =
            (c.head_dim as u32, c.num_heads as u32, c.num_kv_heads as u32);
        let ctx = builder.ctx.clone();
        let cache = &mut builder.cache;
        // Q, K, V of every new token: normed [M, H] -> qkv [M, (Hq + 2 Hkv) D].
        let qkv = MatmulOp::new(&ctx, cache, weights.qkv, &inputs.step, &scratch.normed, &scratch.qkv, false)
            .with_role(MatmulRole::Qkv);
        // Each Q and K head normed in place, before RoPE.
        let qk_norm = weights.qk_norm.as_ref().map(|(q_norm, k_norm)| {
            let key = HeadRmsNormKey { head_dim, n_q_heads, n_kv_heads, eps_bits: c.rms_norm_eps.to_bits() };
            let bindings = HeadRmsNormBindings { step: &inputs.step, qkv: &scratch.qkv, q_norm, k_norm };
            Bound::bind(&ctx, cache, KernelKey::HeadRmsNorm(key), &bindings)
        });
        // Q rotated in place by each token's position; K rotated into the
        // cache slots of the slot mapping, V copied there.
        let kv_bindings = KvWriteBindings {
            step: &inputs.step,
            qkv: &scratch.qkv,
            slot_mapping: &inputs.slot_mapping,
            k_cache,
            v_cache,
            positions: &inputs.positions,
            rope_table: &rope.table,
        };
        let kv_dtype = buffers.kv_cache.dtype;
        let neox = rope.style == RopeStyle::Neox;
        let kv_key = KvWriteKey { head_dim, n_q_heads, n_kv_heads, kv_dtype, neox };
        let kv_write = Bound::bind(&ctx, cache, KernelKey::KvWrite(kv_key), &kv_bindings);
        // Each query over its sequence's cached K/V: -> attn [M, Hq D].
        let sliding_window = match mask {
            AttentionMask::Causal => 0,
            AttentionMask::SlidingWindow(window) => window as u32,
        };
        let family = ctx.kernels();
        let attention_bindings = AttentionBindings {
            step: &inputs.step,
            qkv: &scratch.qkv,
            k_cache,
            v_cache,
            block_tables: &inputs.block_tables,
            token_seq: &inputs.token_seq,
            positions: &inputs.positions,
            out: &scratch.attn,
            partials: None,
        };
        let attention = AttentionPass::all(family)
            .iter()
            .map(|&pass| {
                let key = AttentionKey {
                    head_dim,
                    n_q_heads,
                    n_kv_heads,
                    block_size: buffers.kv_cache.block_size as u32,
                    sliding_window,
                    pass,
                    kv_dtype,
                    subgroups: ctx.kernel_subgroups(),
                };
                let partials = pass.uses_partials().then_some(&scratch.attention_partials);
                let bindings = AttentionBindings { partials, ..attention_bindings };
                (pass, Bound::bind(&ctx, cache, KernelKey::Attention(key), &bindings))
            })
            .collect();
        // attn [M, Hq D] -> [M, H], into the residual stream.
        let output =
            ResidualProjection::new(builder, c, buffers, scratch, weights.output, &scratch.attn, residual)
                .with_role(MatmulRole::AttnOut);
        Self { qkv, qk_norm, kv_write, attention, family, output }
    }

    /// A step of `num_tokens` tokens of `num_seqs` sequences.
    pub fn record(&self, pass: &mut dyn Recorder, num_tokens: u32, num_seqs: u32) {
        self.qkv.record(pass, num_tokens);
        if let Some(norm) = &self.qk_norm {
            norm.record(pass, num_tokens);
        }
        self.kv_write.record(pass, num_tokens);
        for &step_pass in AttentionPass::for_step(self.family, num_tokens, num_seqs) {
            if let Some((_, bound)) = self.attention.iter().find(|(bound_pass, _)| *bound_pass == step_pass) {
                bound.record(pass, num_tokens);
            }
        }
        self.output.record(pass, num_tokens);
    }

    pub fn weight_bytes(&self) -> u64 {
        self.qkv.weight_bytes() + self.output.weight_bytes()
    }
}

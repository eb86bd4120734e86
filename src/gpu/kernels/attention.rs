//! `shaders/attention.wgsl`: paged causal attention, varlen batch, GQA,
//! optionally over a sliding window of keys (Gemma's local layers), in
//! both kernel families (see `AttentionPass`).

use super::{KernelBindings, KernelFamily};
use crate::gpu::GpuBuffer;
use crate::gpu::kv_cache::KvCacheDtype;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

/// Largest head size the kernel's registers hold.
pub const MAX_HEAD_DIM: u32 = 256;

pub struct AttentionBindings<'a> {
    /// Uniform; `num_tokens` query tokens, `max_blocks_per_seq` the table stride.
    pub step: &'a GpuBuffer,
    /// [M, (Hq + 2 Hkv) D] f32, fused Q/K/V after RoPE; only Q is read.
    pub qkv: &'a GpuBuffer,
    /// [slots, Hkv, row words] u32, rows of the cache's dtype: this layer's K pool (new tokens already written).
    pub k_cache: &'a GpuBuffer,
    /// [slots, Hkv, row words] u32, rows of the cache's dtype: this layer's V pool.
    pub v_cache: &'a GpuBuffer,
    /// [S, max_blocks_per_seq] u32, physical block of each logical block.
    pub block_tables: &'a GpuBuffer,
    /// [M] u32, sequence (row of `block_tables`) of each token.
    pub token_seq: &'a GpuBuffer,
    /// [M] u32, position of each token in its sequence.
    pub positions: &'a GpuBuffer,
    /// [M, Hq D] f32, attention output.
    pub out: &'a GpuBuffer,
    /// [M, Hq, SPLITS, 1 + D / 4] vec4: the split passes' partial results
    /// (`AttentionPass::partials_len`); bound only to those passes.
    pub partials: Option<&'a GpuBuffer>,
}

impl KernelBindings for AttentionBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        [
            self.step,
            self.qkv,
            self.k_cache,
            self.v_cache,
            self.block_tables,
            self.token_seq,
            self.positions,
            self.out,
        ]
        .into_iter()
        .chain(self.partials)
        .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionKey {
    pub head_dim: u32,
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    pub block_size: u32,
    /// Keys visible to a query: 0 = every earlier position (plain causal);
    /// W = positions p - W + 1 ..= p, as Hugging Face's `sliding_window`
    /// (see the shader). Block-table entries of blocks wholly before the
    /// window are never read.
    pub sliding_window: u32,
    pub pass: AttentionPass,
    pub kv_dtype: KvCacheDtype,
    /// Use the adapter's subgroups (of 8 or more lanes,
    /// `GpuContext::kernel_subgroups`): in the CPU family a cache row that
    /// every invocation of a subgroup reads (`attention_queries8`) is
    /// loaded once and shuffled to the lanes
    /// (`shaders/kv_loads_subgroup.wgsl`); in the GPU family a chunk's max
    /// and sum are reduced by shuffles (`shaders/attention_gpu_subgroup.wgsl`).
    pub subgroups: bool,
}

/// Which of the attention kernels a dispatch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionPass {
    /// GPU family: a workgroup per (query, head).
    PerQuery,
    /// GPU family, decode: a workgroup per (query, head, span of
    /// `SPLITS`) (`attention_gpu_split`), writing `partials` for
    /// `CombineSplits`: flash-decoding, so that a decode step's few
    /// (query, head) pairs become enough workgroups to fill a GPU.
    GpuSplitKeys,
    /// CPU family, prefill: eight consecutive queries of a sequence, a
    /// workgroup, share each K/V load (`attention_queries8`).
    QueriesTogether,
    /// CPU family, decode: each query's keys cut into `SPLITS` spans, an
    /// invocation each (`attention_split`), writing `partials` ...
    SplitKeys,
    /// ... which this joins into the output (`attention_combine`).
    CombineSplits,
}

/// Queries per workgroup (an invocation each) in `AttentionPass::QueriesTogether`.
pub const QUERIES_TOGETHER: u32 = 8;

/// Key spans per query in `AttentionPass::SplitKeys`.
pub const SPLITS: u32 = 8;

/// The CPU family's largest step that splits keys; larger steps (prompt
/// chunks) have queries enough to fill the machine and share K/V loads
/// eight queries together instead ...
pub const MAX_SPLIT_TOKENS: u32 = 16;

/// ... except a decode step (one token per sequence) of up to this many
/// tokens: its queries read each their own sequence's keys, which eight
/// queries together cannot share, and split spans measured faster per
/// token (`wgserve bench --profile --batches 16,17,32,64`). The GPU
/// family splits the keys of the same decode steps (and no others). The
/// `partials` buffer is sized for it.
pub const MAX_SPLIT_DECODE_TOKENS: u32 = 64;

impl AttentionPass {
    /// The passes, in order, of a step of `num_tokens` tokens of `num_seqs` sequences.
    pub fn for_step(family: KernelFamily, num_tokens: u32, num_seqs: u32) -> &'static [AttentionPass] {
        let decode_only = num_tokens == num_seqs && num_tokens <= MAX_SPLIT_DECODE_TOKENS;
        match family {
            KernelFamily::Gpu if decode_only => &[AttentionPass::GpuSplitKeys, AttentionPass::CombineSplits],
            KernelFamily::Gpu => &[AttentionPass::PerQuery],
            KernelFamily::Cpu if num_tokens <= MAX_SPLIT_TOKENS || decode_only => {
                &[AttentionPass::SplitKeys, AttentionPass::CombineSplits]
            }
            KernelFamily::Cpu => &[AttentionPass::QueriesTogether],
        }
    }

    /// The most tokens a step of `family` that splits keys can have (the
    /// `partials` rows), for steps of at most `max_tokens` tokens of at
    /// most `max_seqs` sequences.
    pub fn max_split_tokens(family: KernelFamily, max_tokens: usize, max_seqs: usize) -> usize {
        let decode = max_seqs.min(MAX_SPLIT_DECODE_TOKENS as usize);
        match family {
            KernelFamily::Cpu => max_tokens.min(decode.max(MAX_SPLIT_TOKENS as usize)),
            KernelFamily::Gpu => max_tokens.min(decode),
        }
    }

    /// Every pass some step of `family` runs.
    pub fn all(family: KernelFamily) -> &'static [AttentionPass] {
        match family {
            KernelFamily::Gpu => {
                &[AttentionPass::PerQuery, AttentionPass::GpuSplitKeys, AttentionPass::CombineSplits]
            }
            KernelFamily::Cpu => {
                &[AttentionPass::SplitKeys, AttentionPass::CombineSplits, AttentionPass::QueriesTogether]
            }
        }
    }

    pub fn uses_partials(self) -> bool {
        matches!(self, AttentionPass::SplitKeys | AttentionPass::GpuSplitKeys | AttentionPass::CombineSplits)
    }

    /// Floats of the `partials` buffer for up to `tokens` split tokens.
    pub fn partials_len(tokens: usize, n_q_heads: usize, head_dim: usize) -> usize {
        tokens * n_q_heads * SPLITS as usize * (4 + head_dim)
    }
}

/// The bindings of the split passes; the others take the first 8.
const BINDINGS: [BindingKind; 9] = [
    BindingKind::Uniform,
    BindingKind::StorageRead,
    BindingKind::StorageRead,
    BindingKind::StorageRead,
    BindingKind::StorageRead,
    BindingKind::StorageRead,
    BindingKind::StorageRead,
    BindingKind::StorageReadWrite,
    BindingKind::StorageReadWrite,
];

/// The most query heads per KV head that one invocation takes together.
const MAX_GROUP: u32 = 4;

impl AttentionKey {
    /// Whether the CPU family's `SplitKeys` and `QueriesTogether` run an
    /// invocation per KV head for all its query heads
    /// (`attention_split_group`, `attention_queries8_group`) rather than
    /// one per query head: for the shapes where that measured faster (see
    /// the shader; q8_0 caches measured slower grouped in both).
    pub fn groups_query_heads(&self) -> bool {
        let group = self.n_q_heads / self.n_kv_heads.max(1);
        self.n_q_heads == group * self.n_kv_heads
            && (2..=MAX_GROUP).contains(&group)
            && self.head_dim <= 64
            && self.kv_dtype != KvCacheDtype::Q8_0
    }

    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "attention",
            source: super::with_subgroup_files!(
                self.subgroups,
                concat!(
                    include_str!("../../../shaders/attention.wgsl"),
                    include_str!("../../../shaders/attention_group.wgsl"),
                    include_str!("../../../shaders/kv_cache_read.wgsl")
                ),
                plain: ["../../../shaders/kv_loads.wgsl", "../../../shaders/attention_gpu.wgsl"],
                subgroup: ["../../../shaders/kv_loads_subgroup.wgsl", "../../../shaders/attention_gpu_subgroup.wgsl"]
            ),
            entry_point: match self.pass {
                AttentionPass::PerQuery => "attention_gpu",
                AttentionPass::GpuSplitKeys => "attention_gpu_split",
                AttentionPass::QueriesTogether if self.groups_query_heads() => "attention_queries8_group",
                AttentionPass::QueriesTogether => "attention_queries8",
                AttentionPass::SplitKeys if self.groups_query_heads() => "attention_split_group",
                AttentionPass::SplitKeys => "attention_split",
                AttentionPass::CombineSplits => "attention_combine",
            },
            bindings: if self.pass.uses_partials() { &BINDINGS } else { &BINDINGS[..8] },
            constants: vec![
                ("HEAD_DIM", self.head_dim as f64),
                ("N_Q_HEADS", self.n_q_heads as f64),
                ("N_KV_HEADS", self.n_kv_heads as f64),
                ("BLOCK_SIZE", self.block_size as f64),
                ("SCALE", 1.0 / (self.head_dim as f64).sqrt()),
                ("SLIDING_WINDOW", self.sliding_window as f64),
                ("SPLITS", SPLITS as f64),
                ("KV_DTYPE", self.kv_dtype.shader_code()),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        // CPU passes: 8 invocations per workgroup.
        let invocations = match self.pass {
            // A workgroup per (token, head).
            AttentionPass::PerQuery => return [self.n_q_heads, num_tokens, 1],
            // A workgroup per (head and span, token).
            AttentionPass::GpuSplitKeys => return [self.n_q_heads * SPLITS, num_tokens, 1],
            // A workgroup per (QUERIES_TOGETHER tokens, head).
            AttentionPass::QueriesTogether => {
                let heads = if self.groups_query_heads() { self.n_kv_heads } else { self.n_q_heads };
                return [num_tokens.div_ceil(QUERIES_TOGETHER) * heads, 1, 1];
            }
            AttentionPass::SplitKeys if self.groups_query_heads() => num_tokens * self.n_kv_heads * SPLITS,
            AttentionPass::SplitKeys => num_tokens * self.n_q_heads * SPLITS,
            AttentionPass::CombineSplits => num_tokens * self.n_q_heads,
        };
        [invocations.div_ceil(8), 1, 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(head_dim: u32, n_q_heads: u32, n_kv_heads: u32, kv_dtype: KvCacheDtype) -> AttentionKey {
        AttentionKey {
            head_dim,
            n_q_heads,
            n_kv_heads,
            block_size: 16,
            sliding_window: 0,
            kv_dtype,
            pass: AttentionPass::SplitKeys,
            subgroups: false,
        }
    }

    #[test]
    fn query_heads_share_an_invocation_only_where_measured_faster() {
        // SmolLM2 (groups of 3, head size 64) in f16 and f32.
        assert!(key(64, 9, 3, KvCacheDtype::F16).groups_query_heads());
        assert!(key(64, 9, 3, KvCacheDtype::F32).groups_query_heads());
        assert_eq!(key(64, 9, 3, KvCacheDtype::F16).workgroups(1), [3, 1, 1]);
        assert_eq!(key(64, 9, 3, KvCacheDtype::Q8_0).workgroups(1), [9, 1, 1]);
        let prefill =
            |kv_dtype| AttentionKey { pass: AttentionPass::QueriesTogether, ..key(64, 9, 3, kv_dtype) };
        assert_eq!(prefill(KvCacheDtype::F16).workgroups(17), [9, 1, 1]);
        assert_eq!(prefill(KvCacheDtype::Q8_0).workgroups(17), [27, 1, 1]);
        // q8_0, Gemma 3's head size 256, Qwen2.5-0.5B's groups of 7, no GQA.
        assert!(!key(64, 9, 3, KvCacheDtype::Q8_0).groups_query_heads());
        assert!(!key(256, 4, 1, KvCacheDtype::F16).groups_query_heads());
        assert!(!key(64, 14, 2, KvCacheDtype::F16).groups_query_heads());
        assert!(!key(64, 8, 8, KvCacheDtype::F16).groups_query_heads());
    }

    // The model binds `all` once at load and records `for_step`'s passes
    // from it: a pass missing there would be silently skipped.
    #[test]
    fn every_pass_a_step_runs_is_among_the_family_passes() {
        for family in [KernelFamily::Cpu, KernelFamily::Gpu] {
            for tokens in [1, MAX_SPLIT_TOKENS, MAX_SPLIT_TOKENS + 1, MAX_SPLIT_DECODE_TOKENS + 1, 512] {
                for seqs in [1, tokens] {
                    for pass in AttentionPass::for_step(family, tokens, seqs) {
                        assert!(
                            AttentionPass::all(family).contains(pass),
                            "{family:?} {tokens}/{seqs}: {pass:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn decode_steps_split_keys_up_to_their_cap_and_prompt_chunks_up_to_theirs() {
        let split = [AttentionPass::SplitKeys, AttentionPass::CombineSplits];
        let cpu = |tokens, seqs| AttentionPass::for_step(KernelFamily::Cpu, tokens, seqs);
        assert_eq!(cpu(1, 1), split);
        assert_eq!(cpu(MAX_SPLIT_TOKENS, 1), split);
        assert_eq!(cpu(MAX_SPLIT_TOKENS + 1, 1), [AttentionPass::QueriesTogether]);
        assert_eq!(cpu(MAX_SPLIT_TOKENS + 1, 2), [AttentionPass::QueriesTogether]);
        assert_eq!(cpu(MAX_SPLIT_DECODE_TOKENS, MAX_SPLIT_DECODE_TOKENS), split);
        assert_eq!(
            cpu(MAX_SPLIT_DECODE_TOKENS + 1, MAX_SPLIT_DECODE_TOKENS + 1),
            [AttentionPass::QueriesTogether]
        );
        // The GPU family splits decode steps only, up to the same cap.
        let gpu = |tokens, seqs| AttentionPass::for_step(KernelFamily::Gpu, tokens, seqs);
        let gpu_split = [AttentionPass::GpuSplitKeys, AttentionPass::CombineSplits];
        assert_eq!(gpu(1, 1), gpu_split);
        assert_eq!(gpu(MAX_SPLIT_DECODE_TOKENS, MAX_SPLIT_DECODE_TOKENS), gpu_split);
        assert_eq!(gpu(MAX_SPLIT_DECODE_TOKENS + 1, MAX_SPLIT_DECODE_TOKENS + 1), [AttentionPass::PerQuery]);
        assert_eq!(gpu(2, 1), [AttentionPass::PerQuery]);
        assert_eq!(gpu(17, 3), [AttentionPass::PerQuery]);
        // The partials hold every step that splits, whatever the limits.
        for family in [KernelFamily::Cpu, KernelFamily::Gpu] {
            for (max_tokens, max_seqs) in [(512, 64), (256, 16), (8, 8), (512, 512), (40, 64)] {
                let rows = AttentionPass::max_split_tokens(family, max_tokens, max_seqs);
                for tokens in 1..=max_tokens as u32 {
                    for seqs in [1, tokens.min(max_seqs as u32)] {
                        if AttentionPass::for_step(family, tokens, seqs).iter().any(|p| p.uses_partials()) {
                            assert!(
                                tokens as usize <= rows,
                                "{family:?} {tokens}/{seqs} in {max_tokens}/{max_seqs}: {rows} rows"
                            );
                        }
                    }
                }
            }
        }
    }
}

// Paged causal attention over a varlen batch (prefill and decode alike).
// One invocation per (query token, query head): it walks the keys at
// positions first..=pos of its own sequence through the sequence's block
// table, with an online softmax (flash-attention style), so no score matrix
// is ever stored. GQA: query head h reads KV head h / (N_Q_HEADS / N_KV_HEADS).
// The new tokens' K/V were written to the cache earlier in the same step.
//
// Sliding window (SLIDING_WINDOW = W > 0): the query at position q sees the
// key at position k iff q - W < k <= q, the mask of Hugging Face
// transformers (`masking_utils.sliding_window_overlay`: kv_idx > q_idx -
// sliding_window, and-ed with the causal kv_idx <= q_idx), which Gemma 3's
// local layers use with `config.sliding_window`. So first = max(0, q - W + 1):
// a local layer costs O(W) per query, and the blocks before the window (and
// their block-table entries) are never read.
//
// The CPU family (workgroups of 8) has two ways through a step: small
// steps (decodes) split each query's keys into SPLITS spans, an
// invocation each (`attention_split`), and combine the spans' partial
// softmaxes (`attention_combine`); larger steps (prefill) take eight
// consecutive queries per workgroup (`attention_queries8`). Each has a
// variant where an invocation takes all the query heads of a KV head
// (`_group`, in shaders/attention_group.wgsl, appended). The GPU family
// (at the end) has a workgroup per query and head (`attention_gpu`), or
// in decode steps per query, head and span of keys (`attention_gpu_split`,
// combined as the CPU family's spans are).

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override HEAD_DIM: u32;           // a multiple of 4, at most 4 * MAX_D4
override N_Q_HEADS: u32;
override N_KV_HEADS: u32;
override BLOCK_SIZE: u32 = 16u;
override SCALE: f32;              // 1 / sqrt(HEAD_DIM)
override SLIDING_WINDOW: u32 = 0u; // keys per query; 0 = all earlier positions
override SPLITS: u32 = 8u;
override KV_DTYPE: u32 = 0u;      // the caches' rows: 0 f32 bits, 1 f16 pairs, 2 q8_0 (see kv_write.wgsl)

const KV_F16 = 1u;
const KV_Q8_0 = 2u;

const MAX_D4: u32 = 64u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;      // [M, (N_Q_HEADS + 2 N_KV_HEADS) HEAD_DIM] f32
// The caches in 16-byte loads (layout in kv_write.wgsl): llvmpipe pays per
// load instruction (a bounds check, and where the address differs per
// invocation a scalar load per invocation), so one vec4<u32> costs much
// less than four u32s: attention over 4,096 keys of an f16 cache ran
// about 1.3x as fast so, q8_0 1.4x (`wgserve bench --kernels`).
@group(0) @binding(2) var<storage, read> k_cache: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> v_cache: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> block_tables: array<u32>;   // [S, max_blocks_per_seq]
@group(0) @binding(5) var<storage, read> token_seq: array<u32>;      // [M] sequence of each token
@group(0) @binding(6) var<storage, read> positions: array<u32>;      // [M] position of each token
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>; // [M, N_Q_HEADS HEAD_DIM] f32
// attention_split and attention_combine only: [M, N_Q_HEADS, SPLITS, 1 + HEAD_DIM / 4]
// vec4s, each split's (max score, sum of exp, -, -) and then its unnormalized output.
@group(0) @binding(8) var<storage, read_write> partials: array<vec4<f32>>;

var<private> q: array<vec4<f32>, MAX_D4>;
var<private> acc: array<vec4<f32>, MAX_D4>;

// Reading the caches' elements (row layout, 16-byte loads, dequantizing)
// is in shaders/kv_cache_read.wgsl, appended to this file.

// The score of the query in `q` against key row `k` (q is pre-scaled).
fn key_score(k_row: CacheRow) -> f32 {
    let row = k_row.row;
    let d4 = HEAD_DIM / 4u;
    var s4 = vec4<f32>(0.0);
    var scales = 0u;
    for (var c = 0u; c < d4; c += chunk_vec4s()) {
        if (KV_DTYPE == KV_Q8_0 && c % 16u == 0u) { scales = k_scale_word(row, c); }
        let k = decode_chunk(k_load(k_row, c), row, c, scales);
        s4 += q[c] * k[0];
        if (chunk_vec4s() >= 2u) { s4 += q[c + 1u] * k[1]; }
        if (chunk_vec4s() == 4u) {
            s4 += q[c + 2u] * k[2];
            s4 += q[c + 3u] * k[3];
        }
    }
    return s4.x + s4.y + s4.z + s4.w;
}

// acc = acc * correction + p * (value row `v_row`).
fn add_value(v_row: CacheRow, correction: f32, p: f32) {
    let row = v_row.row;
    let d4 = HEAD_DIM / 4u;
    var scales = 0u;
    for (var c = 0u; c < d4; c += chunk_vec4s()) {
        if (KV_DTYPE == KV_Q8_0 && c % 16u == 0u) { scales = v_scale_word(row, c); }
        let v = decode_chunk(v_load(v_row, c), row, c, scales);
        acc[c] = acc[c] * correction + p * v[0];
        if (chunk_vec4s() >= 2u) { acc[c + 1u] = acc[c + 1u] * correction + p * v[1]; }
        if (chunk_vec4s() == 4u) {
            acc[c + 2u] = acc[c + 2u] * correction + p * v[2];
            acc[c + 3u] = acc[c + 3u] * correction + p * v[3];
        }
    }
}

// The first key position the query at `pos` sees.
fn first_visible(pos: u32) -> u32 {
    if (SLIDING_WINDOW > 0u && pos >= SLIDING_WINDOW) {
        return pos + 1u - SLIDING_WINDOW;
    }
    return 0u;
}

// The cache row of key j of a sequence (a slot past the caches reads the last).
fn key_row(table: u32, j: u32, kv_head: u32) -> u32 {
    let num_slots = 4u * arrayLength(&k_cache) / (N_KV_HEADS * row_words());
    let block = block_tables[table + j / BLOCK_SIZE];
    let slot = min(block * BLOCK_SIZE + j % BLOCK_SIZE, num_slots - 1u);
    return slot * N_KV_HEADS + kv_head;
}

// Query token t, head `head`, over its keys at positions start..end-1:
// leaves the unnormalized output in `acc` and returns the online
// softmax's (max score, sum of exponentials); (-3.4e38, 0) for no keys.
fn walk_keys(t: u32, head: u32, start: u32, end: u32) -> vec2<f32> {
    let d4 = HEAD_DIM / 4u;
    let kv_head = head / (N_Q_HEADS / N_KV_HEADS);
    let row4 = (N_Q_HEADS + 2u * N_KV_HEADS) * d4;
    for (var c = 0u; c < d4; c++) {
        q[c] = qkv[t * row4 + head * d4 + c] * SCALE;
        acc[c] = vec4<f32>(0.0);
    }
    let table = token_seq[t] * step.max_blocks_per_seq;
    var running_max = -3.4e38;
    var denom = 0.0;
    for (var j = start; j < end; j++) {
        let row = key_row(table, j, kv_head);
        let score = key_score(own_row(row));
        let new_max = max(running_max, score);
        let correction = exp(running_max - new_max);
        let p = exp(score - new_max);
        denom = denom * correction + p;
        add_value(own_row(row), correction, p);
        running_max = new_max;
    }
    return vec2<f32>(running_max, denom);
}

// Query token t, head `head`: its attention output, written to `out`.
fn attend_one(t: u32, head: u32) {
    let pos = positions[t];
    let stats = walk_keys(t, head, first_visible(pos), pos + 1u);
    let inv = 1.0 / stats.y;
    let d4 = HEAD_DIM / 4u;
    for (var c = 0u; c < d4; c++) {
        out[(t * N_Q_HEADS + head) * d4 + c] = acc[c] * inv;
    }
}

// ---- 8 queries per workgroup (prefill) ----
//
// A workgroup per (8 consecutive tokens, head), an invocation per token.
// Where the 8 are consecutive positions of one sequence (a prefill chunk),
// they walk the keys together: the key index, its block-table entry and
// every K and V address depend only on the workgroup, so the driver loads
// each word once for the whole workgroup (llvmpipe: one scalar load, where
// an address that differs per invocation costs a load per invocation).
// Each invocation skips the keys past its own position or before its
// window. A workgroup whose tokens are not one run of a sequence (decodes,
// chunk edges) takes the one-query path per invocation.
//
// Before it, an invocation took four queries and shared each load among
// them through private arrays, which the driver keeps in memory: this
// kernel's attention over a 64-token chunk is about 1.15x as fast, at 512
// and at 4,096 keys (`wgserve bench --kernels`).
const QUERIES = 8u;

// The last of the QUERIES tokens from t0 (the step may end before).
fn last_of_queries(t0: u32) -> u32 {
    return min(t0 + QUERIES, step.num_tokens) - 1u;
}

// Whether tokens t0..=last are consecutive positions of one sequence.
fn one_run(t0: u32, last: u32) -> bool {
    return token_seq[t0] == token_seq[last] && positions[last] == positions[t0] + (last - t0);
}

@compute @workgroup_size(8)
fn attention_queries8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    init_kv_lane();
    let head = wg.x % N_Q_HEADS;
    let t0 = (wg.x / N_Q_HEADS) * QUERIES;
    if (t0 >= step.num_tokens) { return; }
    let last = last_of_queries(t0);
    // Invocations past the step's last token repeat it and write nothing.
    let t = min(t0 + lane, last);
    if (!one_run(t0, last)) {
        if (t0 + lane <= last) {
            attend_one(t, head);
        }
        return;
    }
    let d4 = HEAD_DIM / 4u;
    let kv_head = head / (N_Q_HEADS / N_KV_HEADS);
    let row4 = (N_Q_HEADS + 2u * N_KV_HEADS) * d4;
    for (var c = 0u; c < d4; c++) {
        q[c] = qkv[t * row4 + head * d4 + c] * SCALE;
        acc[c] = vec4<f32>(0.0);
    }
    let pos = positions[t];
    let first = first_visible(pos);
    let table = token_seq[t0] * step.max_blocks_per_seq;
    // The walk of walk_keys with each invocation's own mask, written out
    // here: walk_keys taking the workgroup's bounds and a per-invocation
    // mask (so that every path shares one loop) measured this kernel
    // 7-12% slower.
    var running_max = -3.4e38;
    var denom = 0.0;
    // Bounds shared by the workgroup: from the first token's first visible
    // key to the last token's position.
    for (var j = first_visible(positions[t0]); j <= positions[last]; j++) {
        // Every invocation reads this row: loaded once per subgroup
        // where the adapter has subgroups (kv_loads_subgroup.wgsl).
        let row = key_row(table, j, kv_head);
        let score = key_score(shared_k_row(row));
        let visible = j >= first && j <= pos;
        let new_max = select(running_max, max(running_max, score), visible);
        let correction = exp(running_max - new_max);
        let p = select(0.0, exp(score - new_max), visible);
        denom = denom * correction + p;
        add_value(shared_v_row(row), correction, p);
        running_max = new_max;
    }
    if (t0 + lane <= last) {
        let inv = 1.0 / denom;
        for (var c = 0u; c < d4; c++) {
            out[(t * N_Q_HEADS + head) * d4 + c] = acc[c] * inv;
        }
    }
}

// ---- keys split into spans (decode) ----
//
// A decode step has only (sequences x heads) queries, each a long serial
// walk over its keys: at batch 1, SmolLM2's 9 heads fill one and a bit of
// llvmpipe's 8-lane vectors, one thread, while the other idles. Here an
// invocation takes one of SPLITS equal spans of a query's visible keys
// (flash-decoding) and writes that span's running max, sum of
// exponentials and unnormalized output; attention_combine rescales the
// spans to their common max and sums them.

fn partial_at(t: u32, head: u32, split: u32) -> u32 {
    return ((t * N_Q_HEADS + head) * SPLITS + split) * (1u + HEAD_DIM / 4u);
}

// Span `split` of token t's visible keys: positions x..y-1, the keys cut
// into SPLITS spans of ceil(keys / SPLITS) (the last ones may be empty).
fn split_keys(t: u32, split: u32) -> vec2<u32> {
    let pos = positions[t];
    let first = first_visible(pos);
    let span = (pos - first + SPLITS) / SPLITS;
    let start = first + split * span;
    return vec2<u32>(start, min(start + span, pos + 1u));
}

@compute @workgroup_size(8)
fn attention_split(@builtin(global_invocation_id) gid: vec3<u32>) {
    let split = gid.x % SPLITS;
    let head = (gid.x / SPLITS) % N_Q_HEADS;
    let t = gid.x / (SPLITS * N_Q_HEADS);
    if (t >= step.num_tokens) { return; }
    let keys = split_keys(t, split);
    let stats = walk_keys(t, head, keys.x, keys.y);
    // An empty span (fewer keys than splits) leaves max -3.4e38 and sum 0:
    // the combine weighs it exp(-3.4e38 - max) = 0.
    let at = partial_at(t, head, split);
    partials[at] = vec4<f32>(stats, 0.0, 0.0);
    for (var c = 0u; c < HEAD_DIM / 4u; c++) {
        partials[at + 1u + c] = acc[c];
    }
}

// An invocation per (query, head): out = sum_s w_s acc_s / sum_s w_s denom_s,
// w_s = exp(max_s - max), the spans' online softmax joined.
@compute @workgroup_size(8)
fn attention_combine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let head = gid.x % N_Q_HEADS;
    let t = gid.x / N_Q_HEADS;
    if (t >= step.num_tokens) { return; }
    let d4 = HEAD_DIM / 4u;
    var top = -3.4e38;
    for (var s = 0u; s < SPLITS; s++) {
        top = max(top, partials[partial_at(t, head, s)].x);
    }
    var denom = 0.0;
    for (var c = 0u; c < d4; c++) {
        acc[c] = vec4<f32>(0.0);
    }
    for (var s = 0u; s < SPLITS; s++) {
        let at = partial_at(t, head, s);
        let stats = partials[at];
        let weight = exp(stats.x - top);
        denom += weight * stats.y;
        for (var c = 0u; c < d4; c++) {
            acc[c] += weight * partials[at + 1u + c];
        }
    }
    let inv = 1.0 / denom;
    for (var c = 0u; c < d4; c++) {
        out[(t * N_Q_HEADS + head) * d4 + c] = acc[c] * inv;
    }
}

// ---- GPU family ----
//
// A workgroup of ATT_KEYS invocations per (query token, head), after
// llama.cpp's WebGPU flash attention and web-llm's decode attention: keys
// are taken ATT_KEYS at a time, one score per invocation (q shared in
// workgroup memory); the chunk's max and the sum of its exponentials are
// reduced over the workgroup (`chunk_max`, `chunk_sum`: in workgroup
// memory, shaders/attention_gpu.wgsl, or through the subgroup,
// shaders/attention_gpu_subgroup.wgsl, which also hold the entry points),
// each invocation taking one exponential, its own key's; then invocation
// c accumulates the output's vec4 c (head_dim split over invocations,
// coalesced V reads). Decode steps cut each query's keys into SPLITS
// spans, a workgroup each (`attention_gpu_split`: flash-decoding, so that
// a few sequences' heads fill more than a few of a GPU's cores), whose
// partial softmaxes `attention_combine` joins as the CPU family's.
const ATT_KEYS = 64u;
var<workgroup> q_shared: array<vec4<f32>, MAX_D4>; // [HEAD_DIM / 4] this query, scaled
var<workgroup> chunk_weights: array<f32, ATT_KEYS>; // each key's exp(score - max)
var<workgroup> chunk_rows: array<u32, ATT_KEYS>;  // each key's cache row

// A workgroup's online softmax over a span of keys: the max score, the
// sum of exponentials, and invocation li's vec4 li of the unnormalized
// output (zero where li >= HEAD_DIM / 4).
struct GpuSpan {
    max_score: f32,
    denom: f32,
    out4: vec4<f32>,
}

// Invocation `li` of the workgroup of query token `t` and head `head`,
// over the keys at positions keys.x .. keys.y - 1 (none if keys.x >=
// keys.y: max -3.4e38, sum 0).
fn attention_gpu_walk(head: u32, t: u32, li: u32, keys: vec2<u32>) -> GpuSpan {
    let d4 = HEAD_DIM / 4u;
    let kv_head = head / (N_Q_HEADS / N_KV_HEADS);
    let row4 = (N_Q_HEADS + 2u * N_KV_HEADS) * d4;
    for (var c = li; c < d4; c += ATT_KEYS) {
        q_shared[c] = qkv[t * row4 + head * d4 + c] * SCALE;
    }
    let table = token_seq[t] * step.max_blocks_per_seq;
    var running_max = -3.4e38;
    var denom = 0.0;
    var out4 = vec4<f32>(0.0);
    workgroupBarrier();
    for (var start = keys.x; start < keys.y; start += ATT_KEYS) {
        let j = start + li;
        var score = -3.4e38;
        var row = 0u;
        if (j < keys.y) {
            row = key_row(table, j, kv_head);
            var s4 = vec4<f32>(0.0);
            for (var c = 0u; c < d4; c++) {
                s4 += q_shared[c] * k_vec4(row, c);
            }
            score = s4.x + s4.y + s4.z + s4.w;
        }
        // Every chunk has a visible key (start < keys.y), so new_max is a
        // real score and the masked keys' weights are exp(-3.4e38) = 0.
        let new_max = max(running_max, chunk_max(score, li));
        chunk_weights[li] = exp(score - new_max);
        chunk_rows[li] = row;
        let correction = exp(running_max - new_max);
        // chunk_sum's barrier also publishes chunk_weights and chunk_rows.
        denom = denom * correction + chunk_sum(chunk_weights[li], li);
        out4 *= correction;
        if (li < d4) {
            let n = min(ATT_KEYS, keys.y - start);
            for (var i = 0u; i < n; i++) {
                out4 += chunk_weights[i] * v_vec4(chunk_rows[i], li);
            }
        }
        running_max = new_max;
        workgroupBarrier();
    }
    return GpuSpan(running_max, denom, out4);
}

// Query token t, head `head`, all its visible keys: the output.
fn attention_gpu_query(head: u32, t: u32, li: u32) {
    let pos = positions[t];
    let span = attention_gpu_walk(head, t, li, vec2<u32>(first_visible(pos), pos + 1u));
    if (li < HEAD_DIM / 4u && t < step.num_tokens) {
        out[(t * N_Q_HEADS + head) * (HEAD_DIM / 4u) + li] = span.out4 / span.denom;
    }
}

// Query token t, head `head`, span `split` of its keys: the partial
// softmax, in attention_split's layout for attention_combine.
fn attention_gpu_split_query(head: u32, split: u32, t: u32, li: u32) {
    let span = attention_gpu_walk(head, t, li, split_keys(t, split));
    if (t >= step.num_tokens) {
        return;
    }
    let at = partial_at(t, head, split);
    if (li == 0u) {
        partials[at] = vec4<f32>(span.max_score, span.denom, 0.0, 0.0);
    }
    if (li < HEAD_DIM / 4u) {
        partials[at + 1u + li] = span.out4;
    }
}

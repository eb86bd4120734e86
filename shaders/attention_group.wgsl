// The CPU family's attention kernels where an invocation takes all the
// query heads that read one KV head (GQA), appended to attention.wgsl
// (which declares the bindings, overrides and the per-head helpers used
// here: key_row, split_keys, partial_at, first_visible,
// QUERIES, last_of_queries, one_run). AttentionKey::groups_query_heads
// (src/gpu/kernels/attention.rs) chooses these over the per-head kernels.

// ---- keys split into spans, a KV head's query heads together (decode) ----
//
// As attention_split, but an invocation per (token, KV head, span) takes
// every query head that reads the KV head (GQA), so each K/V load serves
// them all: the loads are the cost of decode attention, and this reads
// a third of them for SmolLM2 (3 query heads per KV head). Its private
// arrays stay in registers (or plain spills) only where the driver
// unrolls the loops over heads and head size; AttentionKey chooses it
// for groups of 2-4 heads of up to 64 elements in f16 or f32 caches, the
// shapes measured faster (`wgserve bench --kernels`: f16 decode at 4,096
// keys about 2x as fast; q8_0 measured slower, so it keeps the other).
const MAX_GROUP = 4u;
var<private> q_group: array<array<vec4<f32>, MAX_D4>, MAX_GROUP>;
var<private> acc_group: array<array<vec4<f32>, MAX_D4>, MAX_GROUP>;
// Lane h: head h's online softmax max and sum of exponentials.
var<private> group_max: vec4<f32>;
var<private> group_denom: vec4<f32>;

fn group_size() -> u32 {
    return N_Q_HEADS / N_KV_HEADS;
}

// Query heads kv_head * group_size() + h of token t into q_group[h], scaled.
fn load_group_queries(t: u32, kv_head: u32) {
    let d4 = HEAD_DIM / 4u;
    let row4 = (N_Q_HEADS + 2u * N_KV_HEADS) * d4;
    for (var h = 0u; h < group_size(); h++) {
        for (var c = 0u; c < d4; c++) {
            q_group[h][c] = qkv[t * row4 + (kv_head * group_size() + h) * d4 + c] * SCALE;
            acc_group[h][c] = vec4<f32>(0.0);
        }
    }
}

// One key (cache row `k_row`, and `v_row` of the values) of the online
// softmax of every head of the group; a key that is not `visible` changes
// nothing.
fn group_attend_key(k_row: CacheRow, v_row: CacheRow, visible: bool) {
    let row = k_row.row;
    let d4 = HEAD_DIM / 4u;
    // Column h: head h's partial dot products; lane h of the vec4s
    // below is head h's.
    var s = mat4x4<f32>();
    var scales = 0u;
    for (var c = 0u; c < d4; c += chunk_vec4s()) {
        if (KV_DTYPE == KV_Q8_0 && c % 16u == 0u) { scales = k_scale_word(row, c); }
        let k = decode_chunk(k_load(k_row, c), row, c, scales);
        for (var h = 0u; h < group_size(); h++) {
            s[h] += q_group[h][c] * k[0];
            if (chunk_vec4s() >= 2u) { s[h] += q_group[h][c + 1u] * k[1]; }
            if (chunk_vec4s() == 4u) {
                s[h] += q_group[h][c + 2u] * k[2];
                s[h] += q_group[h][c + 3u] * k[3];
            }
        }
    }
    let score = transpose(s) * vec4<f32>(1.0);
    let new_max = select(group_max, max(group_max, score), visible);
    let correction = exp(group_max - new_max);
    let p = select(vec4<f32>(0.0), exp(score - new_max), visible);
    group_denom = group_denom * correction + p;
    var vscales = 0u;
    for (var c = 0u; c < d4; c += chunk_vec4s()) {
        if (KV_DTYPE == KV_Q8_0 && c % 16u == 0u) { vscales = v_scale_word(row, c); }
        let v = decode_chunk(v_load(v_row, c), row, c, vscales);
        for (var h = 0u; h < group_size(); h++) {
            acc_group[h][c] = acc_group[h][c] * correction[h] + p[h] * v[0];
            if (chunk_vec4s() >= 2u) { acc_group[h][c + 1u] = acc_group[h][c + 1u] * correction[h] + p[h] * v[1]; }
            if (chunk_vec4s() == 4u) {
                acc_group[h][c + 2u] = acc_group[h][c + 2u] * correction[h] + p[h] * v[2];
                acc_group[h][c + 3u] = acc_group[h][c + 3u] * correction[h] + p[h] * v[3];
            }
        }
    }
    group_max = new_max;
}

@compute @workgroup_size(8)
fn attention_split_group(@builtin(global_invocation_id) gid: vec3<u32>) {
    let split = gid.x % SPLITS;
    let kv_head = (gid.x / SPLITS) % N_KV_HEADS;
    let t = gid.x / (SPLITS * N_KV_HEADS);
    if (t >= step.num_tokens) { return; }
    let d4 = HEAD_DIM / 4u;
    load_group_queries(t, kv_head);
    let keys = split_keys(t, split);
    let table = token_seq[t] * step.max_blocks_per_seq;
    group_max = vec4<f32>(-3.4e38);
    group_denom = vec4<f32>(0.0);
    for (var j = keys.x; j < keys.y; j++) {
        let row = key_row(table, j, kv_head);
        group_attend_key(own_row(row), own_row(row), true);
    }
    for (var h = 0u; h < group_size(); h++) {
        let at = partial_at(t, kv_head * group_size() + h, split);
        partials[at] = vec4<f32>(group_max[h], group_denom[h], 0.0, 0.0);
        for (var c = 0u; c < d4; c++) {
            partials[at + 1u + c] = acc_group[h][c];
        }
    }
}

// ---- 8 queries per workgroup, a KV head's query heads together (prefill) ----
//
// attention_queries8 with an invocation per (token, KV head) taking every
// query head of the group, as attention_split_group does for decode: the
// workgroup's K/V loads and their decoding serve the group's heads. Chosen
// for the same shapes as attention_split_group: SmolLM2's 64-query chunk
// over 4,096 keys of an f16 cache about 1.7x as fast as attention_queries8,
// f32 2.0x; q8_0 1.25x slower (`wgserve bench --kernels`).
@compute @workgroup_size(8)
fn attention_queries8_group(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    init_kv_lane();
    let kv_head = wg.x % N_KV_HEADS;
    let t0 = (wg.x / N_KV_HEADS) * QUERIES;
    if (t0 >= step.num_tokens) { return; }
    let last = last_of_queries(t0);
    // Invocations past the step's last token repeat it and write nothing.
    let t = min(t0 + lane, last);
    load_group_queries(t, kv_head);
    let pos = positions[t];
    let first = first_visible(pos);
    group_max = vec4<f32>(-3.4e38);
    group_denom = vec4<f32>(0.0);
    if (!one_run(t0, last)) {
        // Tokens of their own (a decode step of more sequences than the
        // split kernels take, decodes beside a prompt chunk, a chunk's
        // edge): each invocation walks its own keys, as
        // attention_split_group walks a span, every K/V load serving the
        // group's heads (a walk per head, as before, took 1.5-1.6x as long
        // at 65 decodes: `wgserve bench --profile --batches 65`).
        if (t0 + lane <= last) {
            let table = token_seq[t] * step.max_blocks_per_seq;
            for (var j = first; j <= pos; j++) {
                let row = key_row(table, j, kv_head);
                group_attend_key(own_row(row), own_row(row), true);
            }
            write_group_output(t, kv_head);
        }
        return;
    }
    let table = token_seq[t0] * step.max_blocks_per_seq;
    for (var j = first_visible(positions[t0]); j <= positions[last]; j++) {
        let row = key_row(table, j, kv_head);
        group_attend_key(shared_k_row(row), shared_v_row(row), j >= first && j <= pos);
    }
    if (t0 + lane <= last) {
        write_group_output(t, kv_head);
    }
}

// Token t's output for every query head of the group: acc / denom.
fn write_group_output(t: u32, kv_head: u32) {
    let d4 = HEAD_DIM / 4u;
    for (var h = 0u; h < group_size(); h++) {
        let inv = 1.0 / group_denom[h];
        for (var c = 0u; c < d4; c++) {
            out[(t * N_Q_HEADS + kv_head * group_size() + h) * d4 + c] = acc_group[h][c] * inv;
        }
    }
}

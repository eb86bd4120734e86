// Writes the new tokens' K and V into the paged cache at their slots.
// Cache layout per layer: [num_blocks * BLOCK_SIZE (= slots), N_KV_HEADS,
// HEAD_DIM] elements, f32 bits or (KV_HALF) f16 pairs, pack2x16float.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override HEAD_DIM: u32;
override N_Q_HEADS: u32;
override N_KV_HEADS: u32;
override KV_HALF: bool = false;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;          // [M, (N_Q_HEADS + 2 N_KV_HEADS) HEAD_DIM] f32
@group(0) @binding(2) var<storage, read> slot_mapping: array<u32>;       // [M]
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>; // [slots, N_KV_HEADS, HEAD_DIM]
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>; // [slots, N_KV_HEADS, HEAD_DIM]

@compute @workgroup_size(64)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>) {
    let kv4 = N_KV_HEADS * HEAD_DIM / 4u;
    let e = gid.x;
    let t = gid.y;
    if (e >= kv4 || t >= step.num_tokens) { return; }
    let row4 = (N_Q_HEADS + 2u * N_KV_HEADS) * HEAD_DIM / 4u;
    let k_at = t * row4 + N_Q_HEADS * HEAD_DIM / 4u + e;
    let slot = slot_mapping[t];
    let dst = slot * kv4 + e; // in vec4s
    let k = qkv[k_at];
    let v = qkv[k_at + kv4];
    if (KV_HALF) {
        if (2u * dst + 1u >= arrayLength(&k_cache)) { return; }
        k_cache[2u * dst] = pack2x16float(k.xy);
        k_cache[2u * dst + 1u] = pack2x16float(k.zw);
        v_cache[2u * dst] = pack2x16float(v.xy);
        v_cache[2u * dst + 1u] = pack2x16float(v.zw);
        return;
    }
    if (4u * dst + 3u >= arrayLength(&k_cache)) { return; }
    let kb = bitcast<vec4<u32>>(k);
    let vb = bitcast<vec4<u32>>(v);
    for (var i = 0u; i < 4u; i++) {
        k_cache[4u * dst + i] = kb[i];
        v_cache[4u * dst + i] = vb[i];
    }
}

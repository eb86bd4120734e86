// Embedding lookup: out[t, :] = dequantized row ids[t] of the table W[V, K].
// One invocation per (token, block of 32 columns); the table stays packed.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override K: u32;   // row length (hidden size), a multiple of 32
override V: u32;   // rows (vocabulary size)

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> ids: array<u32>;           // [M] token ids
@group(0) @binding(2) var<storage, read> w_data: array<u32>;        // [V, K/32, words per block]
@group(0) @binding(3) var<storage, read> w_scales: array<u32>;      // [V, K/32]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [M, K] f32

// Returns (token, block) or none when the invocation is past the end.
fn locate(gid: vec3<u32>) -> vec3<u32> {
    let b = gid.x;
    let t = gid.y;
    let valid = select(0u, 1u, b < K / 32u && t < step.num_tokens);
    // Ids were checked on the CPU; clamping keeps a bad one inside the table.
    let row = min(ids[min(t, arrayLength(&ids) - 1u)], V - 1u);
    return vec3<u32>(t, row * (K / 32u) + b, valid);
}

fn out_base(t: u32, b: u32) -> u32 {
    return t * (K / 4u) + b * 8u;
}

@compute @workgroup_size(64)
fn embedding_q4_1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let at = locate(gid);
    if (at.z == 0u) { return; }
    let dm = unpack2x16float(w_scales[at.y]);
    let o = out_base(at.x, gid.x);
    for (var w = 0u; w < 4u; w++) {
        let q = w_data[at.y * 4u + w];
        let lo = vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
        let hi = vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
        out[o + w] = dm.x * lo + dm.y;
        out[o + 4u + w] = dm.x * hi + dm.y;
    }
}

@compute @workgroup_size(64)
fn embedding_q4_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    let at = locate(gid);
    if (at.z == 0u) { return; }
    let d = bitcast<f32>(w_scales[at.y]);
    let o = out_base(at.x, gid.x);
    for (var w = 0u; w < 4u; w++) {
        let q = w_data[at.y * 4u + w];
        let lo = vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
        let hi = vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
        out[o + w] = d * (lo - 8.0);
        out[o + 4u + w] = d * (hi - 8.0);
    }
}

@compute @workgroup_size(64)
fn embedding_q8_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    let at = locate(gid);
    if (at.z == 0u) { return; }
    let d = bitcast<f32>(w_scales[at.y]);
    let o = out_base(at.x, gid.x);
    for (var w = 0u; w < 8u; w++) {
        let q = w_data[at.y * 8u + w];
        let v = bitcast<vec4<i32>>(vec4<u32>(q << 24u, q << 16u, q << 8u, q)) >> vec4<u32>(24u);
        out[o + w] = d * vec4<f32>(v);
    }
}

@compute @workgroup_size(64)
fn embedding_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    let at = locate(gid);
    if (at.z == 0u) { return; }
    let o = out_base(at.x, gid.x);
    let base = at.y * 32u;
    for (var w = 0u; w < 8u; w++) {
        let i = base + w * 4u;
        out[o + w] = bitcast<vec4<f32>>(vec4<u32>(w_data[i], w_data[i + 1u], w_data[i + 2u], w_data[i + 3u]));
    }
}

@compute @workgroup_size(64)
fn embedding_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let at = locate(gid);
    if (at.z == 0u) { return; }
    let o = out_base(at.x, gid.x);
    let base = at.y * 16u;
    for (var w = 0u; w < 8u; w++) {
        let i = base + w * 2u;
        out[o + w] = vec4<f32>(unpack2x16float(w_data[i]), unpack2x16float(w_data[i + 1u]));
    }
}

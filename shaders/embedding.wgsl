// Embedding lookup: out[t, :] = SCALE * dequantized row ids[t] of the
// table W[V, K]. One invocation per (token, block of 32 columns); the
// table stays packed. A table over the storage binding limit runs as row
// chunks, one dispatch each: a dispatch writes the tokens whose ids fall
// in its rows [ROW_START, ROW_START + ROWS) and leaves the others.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override K: u32;   // row length (hidden size), a multiple of 32
override V: u32;   // rows (vocabulary size)
override ROW_START: u32 = 0u; // first table row bound as w_data
override ROWS: u32;           // table rows bound as w_data (V unless chunked)
override SCALE: f32 = 1.0;    // multiplied into every output (Gemma: sqrt(K))
// embedding_quant only: the layout of matmul_quant.wgsl (read its header).
override FORMAT: u32 = 0u;
override LOW_BITS: u32 = 4u;
override HIGH_BITS: u32 = 0u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> ids: array<u32>;           // [M] token ids
@group(0) @binding(2) var<storage, read> w_data: array<u32>;        // [ROWS, K/32, words per block]
@group(0) @binding(3) var<storage, read> w_scales: array<u32>;      // [ROWS, K/32] (format-specific)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [M, K] f32

// Returns (token, block) or none when the invocation is past the end.
fn locate(gid: vec3<u32>) -> vec3<u32> {
    let b = gid.x;
    let t = gid.y;
    // Ids were checked on the CPU; clamping keeps a bad one inside the table.
    let id = min(ids[min(t, arrayLength(&ids) - 1u)], V - 1u);
    let mine = id >= ROW_START && id - ROW_START < ROWS;
    let valid = select(0u, 1u, b < K / 32u && t < step.num_tokens && mine);
    let row = min(id - ROW_START, ROWS - 1u);
    return vec3<u32>(t, row * (K / 32u) + b, valid);
}

fn store(at: u32, value: vec4<f32>) {
    out[at] = SCALE * value;
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
        store(o + w, dm.x * lo + dm.y);
        store(o + 4u + w, dm.x * hi + dm.y);
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
        store(o + w, d * (lo - 8.0));
        store(o + 4u + w, d * (hi - 8.0));
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
        store(o + w, d * vec4<f32>(v));
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
        store(o + w, bitcast<vec4<f32>>(vec4<u32>(w_data[i], w_data[i + 1u], w_data[i + 2u], w_data[i + 3u])));
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
        store(o + w, vec4<f32>(unpack2x16float(w_data[i]), unpack2x16float(w_data[i + 1u])));
    }
}

// ---- 5- and 6-bit, K-quant and IQ4 formats ----
// The scales (`FORMAT_*`, `affine`, `zero_point`) are
// shaders/quant_scales.wgsl's, appended here and to matmul_quant.wgsl;
// tests/kernels.rs checks both kernels against the same CPU dequantizer.

const IQ4_KVALUES = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

// (s_lo, s_hi, o_lo, o_hi) of block b of a row: value = s (q - z) + o.
fn block_affine(row: u32, b: u32) -> vec4<f32> {
    let g = b / group_len();
    return affine(row, g, b % group_len(), group_scales(row, g));
}

// `code_words`: shaders/quant_codes.wgsl, appended to this file.

// The four codes of a code word (bytes 0..3), or the table values they index.
fn codes(word: u32) -> vec4<f32> {
    let code = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    if (FORMAT == FORMAT_IQ4_NL || FORMAT == FORMAT_IQ4_XS) {
        return vec4<f32>(IQ4_KVALUES[code.x], IQ4_KVALUES[code.y], IQ4_KVALUES[code.z], IQ4_KVALUES[code.w]);
    }
    return vec4<f32>(code);
}

@compute @workgroup_size(64)
fn embedding_quant(@builtin(global_invocation_id) gid: vec3<u32>) {
    let at = locate(gid);
    if (at.z == 0u) { return; }
    let b = gid.x;
    let row = at.y / (K / 32u);
    let words = LOW_BITS + HIGH_BITS;
    let base = at.y * words;
    var high = vec2<u32>(0u);
    if (HIGH_BITS >= 1u) {
        high.x = w_data[base + LOW_BITS];
    }
    if (HIGH_BITS == 2u) {
        high.y = w_data[base + LOW_BITS + 1u];
    }
    let f = block_affine(row, b);
    let z = zero_point();
    let o = out_base(at.x, b);
    for (var w = 0u; w < 4u; w++) {
        let words = code_words(nibble_word(w_data[base + low_word_of(w)], w), high, w);
        store(o + w, f.x * (codes(words.x) - z) + f.z);
        store(o + 4u + w, f.y * (codes(words.y) - z) + f.w);
    }
}

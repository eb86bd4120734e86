// RoPE and the write of the new tokens' K and V into the paged cache, in
// one dispatch (two cost a decode step on llvmpipe about as much as their
// work): Q rotated in place in the fused QKV activations (attention reads
// it there), K rotated on its way into the cache (nothing reads it from
// qkv afterwards), V copied.
//
// RoPE: cos/sin come from a table computed on the CPU at load, so the
// angles match the reference to the last bit whatever the driver's cos().
// Pairs: GGUF Llama weights rotate adjacent elements (2i, 2i+1); Hugging
// Face weights rotate halves (i, i + D/2) (NEOX).
//
// Cache layout per layer: [num_blocks * BLOCK_SIZE (= slots), N_KV_HEADS]
// rows of HEAD_DIM elements, in u32 words by KV_DTYPE:
//   0 (f32): HEAD_DIM words of f32 bits;
//   1 (f16): HEAD_DIM / 2 words of f16 pairs (pack2x16float);
//   2 (q8_0): HEAD_DIM / 4 words of codes (4 signed bytes, element 4i + j
//      in byte j of word i) and ceil(HEAD_DIM / 64) words of f16 scales
//      (group g of 32 elements in half g % 2 of word g / 2). The codes of
//      every row come first, then the scales of every row, so that each
//      row of codes starts on 16 bytes (attention reads 16 at a time).
//      llama.cpp's q8_0: d = max|x| / 127, code = round(x / d), x ~ code * d.
// Row r is slot * N_KV_HEADS + kv_head.
//
// Invocations per token: first N_Q_HEADS * HEAD_DIM / 8, each rotating a
// vec4 of a Q head's first half and the vec4 HEAD_DIM / 2 further on (the
// partners of the NEOX pairs: no two invocations touch one element), then
// the cache writers. f32 and f16: one per vec4 of the token's K/V heads.
// q8_0: one per (KV head, scale word), i.e. per pair of groups, so that
// each scale word has one writer.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override HEAD_DIM: u32;           // a multiple of 8; q8_0: of 32
override N_Q_HEADS: u32;
override N_KV_HEADS: u32;
override KV_DTYPE: u32 = 0u;      // 0 f32, 1 f16, 2 q8_0 (as above)
override NEOX: bool = false;

const KV_F16 = 1u;
const KV_Q8_0 = 2u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> qkv: array<vec4<f32>>;    // [M, (N_Q_HEADS + 2 N_KV_HEADS) HEAD_DIM] f32
@group(0) @binding(2) var<storage, read> slot_mapping: array<u32>;       // [M]
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>; // [slots, N_KV_HEADS, row words of KV_DTYPE]
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>; // [slots, N_KV_HEADS, row words of KV_DTYPE]
@group(0) @binding(5) var<storage, read> positions: array<u32>;          // [M]
@group(0) @binding(6) var<storage, read> rope_table: array<vec2<f32>>;   // [max_pos, HEAD_DIM/2] (cos, sin)

// ---- RoPE ----

// vec4s per head, and per half head.
fn head4() -> u32 {
    return HEAD_DIM / 4u;
}

fn half4() -> u32 {
    return HEAD_DIM / 8u;
}

fn token_row4(t: u32) -> u32 {
    return t * (N_Q_HEADS + 2u * N_KV_HEADS) * head4();
}

// (cos, sin) of rotation pair p at token t's position.
fn cos_sin(t: u32, p: u32) -> vec2<f32> {
    let half = HEAD_DIM / 2u;
    let max_pos = arrayLength(&rope_table) / half;
    return rope_table[min(positions[t], max_pos - 1u) * half + p];
}

// Adjacent pairs: vec4 j of a head holds pairs 2j and 2j + 1 whole.
fn rotate_adjacent(t: u32, j: u32, v: vec4<f32>) -> vec4<f32> {
    let a = cos_sin(t, 2u * j);
    let b = cos_sin(t, 2u * j + 1u);
    return vec4<f32>(v.x * a.x - v.y * a.y, v.y * a.x + v.x * a.y, v.z * b.x - v.w * b.y, v.w * b.x + v.z * b.y);
}

// NEOX pairs: element c of vec4 j < half4() pairs with element c of vec4
// j + half4(); the four pairs 4j..4j+3 share (cos, sin) per lane.
struct Rotation {
    c: vec4<f32>,
    s: vec4<f32>,
}

fn rotation4(t: u32, j: u32) -> Rotation {
    let a = cos_sin(t, 4u * j);
    let b = cos_sin(t, 4u * j + 1u);
    let c = cos_sin(t, 4u * j + 2u);
    let d = cos_sin(t, 4u * j + 3u);
    return Rotation(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y));
}

// Q head `head` of token t, vec4s j and j + half4(), rotated in place.
fn rotate_query(t: u32, head: u32, j: u32) {
    let lo_at = token_row4(t) + head * head4() + j;
    let hi_at = lo_at + half4();
    let lo = qkv[lo_at];
    let hi = qkv[hi_at];
    if (NEOX) {
        let r = rotation4(t, j);
        qkv[lo_at] = lo * r.c - hi * r.s;
        qkv[hi_at] = hi * r.c + lo * r.s;
    } else {
        qkv[lo_at] = rotate_adjacent(t, j, lo);
        qkv[hi_at] = rotate_adjacent(t, j + half4(), hi);
    }
}

// Vec4 j of token t's K head `kv_head`, rotated (qkv keeps it unrotated).
fn key4(t: u32, kv_head: u32, j: u32) -> vec4<f32> {
    let base = token_row4(t) + (N_Q_HEADS + kv_head) * head4();
    let v = qkv[base + j];
    if (!NEOX) {
        return rotate_adjacent(t, j, v);
    }
    if (j < half4()) {
        let r = rotation4(t, j);
        return v * r.c - qkv[base + j + half4()] * r.s;
    }
    let r = rotation4(t, j - half4());
    return v * r.c + qkv[base + j - half4()] * r.s;
}

// Vec4 j of token t's V head `kv_head`.
fn value4(t: u32, kv_head: u32, j: u32) -> vec4<f32> {
    return qkv[token_row4(t) + (N_Q_HEADS + N_KV_HEADS + kv_head) * head4() + j];
}

// ---- the kernel ----

@compute @workgroup_size(64)
fn kv_write(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    if (t >= step.num_tokens) { return; }
    let queries = N_Q_HEADS * half4();
    if (gid.x < queries) {
        rotate_query(t, gid.x / half4(), gid.x % half4());
        return;
    }
    let e = gid.x - queries;
    if (KV_DTYPE == KV_Q8_0) {
        write_q8_0(e, t);
        return;
    }
    if (e >= N_KV_HEADS * head4()) { return; }
    let kv_head = e / head4();
    let j = e % head4();
    let dst = slot_mapping[t] * N_KV_HEADS * head4() + e; // in vec4s
    let k = key4(t, kv_head, j);
    let v = value4(t, kv_head, j);
    if (KV_DTYPE == KV_F16) {
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

// ---- q8_0 ----

// The f16 bits nearest a finite x >= 0 (ties to even), the largest finite
// f16 above its range. Done by hand, not with pack2x16float, whose
// rounding WGSL leaves to the adapter: the stored scales are then the same
// bits everywhere, those of a CPU's f32 -> f16 conversion.
fn f16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let e = i32(b >> 23u) - 127;
    if (e > 15) { return 0x7bffu; }
    var h = 0u;
    if (e >= -14) {
        // Normal: the exponent rebiased, the mantissa cut to 10 bits.
        h = (u32(e + 15) << 10u) | ((b & 0x7fffffu) >> 13u);
        let rest = b & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u)) { h += 1u; }
    } else if (e >= -25) {
        // Subnormal: x / 2^-24 = significand * 2^(e + 1), rounded.
        let m = (b & 0x7fffffu) | 0x800000u;
        let shift = u32(-(e + 1));
        h = m >> shift;
        let rest = m & ((1u << shift) - 1u);
        let tie = 1u << (shift - 1u);
        if (rest > tie || (rest == tie && (h & 1u) == 1u)) { h += 1u; }
    }
    return min(h, 0x7bffu);
}

var<private> codes: array<u32, 8>;

// Vec4 j of token t's K (rotated) or V head `kv_head`.
fn kv4(key: bool, t: u32, kv_head: u32, j: u32) -> vec4<f32> {
    if (key) {
        return key4(t, kv_head, j);
    }
    return value4(t, kv_head, j);
}

// The 32 elements of group g of token t's K or V head `kv_head`: their
// codes into `codes`, and their scale's f16 bits returned. Codes are taken
// against the f16 scale, the one attention will multiply by.
fn quantize_group(key: bool, t: u32, kv_head: u32, g: u32) -> u32 {
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let a = abs(kv4(key, t, kv_head, 8u * g + i));
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    let bits = f16_bits(amax / 127.0);
    let d = unpack2x16float(bits).x;
    for (var i = 0u; i < 8u; i++) {
        var c = vec4<i32>(0);
        if (d > 0.0) {
            let v = kv4(key, t, kv_head, 8u * g + i);
            c = vec4<i32>(clamp(round(v / d), vec4<f32>(-127.0), vec4<f32>(127.0)));
        }
        let b = bitcast<vec4<u32>>(c) & vec4<u32>(0xffu);
        codes[i] = b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
    }
    return bits;
}

// Invocation (scale word w of KV head h, token t): groups 2w and 2w + 1 (if
// any) of K and of V.
fn write_q8_0(e: u32, t: u32) {
    let scale_words = (HEAD_DIM + 63u) / 64u;
    let d4 = HEAD_DIM / 4u;
    let groups = HEAD_DIM / 32u;
    let kv_head = e / scale_words;
    let w = e % scale_words;
    if (kv_head >= N_KV_HEADS || t >= step.num_tokens) { return; }
    let num_rows = arrayLength(&k_cache) / (d4 + scale_words);
    let row = slot_mapping[t] * N_KV_HEADS + kv_head;
    if (row >= num_rows) { return; }
    let dst = row * d4;
    let scales_at = num_rows * d4 + row * scale_words + w;
    var k_scales = 0u;
    var v_scales = 0u;
    for (var part = 0u; part < 2u; part++) {
        let g = 2u * w + part;
        if (g >= groups) { break; }
        k_scales |= quantize_group(true, t, kv_head, g) << (16u * part);
        for (var i = 0u; i < 8u; i++) {
            k_cache[dst + 8u * g + i] = codes[i];
        }
        v_scales |= quantize_group(false, t, kv_head, g) << (16u * part);
        for (var i = 0u; i < 8u; i++) {
            v_cache[dst + 8u * g + i] = codes[i];
        }
    }
    k_cache[scales_at] = k_scales;
    v_cache[scales_at] = v_scales;
}

// The paged KV cache's rows as attention reads them (appended to
// attention.wgsl, which declares HEAD_DIM, KV_DTYPE, KV_F16, KV_Q8_0 and
// the k_cache / v_cache bindings). kv_write.wgsl writes this layout.
//
// A row is one slot's one KV head, HEAD_DIM elements: rows are numbered
// slot * N_KV_HEADS + kv_head. Vec4 c of a row (elements 4c..4c+3) is 4
// words of f32 bits, 2 words of f16 pairs, or in q8_0 one word of codes
// times its group's scale (codes and scales live in separate regions of
// the buffer, so that rows of codes stay 16-byte aligned).

fn scale_words() -> u32 {
    return (HEAD_DIM + 63u) / 64u;
}

// Vec4s of elements one 16-byte load holds: the unit the CPU kernels walk
// a row in. f16 rows of an odd number of vec4s are not 16-byte aligned,
// so they are read a vec4 of elements (half a load) at a time.
fn chunk_vec4s() -> u32 {
    if (KV_DTYPE == KV_Q8_0) { return 4u; }
    if (KV_DTYPE == KV_F16 && (HEAD_DIM / 4u) % 2u == 0u) { return 2u; }
    return 1u;
}

// The index of the 16-byte load that holds vec4 c of row `row`.
fn load_index(row: u32, c: u32) -> u32 {
    let at = row * (HEAD_DIM / 4u) + c;
    switch KV_DTYPE {
        case KV_F16: { return at / 2u; }
        case KV_Q8_0: { return at / 4u; }
        default: { return at; }
    }
}

// Where q8_0's scale words start: after the codes of every row.
fn q8_0_scales_start(words: u32) -> u32 {
    let d4 = HEAD_DIM / 4u;
    return words / (d4 + scale_words()) * d4;
}

// q8_0: the scale word of row `row` covering vec4 c (64 elements a word).
fn k_scale_word(row: u32, c: u32) -> u32 {
    let w = q8_0_scales_start(4u * arrayLength(&k_cache)) + row * scale_words() + c / 16u;
    return k_cache[w / 4u][w % 4u];
}

fn v_scale_word(row: u32, c: u32) -> u32 {
    let w = q8_0_scales_start(4u * arrayLength(&v_cache)) + row * scale_words() + c / 16u;
    return v_cache[w / 4u][w % 4u];
}

// q8_0: a word of 4 signed codes times the scale of vec4 c's group (c / 8),
// in half (c / 8) % 2 of its scale word.
fn dequantize_q8_0(codes: u32, scales: u32, c: u32) -> vec4<f32> {
    let v = vec4<i32>(bitcast<i32>(codes)) << vec4<u32>(24u, 16u, 8u, 0u) >> vec4<u32>(24u);
    return vec4<f32>(v) * unpack2x16float(scales)[(c / 8u) % 2u];
}

// The vec4s of elements c..c + chunk_vec4s() - 1 of a row from their one
// load `words` (columns past chunk_vec4s() are zero); `scales` is the
// row's q8_0 scale word for c.
fn decode_chunk(words: vec4<u32>, row: u32, c: u32, scales: u32) -> mat4x4<f32> {
    var m = mat4x4<f32>();
    switch KV_DTYPE {
        case KV_F16: {
            if (chunk_vec4s() == 2u) {
                m[0] = vec4<f32>(unpack2x16float(words.x), unpack2x16float(words.y));
                m[1] = vec4<f32>(unpack2x16float(words.z), unpack2x16float(words.w));
            } else {
                let half = select(words.xy, words.zw, (row * (HEAD_DIM / 4u) + c) % 2u == 1u);
                m[0] = vec4<f32>(unpack2x16float(half.x), unpack2x16float(half.y));
            }
        }
        case KV_Q8_0: {
            m[0] = dequantize_q8_0(words.x, scales, c);
            m[1] = dequantize_q8_0(words.y, scales, c + 1u);
            m[2] = dequantize_q8_0(words.z, scales, c + 2u);
            m[3] = dequantize_q8_0(words.w, scales, c + 3u);
        }
        default: {
            m[0] = bitcast<vec4<f32>>(words);
        }
    }
    return m;
}

// Vec4 c of row `row` alone (the GPU family's unit; the CPU kernels walk
// whole loads with decode_chunk).
fn k_vec4(row: u32, c: u32) -> vec4<f32> {
    var scales = 0u;
    if (KV_DTYPE == KV_Q8_0) { scales = k_scale_word(row, c); }
    let first = c - c % chunk_vec4s();
    return decode_chunk(k_cache[load_index(row, c)], row, first, scales)[c % chunk_vec4s()];
}

fn v_vec4(row: u32, c: u32) -> vec4<f32> {
    var scales = 0u;
    if (KV_DTYPE == KV_Q8_0) { scales = v_scale_word(row, c); }
    let first = c - c % chunk_vec4s();
    return decode_chunk(v_cache[load_index(row, c)], row, first, scales)[c % chunk_vec4s()];
}

// The words one row takes in the caches.
fn row_words() -> u32 {
    let d4 = HEAD_DIM / 4u;
    switch KV_DTYPE {
        case KV_F16: { return 2u * d4; }
        case KV_Q8_0: { return d4 + scale_words(); }
        default: { return 4u * d4; }
    }
}

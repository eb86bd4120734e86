// Shared by matmul_quant.wgsl and embedding.wgsl (appended to each, which
// declare LOW_BITS and HIGH_BITS): the packed layout of model/quant_pack.rs.

// Which low word of a block holds nibble word w: each nibble word is one
// with LOW_BITS 4; with LOW_BITS 2 a low word holds two.
fn low_word_of(w: u32) -> u32 {
    return w * LOW_BITS / 4u;
}

// Nibble word w (codes of weights 4w..4w+3 in the low nibbles of bytes
// 0..3, of 16+4w..16+4w+3 in the high ones) from its low word: with
// LOW_BITS 2, an even w's 2-bit codes are bits 0-1 and 4-5 of each byte,
// an odd w's bits 2-3 and 6-7.
fn nibble_word(low: u32, w: u32) -> u32 {
    if (LOW_BITS == 2u) {
        return (low >> (2u * (w & 1u))) & 0x33333333u;
    }
    return low;
}

// Nibble word w of a block with its high bits joined: (codes of weights
// 4w..4w+3, codes of 16+4w..16+4w+3), byte i of each holding one code.
// quant_pack.rs lays the high bits out so that one shift of the whole word
// puts all four in place. (Only 4-bit low words have high bits.)
fn code_words(q: u32, high: vec2<u32>, w: u32) -> vec2<u32> {
    let nibbles = 0x0F0F0F0Fu;
    let lo = q & nibbles;
    let hi = (q >> 4u) & nibbles;
    switch HIGH_BITS {
        case 1u: {
            let bit4 = 0x10101010u;
            return vec2<u32>(lo | ((high.x >> w) & bit4), hi | ((high.x << (4u - w)) & bit4));
        }
        case 2u: {
            let bits45 = 0x30303030u;
            let h = select(high.x, high.y, w >= 2u) << (4u * (w & 1u));
            return vec2<u32>(lo | (h & bits45), hi | ((h >> 2u) & bits45));
        }
        default: { return vec2<u32>(lo, hi); }
    }
}

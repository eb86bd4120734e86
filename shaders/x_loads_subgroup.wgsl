// ---- activations through the subgroup (appended to both matmul shaders) ----
//
// shaders/x_loads.wgsl's functions for adapters whose subgroups have 8
// or more lanes. Every invocation of a CPU tile reads the same
// activations, and llvmpipe (Mesa 25.0) turns a storage load whose
// address is not a constant into a loop over the vector's lanes, a
// bounds-checked scalar load each, even where every lane's address is
// the same: so the eight vec4 loads of a block were most of a prefill
// tile's time. Here lane l of a subgroup loads vec4 l % 8 of the block,
// once, and each vec4 reaches the other lanes by a shuffle (on llvmpipe
// an element extract): one load instead of eight. The tiles never leave
// lanes idle (they clamp rows and tokens at the edges instead of
// returning), so lanes 0..7 of every subgroup hold the block.

var<private> x_lane: u32;

// Called once at the top of each CPU entry point, in uniform control flow.
fn init_x_lane() {
    x_lane = subgroupExclusiveAdd(1u) % 8u;
}

// Column t: this lane's vec4 of token t's block.
struct XBlock4 {
    held: mat4x4<f32>,
}

struct XBlock1 {
    held: vec4<f32>,
}

fn x_block4(tokens: vec4<u32>, b: u32) -> XBlock4 {
    let at = tokens + vec4<u32>(b * 8u + x_lane);
    return XBlock4(mat4x4<f32>(x[at.x], x[at.y], x[at.z], x[at.w]));
}

fn x_block4_at(block: XBlock4, i: u32) -> mat4x4<f32> {
    return mat4x4<f32>(
        subgroupShuffle(block.held[0], i),
        subgroupShuffle(block.held[1], i),
        subgroupShuffle(block.held[2], i),
        subgroupShuffle(block.held[3], i),
    );
}

fn x_block1(token: u32, b: u32) -> XBlock1 {
    return XBlock1(x[token + b * 8u + x_lane]);
}

fn x_block1_at(block: XBlock1, i: u32) -> vec4<f32> {
    return subgroupShuffle(block.held, i);
}

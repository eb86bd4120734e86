// ---- activations, one 32-wide block at a time (appended to both matmul shaders) ----
//
// The CPU kernels read x a block (eight vec4s of a token's row) at a
// time through these; shaders/x_loads_subgroup.wgsl has the same
// functions for adapters with subgroups of 8 or more lanes, where a
// subgroup loads each block once and passes its vec4s around. Here each
// vec4 is an ordinary load.

// Where the block's vec4s start in x, for four tokens (a tile) or one.
struct XBlock4 {
    at: vec4<u32>,
}

struct XBlock1 {
    at: u32,
}

// Called once at the top of each CPU entry point (nothing to do here).
fn init_x_lane() {}

// Block b (vec4s 8b..8b+7) of the rows of x that start at `tokens` (in vec4s).
fn x_block4(tokens: vec4<u32>, b: u32) -> XBlock4 {
    return XBlock4(tokens + vec4<u32>(b * 8u));
}

// Vec4 i of the block: column t holds token t's.
fn x_block4_at(block: XBlock4, i: u32) -> mat4x4<f32> {
    let at = block.at + vec4<u32>(i);
    return mat4x4<f32>(x[at.x], x[at.y], x[at.z], x[at.w]);
}

fn x_block1(token: u32, b: u32) -> XBlock1 {
    return XBlock1(token + b * 8u);
}

fn x_block1_at(block: XBlock1, i: u32) -> vec4<f32> {
    return x[block.at + i];
}

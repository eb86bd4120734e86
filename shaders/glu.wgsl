// Gated linear unit: out[t, i] = act(gate[t, i]) * up[t, i], where the fused
// gate/up projection wrote [gate | up] per token.
// ACTIVATION: 0 SiLU, 1 GELU (tanh form); see `gate_activation`
// (activation.wgsl, appended).

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override INTERMEDIATE: u32;   // a multiple of 4
override ACTIVATION: u32 = 0u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> gate_up: array<vec4<f32>>;   // [M, 2 INTERMEDIATE] f32
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>; // [M, INTERMEDIATE] f32

@compute @workgroup_size(64)
fn glu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = INTERMEDIATE / 4u;
    let i = gid.x;
    let t = gid.y;
    if (i >= n4 || t >= step.num_tokens) { return; }
    let g = gate_up[t * 2u * n4 + i];
    let u = gate_up[t * 2u * n4 + n4 + i];
    out[t * n4 + i] = gate_activation(g, ACTIVATION) * u;
}

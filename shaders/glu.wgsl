// Gated linear unit: out[t, i] = act(gate[t, i]) * up[t, i], where the fused
// gate/up projection wrote [gate | up] per token.
// ACTIVATION 0: SiLU, x / (1 + exp(-x)) (SwiGLU: Llama).
// ACTIVATION 1: GELU, tanh form, as PyTorch's gelu(approximate="tanh"):
//   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (GeGLU: Gemma).
//   The tanh argument is clamped to [-10, 10]: tanh of large values may be
//   computed as a ratio of exponentials that overflows to inf/inf = NaN on
//   some drivers, and f32 tanh(+-10) is already +-1 exactly (1 - tanh(10)
//   is 4e-9, under half an ulp of 1), so the clamp changes no result. It
//   also catches x^3 overflowing to inf for |x| > 7e12.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override INTERMEDIATE: u32;   // a multiple of 4
override ACTIVATION: u32 = 0u;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> gate_up: array<vec4<f32>>;   // [M, 2 INTERMEDIATE] f32
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>; // [M, INTERMEDIATE] f32

fn act(x: vec4<f32>) -> vec4<f32> {
    if (ACTIVATION == 1u) {
        let inner = clamp(SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x)), vec4<f32>(-10.0), vec4<f32>(10.0));
        return 0.5 * x * (1.0 + tanh(inner));
    }
    return x / (1.0 + exp(-x));
}

@compute @workgroup_size(64)
fn glu(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = INTERMEDIATE / 4u;
    let i = gid.x;
    let t = gid.y;
    if (i >= n4 || t >= step.num_tokens) { return; }
    let g = gate_up[t * 2u * n4 + i];
    let u = gate_up[t * 2u * n4 + n4 + i];
    out[t * n4 + i] = act(g) * u;
}

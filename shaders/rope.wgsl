// Rotary position embedding, in place on the Q and K heads of the fused QKV
// activations. cos/sin come from a table computed on the CPU at load, so the
// angles match the reference to the last bit whatever the driver's cos().
// Pairs: GGUF Llama weights rotate adjacent elements (2i, 2i+1); Hugging Face
// weights rotate halves (i, i + D/2) (NEOX).

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override HEAD_DIM: u32;
override N_Q_HEADS: u32;
override N_KV_HEADS: u32;
override NEOX: bool = false;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>;      // [M, (N_Q_HEADS + 2 N_KV_HEADS) HEAD_DIM] f32
@group(0) @binding(2) var<storage, read> positions: array<u32>;      // [M]
@group(0) @binding(3) var<storage, read> rope_table: array<vec2<f32>>; // [max_pos, HEAD_DIM/2] (cos, sin)

@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = HEAD_DIM / 2u;
    let pair = gid.x % half;
    let head = gid.x / half;   // Q heads, then K heads
    let t = gid.y;
    if (head >= N_Q_HEADS + N_KV_HEADS || t >= step.num_tokens) { return; }
    let row = (N_Q_HEADS + 2u * N_KV_HEADS) * HEAD_DIM;
    let base = t * row + head * HEAD_DIM;
    var a = base + 2u * pair;
    var b = a + 1u;
    if (NEOX) {
        a = base + pair;
        b = a + half;
    }
    let max_pos = arrayLength(&rope_table) / half;
    let cs = rope_table[min(positions[t], max_pos - 1u) * half + pair];
    let xa = qkv[a];
    let xb = qkv[b];
    qkv[a] = xa * cs.x - xb * cs.y;
    qkv[b] = xb * cs.x + xa * cs.y;
}

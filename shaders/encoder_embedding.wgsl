// BERT's input embeddings: out[t] = word[token_ids[t]] + position[positions[t]]
// + token_type[token_type_ids[t]], f32 tables. (LayerNorm follows as its
// own kernel.) One invocation per (token, 4 columns).

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override H: u32;            // hidden size, a multiple of 4
override VOCAB: u32;        // rows of the word table
override MAX_POSITIONS: u32; // rows of the position table
override TYPE_VOCAB: u32;   // rows of the token type table

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> token_ids: array<u32>;          // [M]
@group(0) @binding(2) var<storage, read> positions: array<u32>;          // [M] position within its sequence
@group(0) @binding(3) var<storage, read> token_type_ids: array<u32>;     // [M]
@group(0) @binding(4) var<storage, read> word: array<vec4<f32>>;         // [VOCAB, H] f32
@group(0) @binding(5) var<storage, read> position: array<vec4<f32>>;     // [MAX_POSITIONS, H] f32
@group(0) @binding(6) var<storage, read> token_type: array<vec4<f32>>;   // [TYPE_VOCAB, H] f32
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;    // [M, H] f32

@compute @workgroup_size(64)
fn encoder_embedding(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = H / 4u;
    let c = gid.x;
    let t = gid.y;
    if (c >= n4 || t >= step.num_tokens) { return; }
    // Indices were checked on the CPU; clamping keeps a bad one inside its table.
    let w = min(token_ids[t], VOCAB - 1u);
    let p = min(positions[t], MAX_POSITIONS - 1u);
    let k = min(token_type_ids[t], TYPE_VOCAB - 1u);
    out[t * n4 + c] = word[w * n4 + c] + position[p * n4 + c] + token_type[k * n4 + c];
}

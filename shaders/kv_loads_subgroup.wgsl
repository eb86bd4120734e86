// ---- cache rows through the subgroup (appended to attention.wgsl) ----
//
// shaders/kv_loads.wgsl's functions for adapters whose subgroups have 8
// or more lanes. llvmpipe (Mesa 25.0) turns a storage load whose address
// is not a constant into a bounds-checked scalar load per lane, even where
// every lane's address is the same, as in attention_queries8 (a row per
// key for all eight queries). A shared row is loaded once instead: lane
// l holds its loads l % 8 and 8 + l % 8, and each load reaches the other
// lanes by a shuffle (on llvmpipe an element extract). Rows of up to 16
// loads (head size 64 in f32, 128 in f16, 256 in q8_0) are shared; longer
// ones are read load by load.

var<private> kv_lane: u32;

struct CacheRow {
    row: u32,
    is_shared: bool,
    held: vec4<u32>,
    held_next: vec4<u32>,
}

fn init_kv_lane() {
    kv_lane = subgroupExclusiveAdd(1u) % 8u;
}

// The most loads a row touches (an f16 row of an odd number of vec4s may
// start mid-load and touch one more).
fn row_loads() -> u32 {
    var loads = load_index(0u, HEAD_DIM / 4u - 1u) + 1u;
    if (KV_DTYPE == KV_F16 && chunk_vec4s() == 1u) {
        loads += 1u;
    }
    return loads;
}

// Whether a row's loads fit the two a lane holds.
fn row_fits_lanes() -> bool {
    return row_loads() <= 16u;
}

fn own_row(row: u32) -> CacheRow {
    return CacheRow(row, false, vec4<u32>(), vec4<u32>());
}

// Where this lane's two loads of row `row` are (clamped to the row).
fn lane_loads(row: u32) -> vec2<u32> {
    let first = load_index(row, 0u);
    let last = load_index(row, HEAD_DIM / 4u - 1u);
    return min(vec2<u32>(first + kv_lane, first + 8u + kv_lane), vec2<u32>(last));
}

fn shared_k_row(row: u32) -> CacheRow {
    if (!row_fits_lanes()) {
        return own_row(row);
    }
    let at = lane_loads(row);
    // A second load only where a row has one (f16 measured 0.7x with it;
    // written as a return: a conditional assignment here, 0.78x).
    let held = k_cache[at.x];
    if (row_loads() <= 8u) {
        return CacheRow(row, true, held, held);
    }
    return CacheRow(row, true, held, k_cache[at.y]);
}

fn shared_v_row(row: u32) -> CacheRow {
    if (!row_fits_lanes()) {
        return own_row(row);
    }
    let at = lane_loads(row);
    let held = v_cache[at.x];
    if (row_loads() <= 8u) {
        return CacheRow(row, true, held, held);
    }
    return CacheRow(row, true, held, v_cache[at.y]);
}

// Load i of a shared row, from the lane that holds it.
fn shared_load(r: CacheRow, c: u32) -> vec4<u32> {
    let i = load_index(r.row, c) - load_index(r.row, 0u);
    return subgroupShuffle(select(r.held_next, r.held, i < 8u), i % 8u);
}

fn k_load(r: CacheRow, c: u32) -> vec4<u32> {
    if (r.is_shared) {
        return shared_load(r, c);
    }
    return k_cache[load_index(r.row, c)];
}

fn v_load(r: CacheRow, c: u32) -> vec4<u32> {
    if (r.is_shared) {
        return shared_load(r, c);
    }
    return v_cache[load_index(r.row, c)];
}

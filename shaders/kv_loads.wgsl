// ---- cache rows as the CPU attention kernels load them (appended to attention.wgsl) ----
//
// A key's or value's row is read a 16-byte load at a time through
// k_load / v_load. shaders/kv_loads_subgroup.wgsl has the same functions
// for adapters with subgroups of 8 or more lanes, where a row that every
// lane reads (the eight queries of attention_queries8) is loaded once per
// subgroup; here each load is an ordinary one.

struct CacheRow {
    row: u32,
}

// Called once at the top of the kernels that read shared rows.
fn init_kv_lane() {}

// Cache row `row`, read by this invocation alone.
fn own_row(row: u32) -> CacheRow {
    return CacheRow(row);
}

// Cache row `row` of the keys, the same for every invocation of the subgroup.
fn shared_k_row(row: u32) -> CacheRow {
    return CacheRow(row);
}

fn shared_v_row(row: u32) -> CacheRow {
    return CacheRow(row);
}

// The load of the row that holds its vec4 c.
fn k_load(r: CacheRow, c: u32) -> vec4<u32> {
    return k_cache[load_index(r.row, c)];
}

fn v_load(r: CacheRow, c: u32) -> vec4<u32> {
    return v_cache[load_index(r.row, c)];
}

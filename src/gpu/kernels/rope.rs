//! The RoPE table: (cos, sin) per position and rotation pair, computed on
//! the CPU at load. `shaders/kv_write.wgsl` rotates Q and K with it.

/// The (cos, sin) table the kernel reads: `[max_positions, head_dim / 2]`,
/// computed in f32 the way Hugging Face does (inverse frequencies in f32,
/// angle = f32(position) * inv_freq), with cos/sin taken in f64.
pub fn rope_table(head_dim: u32, theta: f32, max_positions: u32) -> Vec<[f32; 2]> {
    rope_table_scaled(head_dim, theta, max_positions, &[], 1.0)
}

/// `rope_table` with frequency i divided by `factors[i]` (RoPE scaling; an
/// empty slice divides by nothing) and cos and sin multiplied by
/// `attention_factor`, as transformers folds longrope's scale into them.
pub fn rope_table_scaled(
    head_dim: u32,
    theta: f32,
    max_positions: u32,
    factors: &[f32],
    attention_factor: f32,
) -> Vec<[f32; 2]> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let freq = 1.0f32 / theta.powf((2 * i) as f32 / head_dim as f32);
            factors.get(i as usize).map_or(freq, |factor| freq / factor)
        })
        .collect();
    let mut table = Vec::with_capacity((max_positions * half) as usize);
    for pos in 0..max_positions {
        for &freq in &inv_freq {
            let angle = (pos as f32 * freq) as f64;
            table.push([(angle.cos() as f32) * attention_factor, (angle.sin() as f32) * attention_factor]);
        }
    }
    table
}

//! RoPE variants: a table of (cos, sin) per position and frequency, built
//! once per base, and how the rotation pairs a head's elements.

use crate::gpu::GpuBuffer;
use crate::gpu::kernels::rope::rope_table_scaled;
use crate::model::ModelError;
use crate::model::builder::ModelBuilder;
use crate::model::config::{RopeScaling, RopeStyle};

pub struct RopeTable {
    /// [max_positions, head_dim / 2] (cos, sin) f32 pairs.
    pub table: GpuBuffer,
    pub style: RopeStyle,
}

impl RopeTable {
    pub fn new(
        builder: &ModelBuilder,
        head_dim: usize,
        base: f32,
        max_positions: usize,
        style: RopeStyle,
        scaling: Option<&RopeScaling>,
    ) -> Result<Self, ModelError> {
        let (factors, attention_factor) = match scaling {
            Some(scaling) => (scaling.factors.as_slice(), scaling.attention_factor),
            None => (&[][..], 1.0),
        };
        let pairs = rope_table_scaled(head_dim as u32, base, max_positions as u32, factors, attention_factor);
        let table = builder.table("rope_table", bytemuck::cast_slice(&pairs))?;
        Ok(Self { table, style })
    }
}

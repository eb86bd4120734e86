//! GPU buffers: storage buffers checked against the binding limit, uniform
//! buffers, and a reusable staging buffer for readbacks.

use super::context::{GpuContext, GpuError};

/// A storage or uniform buffer with its size in bytes.
#[derive(Clone)]
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    pub size: u64,
}

const STORAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST).union(wgpu::BufferUsages::COPY_SRC);

/// wgpu wants sizes in multiples of 4 bytes; an empty binding is invalid.
fn padded(size: u64) -> u64 {
    size.max(4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
}

impl GpuBuffer {
    /// A storage buffer holding `bytes`.
    pub fn storage_init(ctx: &GpuContext, label: &str, bytes: &[u8]) -> Result<Self, GpuError> {
        let size = padded(bytes.len() as u64);
        check_binding(ctx, label, size)?;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: STORAGE,
            mapped_at_creation: true,
        });
        {
            let mut view =
                buffer.slice(..).get_mapped_range_mut().map_err(|e| GpuError::Map(e.to_string()))?;
            view.slice(..bytes.len()).copy_from_slice(bytes);
        }
        buffer.unmap();
        Ok(Self { buffer, size })
    }

    /// A zero-filled storage buffer of `size` bytes.
    pub fn storage_zeroed(ctx: &GpuContext, label: &str, size: u64) -> Result<Self, GpuError> {
        let size = padded(size);
        check_binding(ctx, label, size)?;
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: STORAGE,
            mapped_at_creation: false,
        });
        Ok(Self { buffer, size })
    }

    /// A uniform buffer of `size` bytes, written with `write`.
    pub fn uniform(ctx: &GpuContext, label: &str, size: u64) -> Self {
        let size = padded(size).next_multiple_of(16);
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { buffer, size }
    }

    /// Queues a write of `bytes` at offset 0 (lands before the next submit).
    pub fn write(&self, ctx: &GpuContext, bytes: &[u8]) {
        debug_assert!(bytes.len() as u64 <= self.size);
        if !bytes.is_empty() {
            ctx.queue.write_buffer(&self.buffer, 0, bytes);
        }
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        self.buffer.as_entire_binding()
    }
}

fn check_binding(ctx: &GpuContext, label: &str, size: u64) -> Result<(), GpuError> {
    let limit = ctx.max_storage_binding();
    if size > limit {
        return Err(GpuError::BindingTooLarge { what: label.to_string(), needed: size, limit });
    }
    Ok(())
}

/// A mappable staging buffer reused across readbacks.
pub struct ReadbackBuffer {
    buffer: wgpu::Buffer,
    size: u64,
}

impl ReadbackBuffer {
    pub fn new(ctx: &GpuContext, label: &str, size: u64) -> Self {
        let size = padded(size);
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { buffer, size }
    }

    /// Records a copy of the first `len` bytes of `source` into this buffer.
    pub fn record_copy(&self, encoder: &mut wgpu::CommandEncoder, source: &GpuBuffer, len: u64) {
        let len = padded(len).min(self.size).min(source.size);
        encoder.copy_buffer_to_buffer(&source.buffer, 0, &self.buffer, 0, len);
    }

    /// Waits for the GPU and reads `len` bytes copied by `record_copy`.
    pub fn read(&self, ctx: &GpuContext, len: usize) -> Result<Vec<u8>, GpuError> {
        let map_len = padded(len as u64).min(self.size);
        let slice = self.buffer.slice(..map_len);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        ctx.wait()?;
        receiver
            .recv()
            .map_err(|_| GpuError::Map("map callback dropped".into()))?
            .map_err(|e| GpuError::Map(e.to_string()))?;
        let bytes = {
            let view = slice.get_mapped_range().map_err(|e| GpuError::Map(e.to_string()))?;
            view[..len].to_vec()
        };
        self.buffer.unmap();
        Ok(bytes)
    }
}

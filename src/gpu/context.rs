//! The wgpu device: picks the best adapter (a real GPU before a software one),
//! requests the adapter's own limits and the features our kernels can use,
//! picks the kernel family for its device type, and waits on submissions.

use std::fmt;

use super::kernels::KernelFamily;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found (on a machine without a GPU, run scripts/setup.sh to install software Vulkan)"
    )]
    NoAdapter,
    #[error("cannot open the GPU device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    #[error("GPU wait failed: {0}")]
    Poll(#[from] wgpu::PollError),
    #[error("GPU buffer mapping failed: {0}")]
    Map(String),
    #[error("{what} needs {needed} bytes in one storage binding, above the adapter's limit of {limit}")]
    BindingTooLarge { what: String, needed: u64, limit: u64 },
    #[error("GPU validation error: {0}")]
    Validation(String),
    #[error("{0}")]
    Unsupported(String),
}

/// Device, queue and what the adapter is.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The storage binding size the model code plans with: the adapter's,
    /// or less when lowered by `with_max_storage_binding` (tests).
    max_storage_binding: u64,
    /// The matmul and attention kernels models build: by device type, or
    /// as overridden by `with_kernels` (`--kernels`).
    kernels: KernelFamily,
    /// Whether kernels use subgroups where the device has them (cleared
    /// by `without_subgroups`, `--no-subgroups`).
    subgroups_allowed: bool,
    /// The GPU family's prompt tiles sum in f16 (`with_f16_arithmetic`,
    /// `--f16-arithmetic`).
    f16_arithmetic: bool,
}

/// Lower is preferred: a discrete GPU first, software last.
fn device_type_rank(device_type: wgpu::DeviceType) -> u8 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Among equal device types, prefer the native compute APIs over GL.
fn backend_rank(backend: wgpu::Backend) -> u8 {
    match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

impl GpuContext {
    pub fn new() -> Result<Self, GpuError> {
        pollster::block_on(Self::new_async())
    }

    async fn new_async() -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let mut adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
        adapters.sort_by_key(|adapter| {
            let info = adapter.get_info();
            (device_type_rank(info.device_type), backend_rank(info.backend))
        });
        let adapter = adapters.into_iter().next().ok_or(GpuError::NoAdapter)?;
        let adapter_info = adapter.get_info();
        let limits = adapter.limits();
        // Features our kernels may use when present, and timestamps for
        // `bench --profile`; none is required.
        let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgserve"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await?;
        tracing::info!(
            adapter = %adapter_info.name,
            backend = ?adapter_info.backend,
            driver = %adapter_info.driver_info,
            max_storage_binding = limits.max_storage_buffer_binding_size,
            "GPU ready"
        );
        let max_storage_binding = limits.max_storage_buffer_binding_size;
        let kernels = KernelFamily::for_device_type(adapter_info.device_type);
        Ok(Self {
            device,
            queue,
            adapter_info,
            limits,
            features,
            max_storage_binding,
            kernels,
            subgroups_allowed: true,
            f16_arithmetic: false,
        })
    }

    /// Largest size of one storage binding that buffers and weight chunks
    /// are sized for, in bytes.
    pub fn max_storage_binding(&self) -> u64 {
        self.max_storage_binding
    }

    /// Plans with a storage binding limit of at most `bytes` (wgpu keeps
    /// the adapter's): tests split small tensors as a real limit splits
    /// big ones.
    pub fn with_max_storage_binding(mut self, bytes: u64) -> Self {
        self.max_storage_binding = bytes.min(self.limits.max_storage_buffer_binding_size);
        self
    }

    /// Builds `family`'s kernels instead of the device type's choice
    /// (`None` keeps that choice).
    pub fn with_kernels(mut self, family: Option<KernelFamily>) -> Self {
        if let Some(family) = family {
            self.kernels = family;
        }
        self
    }

    /// Builds kernels without subgroup operations even where the device
    /// has them: for a driver whose subgroups misbehave, and to measure
    /// what they bring.
    pub fn without_subgroups(mut self) -> Self {
        self.subgroups_allowed = false;
        self
    }

    /// Has the GPU family's prompt tiles stage their operands and sum
    /// each block of 32 products in f16 (`MatmulKey::f16_arithmetic`):
    /// faster where halves run at twice the rate of floats, and not
    /// exact, so off unless asked for. Refused where the device has no
    /// `SHADER_F16` or the CPU family runs (call after `with_kernels`).
    pub fn with_f16_arithmetic(mut self) -> Result<Self, GpuError> {
        if self.kernels != KernelFamily::Gpu {
            return Err(GpuError::Unsupported(format!(
                "f16 arithmetic is in the gpu kernel family's tiles, and {} runs the {} family: \
                 add --kernel-family gpu",
                self.adapter_info.name,
                self.kernels.name()
            )));
        }
        if !self.features.contains(wgpu::Features::SHADER_F16) {
            return Err(GpuError::Unsupported(format!(
                "f16 arithmetic needs shader-f16, which {} does not have",
                self.adapter_info.name
            )));
        }
        self.f16_arithmetic = true;
        Ok(self)
    }

    /// Whether the GPU family's prompt tiles run in f16
    /// (`MatmulKey::f16_arithmetic`).
    pub fn kernel_f16_arithmetic(&self) -> bool {
        self.f16_arithmetic && self.kernels == KernelFamily::Gpu
    }

    /// The matmul and attention kernel family models build on this device.
    pub fn kernels(&self) -> KernelFamily {
        self.kernels
    }

    /// Blocks until all submitted work is done.
    pub fn wait(&self) -> Result<(), GpuError> {
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        Ok(())
    }

    /// Whether kernels may use subgroups (`MatmulKey::subgroups`,
    /// `AttentionKey::subgroups`): the device has them, of at least 8
    /// lanes (llvmpipe: 8, or 16 with 512-bit vectors; GPUs 8-64).
    pub fn kernel_subgroups(&self) -> bool {
        self.subgroups_allowed
            && self.features.contains(wgpu::Features::SUBGROUP)
            && self.adapter_info.subgroup_min_size >= 8
    }

    /// True on a CPU-emulated adapter (lavapipe, WARP, SwiftShader).
    pub fn is_software(&self) -> bool {
        self.adapter_info.device_type == wgpu::DeviceType::Cpu
    }

    /// Mesa major version when the driver is Mesa ("Mesa 25.0.7" in driver_info).
    pub fn mesa_major_version(&self) -> Option<u32> {
        let info = &self.adapter_info.driver_info;
        let rest = &info[info.find("Mesa ")? + 5..];
        rest.split('.').next()?.trim().parse().ok()
    }
}

impl fmt::Display for GpuContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.adapter_info;
        writeln!(f, "adapter: {} ({:?}, {:?})", info.name, info.device_type, info.backend)?;
        writeln!(f, "driver: {} {}", info.driver, info.driver_info)?;
        writeln!(
            f,
            "limits: storage binding {} MiB, buffer {} MiB, workgroup memory {} KiB, {} invocations per workgroup",
            self.max_storage_binding / (1 << 20),
            self.limits.max_buffer_size / (1 << 20),
            self.limits.max_compute_workgroup_storage_size / 1024,
            self.limits.max_compute_invocations_per_workgroup
        )?;
        writeln!(
            f,
            "features: shader-f16 {} (f16 arithmetic {}), subgroups {} ({}-{} lanes, {} by the kernels)",
            self.features.contains(wgpu::Features::SHADER_F16),
            if self.kernel_f16_arithmetic() { "on" } else { "off" },
            self.features.contains(wgpu::Features::SUBGROUP),
            info.subgroup_min_size,
            info.subgroup_max_size,
            if self.kernel_subgroups() { "used" } else { "not used" }
        )?;
        write!(f, "kernels: {}", self.kernels.name())
    }
}

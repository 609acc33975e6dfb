//! Which burn backend and device a model runs on.
//!
//! CPU ([`Flex`](burn::backend::Flex)) always works and is the default. With the `cuda` feature a GPU is
//! used when one is really there; burn 0.21's CUDA backend panics at run time when `libcuda.so` is missing
//! (a machine without an NVIDIA driver), so the choice is made here, once, before any model touches the
//! device: look for the driver library, then try one tiny operation on the GPU with the panic contained,
//! and fall back to CPU with a log line saying why.

use std::fmt;

/// The CPU backend: burn's portable SIMD backend with rayon for the big matrix products.
pub type CpuBackend = burn::backend::Flex;
/// The CPU device (there is one).
pub type CpuDevice = burn::backend::flex::FlexDevice;

/// The CUDA backend (only with the `cuda` feature).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;
/// A CUDA device, by ordinal.
#[cfg(feature = "cuda")]
pub type CudaDevice = burn::backend::cuda::CudaDevice;

/// What the caller asks for. `AGORA_DEVICE=cpu|cuda|auto` sets it from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePreference {
    /// A GPU if this build has CUDA and the machine a usable GPU, else CPU.
    #[default]
    Auto,
    /// CPU, even when a GPU is present.
    Cpu,
    /// A GPU; still falls back to CPU (with a warning) when none is usable, so a node keeps serving.
    Cuda,
}

impl DevicePreference {
    /// Reads `AGORA_DEVICE`; unset, empty or unknown values mean [`DevicePreference::Auto`].
    pub fn from_env() -> Self {
        match std::env::var("AGORA_DEVICE") {
            Ok(v) => v.parse().unwrap_or_else(|_| {
                tracing::warn!(value = %v, "AGORA_DEVICE is not one of cpu, cuda, auto; using auto");
                Self::Auto
            }),
            Err(_) => Self::Auto,
        }
    }
}

impl std::str::FromStr for DevicePreference {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            other => Err(format!(
                "unknown device {other:?} (expected cpu, cuda or auto)"
            )),
        }
    }
}

/// The device a model ended up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// CPU ([`CpuBackend`]).
    Cpu,
    /// CUDA device with this ordinal ([`CudaBackend`]).
    #[cfg(feature = "cuda")]
    Cuda(usize),
}

impl Device {
    /// Short name for logs and capability adverts: `cpu` or `cuda:N`.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "cpu".to_owned(),
            #[cfg(feature = "cuda")]
            Device::Cuda(i) => format!("cuda:{i}"),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Picks the device for `preference`, never panicking: CUDA only when this build has it and a probe on
/// the GPU succeeded; otherwise CPU, with an `info` (auto) or `warn` (cuda asked for) log line saying why.
pub fn select(preference: DevicePreference) -> Device {
    if preference == DevicePreference::Cpu {
        return Device::Cpu;
    }
    match cuda_probe() {
        Ok(device) => {
            tracing::info!(device = %device, "using the GPU");
            device
        }
        Err(reason) => {
            if preference == DevicePreference::Cuda {
                tracing::warn!(%reason, "CUDA was asked for but is not usable; falling back to CPU");
            } else {
                tracing::info!(%reason, "no usable GPU; running on CPU");
            }
            Device::Cpu
        }
    }
}

/// Why CUDA cannot be used, or the device it can.
#[cfg(not(feature = "cuda"))]
fn cuda_probe() -> Result<Device, String> {
    Err("this build has no CUDA support (build with `--features cuda`)".to_owned())
}

#[cfg(feature = "cuda")]
fn cuda_probe() -> Result<Device, String> {
    use burn::tensor::Tensor;

    if !libcuda_present() {
        return Err("libcuda.so (the NVIDIA driver library) was not found".to_owned());
    }
    // The driver library exists; the GPU may still be unusable (no device, driver/runtime mismatch).
    // burn reports those by panicking, so the first real operation runs inside catch_unwind.
    let outcome = std::panic::catch_unwind(|| {
        let device = CudaDevice::default();
        let t = Tensor::<CudaBackend, 1>::from_floats([1.0f32, 2.0], &device);
        (t * 2.0).sum().try_into_data()
    });
    match outcome {
        Ok(Ok(data)) => match data.to_vec::<f32>() {
            Ok(v) if v.first().copied() == Some(6.0) => Ok(Device::Cuda(0)),
            Ok(v) => Err(format!(
                "the GPU returned a wrong result in its self-test: {v:?}"
            )),
            Err(e) => Err(format!("the GPU self-test result was unreadable: {e:?}")),
        },
        Ok(Err(e)) => Err(format!("the GPU self-test failed: {e:?}")),
        Err(panic) => Err(format!(
            "initialising CUDA failed: {}",
            panic_message(&panic)
        )),
    }
}

#[cfg(feature = "cuda")]
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Looks for the NVIDIA driver library the way the dynamic loader would find it: `LD_LIBRARY_PATH`, the
/// usual driver folders, and the loader cache. No `dlopen` (this workspace forbids `unsafe`).
#[cfg(feature = "cuda")]
fn libcuda_present() -> bool {
    const NAMES: [&str; 2] = ["libcuda.so.1", "libcuda.so"];
    const DIRS: [&str; 8] = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/compat",
        "/usr/local/nvidia/lib64",
        "/usr/lib/wsl/lib",
    ];
    let from_env = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let dirs = from_env
        .into_iter()
        .chain(DIRS.iter().map(std::path::PathBuf::from));
    for dir in dirs {
        if NAMES.iter().any(|n| dir.join(n).exists()) {
            return true;
        }
    }
    std::fs::read("/etc/ld.so.cache")
        .map(|cache| {
            cache
                .windows(b"libcuda.so".len())
                .any(|w| w == b"libcuda.so")
        })
        .unwrap_or(false)
}

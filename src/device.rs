//! Choosing the compute device (CPU, CUDA, Metal) and describing it.
use crate::{Error, Result};
use candle_core::Device;
use std::str::FromStr;

/// What the user asked for with `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The best available: CUDA, then Metal, then CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N.
    Cuda(usize),
    /// The Metal device N.
    Metal(usize),
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let ordinal = |rest: &str| -> Result<usize> {
            if rest.is_empty() {
                return Ok(0);
            }
            rest.strip_prefix(':')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::invalid("device", format!("{s:?}: expected e.g. cuda:0")))
        };
        match s.as_str() {
            "auto" | "" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            _ if s.starts_with("cuda") => Ok(Self::Cuda(ordinal(&s[4..])?)),
            _ if s.starts_with("metal") => Ok(Self::Metal(ordinal(&s[5..])?)),
            _ => Err(Error::invalid(
                "device",
                format!("{s:?}: expected auto, cpu, cuda[:N] or metal[:N]"),
            )),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Opens the device; `Auto` falls back to the CPU when no accelerator is usable.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::Device(format!(
                        "cuda:{n} requested but this build has no CUDA support (rebuild with --features cuda)"
                    )));
                }
                Device::new_cuda(n).map_err(|e| Error::Device(format!("cuda:{n}: {e}")))
            }
            Self::Metal(n) => {
                if !candle_core::utils::metal_is_available() {
                    return Err(Error::Device(format!(
                        "metal:{n} requested but this build has no Metal support (rebuild with --features metal)"
                    )));
                }
                Device::new_metal(n).map_err(|e| Error::Device(format!("metal:{n}: {e}")))
            }
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if candle_core::utils::metal_is_available() {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// A human-readable description of a device, for the UI, `info` and reports.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => format!(
            "CPU ({} threads{})",
            candle_core::utils::get_num_threads(),
            cpu_features()
        ),
        Device::Cuda(_) => format!("CUDA {:?}", device.location()),
        Device::Metal(_) => format!("Metal {:?}", device.location()),
    }
}

fn cpu_features() -> String {
    let mut f = Vec::new();
    if candle_core::utils::with_avx() {
        f.push("avx");
    }
    if candle_core::utils::with_f16c() {
        f.push("f16c");
    }
    if candle_core::utils::with_neon() {
        f.push("neon");
    }
    if f.is_empty() {
        String::new()
    } else {
        format!(", {}", f.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "CUDA".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert_eq!(
            "metal".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Metal(0)
        );
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("tpu"), "{err}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cpu_opens() {
        assert!(DeviceChoice::Cpu.open().unwrap().is_cpu());
    }
}

//! Which kernel runs the bf16 products: the three there are, whether this CPU can run each,
//! and the one chosen for the process (`choose.rs` measures; without it, by the CPU's
//! features).
use std::sync::OnceLock;

/// The kernels that can run a bf16 product; which one runs is chosen by measuring them on
/// this CPU (`choose.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// AVX512_BF16's `vdpbf16ps` on packed pairs.
    Avx512,
    /// AMX tiles (`tdpbf16ps`), see `amx.rs` and `tiles.rs`.
    Amx,
    /// The float32 GEMM on bf16-rounded copies of the operands (any CPU).
    F32,
}

impl Kernel {
    /// Every kernel, in the order `info` lists them.
    pub const ALL: [Kernel; 3] = [Kernel::Amx, Kernel::Avx512, Kernel::F32];

    /// The name used in `COVID_RESNET_BF16`, files and benchmark lines.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Amx => "amx",
            Kernel::F32 => "f32",
        }
    }

    /// What it is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Kernel::Avx512 => "AVX-512 BF16 (vdpbf16ps)",
            Kernel::Amx => "AMX tiles (tdpbf16ps)",
            Kernel::F32 => "float32 products of bf16-rounded operands",
        }
    }

    /// Whether this CPU (and, for AMX, the operating system) can run it.
    pub fn available(self) -> bool {
        match self {
            Kernel::Avx512 => native(),
            Kernel::Amx => super::tiles::granted(),
            Kernel::F32 => true,
        }
    }

    /// The kernel `name` names.
    pub fn named(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }
}

static CURRENT: OnceLock<Kernel> = OnceLock::new();

/// Sets the kernel every bf16 product of this process runs, once (`ops::kernels` does, after
/// measuring); a second call changes nothing.
pub fn set_kernel(k: Kernel) {
    let _ = CURRENT.set(k);
}

/// The kernel bf16 products run: the one set, else AVX-512 where the CPU has it, else the
/// float32 GEMM.
pub fn kernel() -> Kernel {
    CURRENT.get().copied().unwrap_or(if native() {
        Kernel::Avx512
    } else {
        Kernel::F32
    })
}

/// Whether this CPU multiplies bf16 natively (AVX512_BF16, with AVX-512 F and BW).
pub fn native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

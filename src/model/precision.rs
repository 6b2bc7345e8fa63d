//! Numeric precision of the convolutions: float32 throughout, or bfloat16 mixed precision as
//! PyTorch's CPU autocast and fastai's `to_bf16` do it. In bf16 the weights, optimizer state,
//! loss, gradients, BatchNorm's arithmetic and every reduction stay float32; the
//! convolutions' matrix products take their operands rounded to bfloat16 (8 significant
//! bits) and accumulate in float32, and a CPU training forward stores the body's activations
//! between layers in bf16 (each BatchNorm's output and the copy of its input that its
//! backward reads: half the memory of float32, see `bn_op`).
//! Chosen per thread ([`with_precision`]), like `no_grad`: a convolution records the precision
//! of the thread that ran its forward, and its backward uses the same.
use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

/// The precision of the convolutions' products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 operands and accumulation.
    #[default]
    F32,
    /// bfloat16 operands, float32 accumulation (mixed precision).
    Bf16,
}

impl Precision {
    /// Both, in the order a picker lists them.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    /// The name used on the command line and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?} (expected f32 or bf16)")),
        }
    }
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Runs `f` with this thread's convolutions in precision `p`; ends with `f` even if it panics.
pub fn with_precision<R>(p: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(p)));
    f()
}

/// This thread's precision (float32 unless inside [`with_precision`]).
pub fn current() -> Precision {
    CURRENT.with(|c| c.get())
}

/// Which kernels run bf16 products on this CPU, for `info` and the benchmarks.
pub fn bf16_kernels() -> &'static str {
    if super::conv::bf16_native() {
        "AVX-512 BF16 (vdpbf16ps)"
    } else {
        "conversion: bf16-rounded operands through the float32 kernels (no AVX512_BF16 on this CPU)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_a_bad_one_is_named() {
        for p in Precision::ALL {
            assert_eq!(p.as_str().parse::<Precision>(), Ok(p));
        }
        assert_eq!("BF16".parse::<Precision>(), Ok(Precision::Bf16));
        let e = "f16".parse::<Precision>().unwrap_err();
        assert!(e.contains("\"f16\"") && e.contains("bf16"), "{e}");
    }

    #[test]
    fn the_precision_is_scoped_to_the_call_even_after_a_panic() {
        assert_eq!(current(), Precision::F32);
        assert_eq!(with_precision(Precision::Bf16, current), Precision::Bf16);
        let r = std::panic::catch_unwind(|| with_precision(Precision::Bf16, || panic!("inside")));
        assert!(r.is_err());
        assert_eq!(current(), Precision::F32);
    }
}

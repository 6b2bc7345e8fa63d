//! Numeric precision of the convolutions: float32 throughout, or bfloat16 mixed precision as
//! PyTorch's CPU autocast and fastai's `to_bf16` do it. In bf16 the weights, optimizer state,
//! loss, gradients, BatchNorm's arithmetic and every reduction stay float32; the
//! convolutions' matrix products take their operands rounded to bfloat16 (8 significant
//! bits) and accumulate in float32, and a CPU training forward stores the body's activations
//! between layers in bf16 (each BatchNorm's output and the copy of its input that its
//! backward reads: half the memory of float32, see `batch_norm`). BatchNorm's input gradient
//! is stored in bf16 too, being what the convolution below rounds it to
//! (`batch_norm::backward::GradOut`).
//! A model's precision is part of its `Compute` (see `pass`): a convolution records the
//! precision of the pass that ran its forward, and its backward uses the same.
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

/// Which kernel runs bf16 products on this CPU and why, for `info`, the benchmarks and the
/// Training tab: the measured choice if it was made (never measures: see
/// `conv::bf16_choice::ensure`), else the kernel by the CPU's features.
pub fn bf16_kernels() -> String {
    use crate::model::ops::conv::{bf16_choice, Bf16Kernel};
    match bf16_choice::made() {
        Some(c) => c.describe(),
        None => {
            let k = crate::model::ops::conv::bf16_kernel();
            let why = if k == Bf16Kernel::F32 {
                "no AVX512_BF16 on this CPU"
            } else {
                "by the CPU's features; measured when a bf16 model is set up"
            };
            format!("{} ({}; {why})", k.describe(), k.name())
        }
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
}

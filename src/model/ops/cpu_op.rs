//! Plumbing shared by the CPU custom ops (`conv`, `relu`, `batch_norm`, `max_pool`, `pool`):
//! operand slices, the float32/float64 dispatch, and the whole `CustomOp2`/`CustomOp3` impl
//! of ops without autograd of their own (the backward passes).
use candle_core::{CpuStorage, Layout, Result, WithDType};
use half::bf16;

/// The elements of a contiguous CPU operand; `what` names the op and operand in the error.
pub(crate) fn contiguous<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// `$op.run::<f32 or f64>(args)` by the first operand's type, timed under `$prof`
/// (`covid-resnet bench --profile`).
macro_rules! run_float {
    ($op:expr, $name:expr, $prof:expr; $s1:ident $(, $arg:ident)*) => {{
        let _p = $crate::model::ops::prof::scope($prof);
        match $s1 {
            candle_core::CpuStorage::F32(_) => $op.run::<f32>($s1 $(, $arg)*),
            candle_core::CpuStorage::F64(_) => $op.run::<f64>($s1 $(, $arg)*),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", $name),
        }
    }};
}
pub(crate) use run_float;

/// A value of type `S` as `Self` without loss: the identity, or a bf16 activation (stored
/// by the bf16 mixed-precision training forward, see `model::precision`) read as float32.
pub(crate) trait Widen<S>: WithDType {
    fn widen(s: S) -> Self;
}

impl<T: WithDType> Widen<T> for T {
    #[inline(always)]
    fn widen(s: T) -> T {
        s
    }
}

impl Widen<bf16> for f32 {
    /// The bits shifted into place (a NaN stays NaN, its payload unchanged): no branch.
    #[inline(always)]
    fn widen(s: bf16) -> f32 {
        f32::from_bits((s.to_bits() as u32) << 16)
    }
}

/// `v` rounded to the nearest bf16 (ties to even; NaN stays NaN, made quiet): half's
/// `bf16::from_f32`, written without branches so that a loop of it vectorises.
#[inline(always)]
pub(crate) fn round_bf16(v: f32) -> bf16 {
    let x = v.to_bits();
    let rounded = x.wrapping_add(0x7FFF + ((x >> 16) & 1));
    let r = if v.is_nan() { x | 0x0040_0000 } else { rounded };
    bf16::from_bits((r >> 16) as u16)
}

/// The first operand of a bf16 product: float32, or an activation stored in bf16.
#[derive(Clone, Copy)]
pub(crate) enum Act<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
}

impl<'a> Act<'a> {
    /// The operand as float32, or an error naming it (`what`) where it is bf16.
    pub(crate) fn f32(self, what: &str) -> Result<&'a [f32]> {
        match self {
            Act::F32(v) => Ok(v),
            Act::Bf16(_) => candle_core::bail!("{what} must be float32, not bf16"),
        }
    }
}

/// The operands of an op asked for bf16 products (`prec`), or given a bf16 first operand
/// (a stored activation): each float32 or bf16 (a second operand in bf16 is an output
/// gradient stored in bf16 by a BatchNorm's backward). None for float32 or float64 operands
/// in float32 precision (float64 ignores the precision).
pub(crate) fn bf16_operands<'a>(
    prec: super::precision::Precision,
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> Result<Option<(Act<'a>, Act<'a>)>> {
    let a = match s1 {
        CpuStorage::BF16(_) => act(s1, l1)?,
        CpuStorage::F32(_) if prec == super::precision::Precision::Bf16 => act(s1, l1)?,
        _ => return Ok(None),
    };
    Ok(Some((a, act(s2, l2)?)))
}

/// A bf16 operand as it is, any other as float32 (an error where it is not).
fn act<'a>(s: &'a CpuStorage, l: &Layout) -> Result<Act<'a>> {
    Ok(match s {
        CpuStorage::BF16(_) => Act::Bf16(contiguous::<bf16>(s, l, "operand")?),
        _ => Act::F32(contiguous::<f32>(s, l, "operand")?),
    })
}

/// [`run_float!`] for an op with `fn precision(&self)` and `fn run_bf16(&self, a: Act, b:
/// Act) -> Result<(Vec<f32>, Shape)>`: its bf16 products when asked for or given a bf16
/// operand (timed under `$prof16`), else `run::<f32 or f64>`.
macro_rules! run_mixed {
    ($op:expr, $name:expr, $prof:expr, $prof16:expr; $s1:ident, $l1:ident, $s2:ident, $l2:ident) => {{
        match $crate::model::ops::cpu_op::bf16_operands($op.precision(), $s1, $l1, $s2, $l2)? {
            Some((a, b)) => {
                let _p = $crate::model::ops::prof::scope($prof16);
                let (v, shape) = $op.run_bf16(a, b)?;
                Ok((candle_core::CpuStorage::F32(v), shape))
            }
            None => $crate::model::ops::cpu_op::run_float!($op, $name, $prof; $s1, $l1, $s2, $l2),
        }
    }};
}
pub(crate) use run_mixed;

/// `$op.run::<A, T>(args)` for a backward op that reads saved activations of type `A` (its
/// first operand's) and gradients of type `T`: float32 or float64 throughout, or bf16
/// activations with float32 gradients. Timed under `$prof`.
macro_rules! run_saved {
    ($op:expr, $name:expr, $prof:expr; $s1:ident $(, $arg:ident)*) => {{
        let _p = $crate::model::ops::prof::scope($prof);
        match $s1 {
            candle_core::CpuStorage::F32(_) => $op.run::<f32, f32>($s1 $(, $arg)*),
            candle_core::CpuStorage::F64(_) => $op.run::<f64, f64>($s1 $(, $arg)*),
            candle_core::CpuStorage::BF16(_) => {
                $op.run::<half::bf16, f32>($s1 $(, $arg)*)
            }
            _ => candle_core::bail!("{}: only f32, f64 and bf16 are supported", $name),
        }
    }};
}
pub(crate) use run_saved;

/// `impl CustomOp2` (no autograd) for a type with `fn run<T>(&self, s1, l1, s2, l2)`; with
/// `bf16 "prof"`, through [`run_mixed!`]; with `saved`, `fn run<A, T>` through [`run_saved!`].
macro_rules! impl_op2 {
    (@impl $ty:ty, $name:literal, $run:ident($($prof:literal),+)) => {
        impl candle_core::CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::model::ops::cpu_op::$run!(self, $name, $($prof),+; s1, l1, s2, l2)
            }
        }
    };
    ($ty:ty, $name:literal, $prof:literal, bf16 $prof16:literal) => {
        $crate::model::ops::cpu_op::impl_op2!(@impl $ty, $name, run_mixed($prof, $prof16));
    };
    ($ty:ty, $name:literal, $prof:literal) => {
        $crate::model::ops::cpu_op::impl_op2!(@impl $ty, $name, run_float($prof));
    };
    ($ty:ty, $name:literal, $prof:literal, saved) => {
        $crate::model::ops::cpu_op::impl_op2!(@impl $ty, $name, run_saved($prof));
    };
}
pub(crate) use impl_op2;

/// `impl CustomOp3` (no autograd) for a type with `fn run<T>(&self, s1, l1, s2, l2, s3, l3)`;
/// with `saved`, `fn run<A, T>` through [`run_saved!`].
macro_rules! impl_op3 {
    ($ty:ty, $name:literal, $prof:literal) => {
        $crate::model::ops::cpu_op::impl_op3!(@impl $ty, $name, $prof, run_float);
    };
    ($ty:ty, $name:literal, $prof:literal, saved) => {
        $crate::model::ops::cpu_op::impl_op3!(@impl $ty, $name, $prof, run_saved);
    };
    (@impl $ty:ty, $name:literal, $prof:literal, $run:ident) => {
        impl candle_core::CustomOp3 for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn cpu_fwd(
                &self,
                s1: &candle_core::CpuStorage,
                l1: &candle_core::Layout,
                s2: &candle_core::CpuStorage,
                l2: &candle_core::Layout,
                s3: &candle_core::CpuStorage,
                l3: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::model::ops::cpu_op::$run!(self, $name, $prof; s1, l1, s2, l2, s3, l3)
            }
        }
    };
}
pub(crate) use impl_op3;

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bits as half's rounding for every special case and a sweep of the float32
    /// line (ties, carries into the exponent, subnormals, the largest finite values, NaNs).
    #[test]
    fn round_bf16_is_halfs_rounding() {
        let mut xs: Vec<u32> = vec![
            0,
            0x8000_0000,
            0x7F80_0000,
            0xFF80_0000,
            0x7F7F_FFFF,
            0xFF7F_FFFF,
            0x7F7F_8000,
            0x7FC0_0000,
            0x7F80_0001,
            0xFF81_2345,
            0x0000_0001,
            0x0000_8000,
            0x0001_8000,
            0x3F80_8000,
            0x3F81_8000,
            0x3F80_8001,
            0x3F80_7FFF,
        ];
        xs.extend((0..=u32::MAX).step_by(65_519));
        xs.extend((0..1_000_000u32).map(|i| 0x3F80_0000 + i));
        for x in xs {
            let v = f32::from_bits(x);
            assert_eq!(
                round_bf16(v).to_bits(),
                bf16::from_f32(v).to_bits(),
                "{x:#010x}"
            );
        }
    }
}

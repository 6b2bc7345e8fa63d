//! Plumbing shared by the CPU custom ops (`conv`, `act`, `bn_op`, `pool`): operand slices,
//! the float32/float64 dispatch, and the whole `CustomOp2`/`CustomOp3` impl of ops without
//! autograd of their own (the backward passes).
use candle_core::{CpuStorage, Layout, Result, WithDType};

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
        let _p = $crate::model::prof::scope($prof);
        match $s1 {
            candle_core::CpuStorage::F32(_) => $op.run::<f32>($s1 $(, $arg)*),
            candle_core::CpuStorage::F64(_) => $op.run::<f64>($s1 $(, $arg)*),
            _ => candle_core::bail!("{}: only f32 and f64 are supported", $name),
        }
    }};
}
pub(crate) use run_float;

/// The float32 operands of an op asked for bf16 products (`prec`), if its storage is
/// float32 (float64 ignores the precision).
pub(crate) fn bf16_operands<'a>(
    prec: super::precision::Precision,
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> Result<Option<(&'a [f32], &'a [f32])>> {
    if prec != super::precision::Precision::Bf16 || !matches!(s1, CpuStorage::F32(_)) {
        return Ok(None);
    }
    Ok(Some((
        contiguous::<f32>(s1, l1, "operand")?,
        contiguous::<f32>(s2, l2, "operand")?,
    )))
}

/// [`run_float!`] for an op with `fn precision(&self)` and `fn run_bf16(&self, a: &[f32],
/// b: &[f32]) -> (Vec<f32>, Shape)`: its bf16 products when asked for (timed under
/// `$prof16`), else `run::<f32 or f64>`.
macro_rules! run_mixed {
    ($op:expr, $name:expr, $prof:expr, $prof16:expr; $s1:ident, $l1:ident, $s2:ident, $l2:ident) => {{
        match $crate::model::cpu_op::bf16_operands($op.precision(), $s1, $l1, $s2, $l2)? {
            Some((a, b)) => {
                let _p = $crate::model::prof::scope($prof16);
                let (v, shape) = $op.run_bf16(a, b);
                Ok((candle_core::CpuStorage::F32(v), shape))
            }
            None => $crate::model::cpu_op::run_float!($op, $name, $prof; $s1, $l1, $s2, $l2),
        }
    }};
}
pub(crate) use run_mixed;

/// `impl CustomOp2` (no autograd) for a type with `fn run<T>(&self, s1, l1, s2, l2)`; with
/// `bf16 "prof"`, through [`run_mixed!`].
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
                $crate::model::cpu_op::$run!(self, $name, $($prof),+; s1, l1, s2, l2)
            }
        }
    };
    ($ty:ty, $name:literal, $prof:literal, bf16 $prof16:literal) => {
        $crate::model::cpu_op::impl_op2!(@impl $ty, $name, run_mixed($prof, $prof16));
    };
    ($ty:ty, $name:literal, $prof:literal) => {
        $crate::model::cpu_op::impl_op2!(@impl $ty, $name, run_float($prof));
    };
}
pub(crate) use impl_op2;

/// `impl CustomOp3` (no autograd) for a type with `fn run<T>(&self, s1, l1, s2, l2, s3, l3)`.
macro_rules! impl_op3 {
    ($ty:ty, $name:literal, $prof:literal) => {
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
                $crate::model::cpu_op::run_float!(self, $name, $prof; s1, l1, s2, l2, s3, l3)
            }
        }
    };
}
pub(crate) use impl_op3;

//! Plumbing shared by the CPU custom ops (`conv`, `act`, `bn_op`, `pool`): operand slices,
//! the float32/float64 dispatch, and the whole `CustomOpN` impl of ops without autograd of
//! their own (the backward passes).
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

/// `impl CustomOp2` (no autograd) for a type with `fn run<T>(&self, s1, l1, s2, l2)`.
macro_rules! impl_op2 {
    ($ty:ty, $name:literal, $prof:literal) => {
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
                $crate::model::cpu_op::run_float!(self, $name, $prof; s1, l1, s2, l2)
            }
        }
    };
}
pub(crate) use impl_op2;

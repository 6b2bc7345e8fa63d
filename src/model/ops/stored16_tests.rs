//! The bf16 training forward stores activations in bf16 (see `batch_norm`). Each op that reads
//! one must compute what its float32 version computes on the same values widened to float32
//! (exactly representable), bit for bit: the forward output (rounded to bf16 where the op
//! stores bf16) and the float32 gradients of the backward.
use super::conv::conv2d;
use super::pass::{Compute, Pass};
use super::pool::max_pool2d;
use super::precision::Precision;
use super::relu::add_relu;
use super::tape;
use crate::model::test_util::bits;
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

fn bf16_compute() -> Compute {
    Compute::with_precision(Precision::Bf16)
}

fn randn(seed: u64, shape: &[usize]) -> Tensor {
    crate::model::test_util::randn(seed, shape, 1.0, 0.0)
}

/// `f` on `inputs` (as variables) recorded in bf16 precision, then the tape run back from
/// `dy`: the output and each input's gradient.
fn taped(
    inputs: &[Tensor],
    dy: &Tensor,
    f: impl Fn(&[Tensor], &Pass<'_>) -> candle_core::Result<Tensor>,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let (y, tape) = tape::record(|t| Ok(f(&ts, &Pass::taped(bf16_compute(), t))?)).unwrap();
    let mut grads = GradStore::default();
    tape.backward(y.id(), dy.clone(), &mut grads).unwrap();
    let g = ts.iter().map(|t| grads.get(t).unwrap().clone()).collect();
    (y, g)
}

/// The same op on bf16 inputs and on the same values in float32: outputs equal (the bf16
/// run's rounded, `out16`), gradients equal and float32.
fn assert_same_as_f32(
    what: &str,
    inputs16: &[Tensor],
    out16: bool,
    f: impl Fn(&[Tensor], &Pass<'_>) -> candle_core::Result<Tensor>,
) {
    let inputs32: Vec<Tensor> = inputs16
        .iter()
        .map(|t| t.to_dtype(DType::F32).unwrap())
        .collect();
    let y32 = f(&inputs32, &Pass::autograd(bf16_compute(), true)).unwrap();
    let dy = randn(99, y32.dims());
    let (y16, g16) = taped(inputs16, &dy, &f);
    let (y32, g32) = taped(&inputs32, &dy, &f);
    if out16 {
        assert_eq!(y16.dtype(), DType::BF16, "{what}");
        assert_eq!(
            bits(&y16),
            bits(&y32.to_dtype(DType::BF16).unwrap()),
            "{what}"
        );
    } else {
        assert_eq!(y16.dtype(), DType::F32, "{what}");
        assert_eq!(bits(&y16), bits(&y32), "{what}");
    }
    for (i, (a, b)) in g16.iter().zip(&g32).enumerate() {
        assert_eq!(a.dtype(), DType::F32, "{what}: gradient {i}");
        let diff = bits(a)
            .iter()
            .zip(bits(b))
            .filter(|(x, y)| **x != *y)
            .count();
        assert_eq!(diff, 0, "{what}: gradient {i}: {diff} elements differ");
    }
}

fn bf16(t: Tensor) -> Tensor {
    t.to_dtype(DType::BF16).unwrap()
}

/// A convolution of a bf16 input: the float32 input's products (its operands are rounded
/// to bf16 anyway), the same input and weight gradients. Shapes cover the 1x1 stride-1 path
/// (the input is its own matrix in float32), 3x3 "same" and strided, and images small
/// enough to be multiplied several side by side.
#[test]
fn a_convolution_reads_a_bf16_input_as_its_float32_value() {
    for (n, c, h, co, k, s, p) in [
        (3, 8, 9, 16, 3, 1, 1),
        (4, 16, 6, 8, 1, 1, 0),
        (2, 8, 11, 12, 3, 2, 1),
        (3, 16, 8, 32, 1, 2, 0),
        (2, 4, 13, 8, 7, 2, 3),
    ] {
        let x = bf16(randn(1, &[n, c, h, h]));
        let w = (randn(2, &[co, c, k, k]) * 0.2).unwrap();
        assert_same_as_f32(
            &format!("conv {k}x{k} stride {s} on {n}x{c}x{h}x{h}"),
            &[x, w],
            false,
            |t, pass| conv2d(&t[0], &t[1], s, p, pass),
        );
    }
}

/// The residual add + ReLU of two bf16 activations: the float32 sum's ReLU, rounded.
#[test]
fn add_relu_of_bf16_activations_is_the_float32_one_rounded() {
    let a = bf16(randn(3, &[2, 5, 7, 9]));
    let b = bf16(randn(4, &[2, 5, 7, 9]));
    assert_same_as_f32("add+relu", &[a, b], true, |t, pass| {
        add_relu(&t[0], &t[1], pass).map_err(candle_core::Error::wrap)
    });
}

/// The stem's max-pool of a bf16 activation (with ties: values on a coarse grid).
#[test]
fn max_pool_of_a_bf16_activation_is_the_float32_one() {
    let x = bf16((randn(5, &[2, 3, 12, 11]) * 2.0).unwrap().round().unwrap());
    assert_same_as_f32("max pool", &[x], true, |t, pass| {
        max_pool2d(&t[0], 3, 2, 1, pass).map_err(candle_core::Error::wrap)
    });
}

/// The body's last bf16 activation reaches the head in float32, and its gradient passes
/// back unchanged.
#[test]
fn widening_passes_the_gradient_through() {
    let x = bf16(randn(6, &[2, 3, 4, 4]));
    let dy = randn(7, &[2, 3, 4, 4]);
    let (y, g) = taped(std::slice::from_ref(&x), &dy, |t, pass| {
        tape::widen(&t[0], pass)
    });
    assert_eq!(y.dtype(), DType::F32);
    assert_eq!(bits(&y), bits(&x));
    assert_eq!(bits(&g[0]), bits(&dy));
}

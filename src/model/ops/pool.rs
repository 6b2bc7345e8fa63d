//! Pooling with working gradients. candle's `max_pool2d` has no correct backward when the
//! kernel differs from the stride, and the ResNet stem needs a 3x3 stride-2 pool.
use super::max_pool::MaxPool;
use super::pass::Pass;
use crate::Result;
use candle_core::{DType, Tensor, D};

/// Max pooling with a square kernel, stride and padding (padding counts as -inf, as PyTorch).
/// The gradient goes to the first maximum of each window in row-major order, as PyTorch's.
/// On the CPU (f32/f64) one parallel pass each way; elsewhere built from tensor ops.
pub fn max_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
    pass: &Pass<'_>,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    // bf16 while taping: an activation stored by the bf16 training forward.
    let cpu = x.device().is_cpu()
        && (matches!(x.dtype(), DType::F32 | DType::F64)
            || (x.dtype() == DType::BF16 && pass.taping()));
    // Padding over half the kernel (which PyTorch refuses) could leave a window with no
    // input element: the tensor-op version handles it with -inf.
    if !cpu
        || stride == 0
        || kernel == 0
        || 2 * padding > kernel
        || h + 2 * padding < kernel
        || w + 2 * padding < kernel
    {
        if pass.taping() {
            return Err(super::tape::unsupported("max pool").into());
        }
        return max_pool2d_tensor_ops(x, kernel, stride, padding);
    }
    let op = MaxPool {
        k: kernel,
        s: stride,
        p: padding,
    };
    let x = x.contiguous()?;
    if !pass.taping() {
        return Ok(x.apply_op1(op)?);
    }
    Ok(super::max_pool::taped(&x, op, pass)?)
}

/// Max pooling from tensor ops (GPU backends).
///
/// Built from strided views of the padded input, stacked and reduced with argmax + gather so
/// that the gradient goes to exactly one input per window (the first maximum), as in PyTorch.
fn max_pool2d_tensor_ops(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let out_h = (h + 2 * padding - kernel) / stride + 1;
    let out_w = (w + 2 * padding - kernel) / stride + 1;
    // Pad so that every view `start .. start + stride*out` fits.
    let need_h = kernel - 1 + stride * out_h;
    let need_w = kernel - 1 + stride * out_w;
    let x = pad_neg_inf(x, 2, padding, need_h.saturating_sub(h + padding))?;
    let x = pad_neg_inf(&x, 3, padding, need_w.saturating_sub(w + padding))?;
    let mut views = Vec::with_capacity(kernel * kernel);
    for kh in 0..kernel {
        let rows = strided(&x, 2, kh, stride, out_h)?;
        for kw in 0..kernel {
            views.push(strided(&rows, 3, kw, stride, out_w)?);
        }
    }
    let stacked = Tensor::stack(&views, 4)?.contiguous()?; // (N, C, OH, OW, K*K)
    let idx = stacked.argmax_keepdim(D::Minus1)?.contiguous()?;
    let out = stacked.gather(&idx, D::Minus1)?;
    Ok(out.reshape((n, c, out_h, out_w))?)
}

/// Elements `start, start+stride, ...` (`count` of them) along `dim`.
fn strided(x: &Tensor, dim: usize, start: usize, stride: usize, count: usize) -> Result<Tensor> {
    let x = x.narrow(dim, start, stride * count)?;
    if stride == 1 {
        return Ok(x);
    }
    let mut shape = x.dims().to_vec();
    shape[dim] = count;
    shape.insert(dim + 1, stride);
    Ok(x.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)?)
}

fn pad_neg_inf(x: &Tensor, dim: usize, left: usize, right: usize) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(x.clone());
    }
    let mut parts = Vec::with_capacity(3);
    let side = |len: usize| -> Result<Option<Tensor>> {
        if len == 0 {
            return Ok(None);
        }
        let mut shape = x.dims().to_vec();
        shape[dim] = len;
        Ok(Some(
            Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())?,
        ))
    };
    if let Some(l) = side(left)? {
        parts.push(l);
    }
    parts.push(x.clone());
    if let Some(r) = side(right)? {
        parts.push(r);
    }
    Ok(Tensor::cat(&parts, dim)?)
}

/// fastai's AdaptiveConcatPool2d with output size 1: [global max, global mean] -> (N, 2C).
pub fn concat_pool(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let flat = x.reshape((n, c, h * w))?;
    let mx = flat.max(D::Minus1)?;
    let avg = flat.mean(D::Minus1)?;
    Ok(Tensor::cat(&[mx, avg], 1)?)
}

/// Mean over the spatial dimensions: (N, C, H, W) -> (N, C) (torchvision's avgpool + flatten).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean((candle_core::D::Minus2, candle_core::D::Minus1))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::pass::Compute;
    use candle_core::{Device, Var};

    fn ag() -> Pass<'static> {
        Pass::autograd(Compute::default(), true)
    }

    fn naive(x: &[f32], h: usize, w: usize, k: usize, s: usize, p: usize) -> Vec<f32> {
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let mut out = vec![f32::NEG_INFINITY; oh * ow];
        for i in 0..oh {
            for j in 0..ow {
                for a in 0..k {
                    for b in 0..k {
                        let (y, xx) = (
                            (i * s + a) as isize - p as isize,
                            (j * s + b) as isize - p as isize,
                        );
                        if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                            out[i * ow + j] = out[i * ow + j].max(x[y as usize * w + xx as usize]);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_naive_on_odd_and_even_sizes() {
        for (h, w) in [(8, 8), (7, 9), (5, 5), (112, 112)] {
            let data: Vec<f32> = (0..h * w)
                .map(|i| ((i * 7919) % 101) as f32 - 50.0)
                .collect();
            let x = Tensor::from_vec(data.clone(), (1, 1, h, w), &Device::Cpu).unwrap();
            let y = max_pool2d(&x, 3, 2, 1, &ag()).unwrap();
            let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, naive(&data, h, w, 3, 2, 1), "{h}x{w}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Distinct values so that the max of each window is unique and the function is
        // differentiable; loss = sum(pool(x) * r) with fixed random weights r.
        let (h, w) = (7, 6);
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..2 * h * w)
            .map(|i| ((i * 37) % 97) as f32 * 0.1 - 3.0)
            .collect();
        let x = Var::from_vec(data.clone(), (1, 2, h, w), &dev).unwrap();
        let y = max_pool2d(x.as_tensor(), 3, 2, 1, &ag()).unwrap();
        let r: Vec<f32> = (0..y.elem_count())
            .map(|i| ((i * 13) % 7) as f32 - 3.0)
            .collect();
        let r = Tensor::from_vec(r, y.dims(), &dev).unwrap();
        let loss = (y * &r).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let f = |d: &[f32]| -> f64 {
            let t = Tensor::from_vec(d.to_vec(), (1, 2, h, w), &dev).unwrap();
            let y = max_pool2d(&t, 3, 2, 1, &ag()).unwrap();
            (y * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let eps = 1e-2f32;
        let mut nonzero = 0;
        for i in 0..data.len() {
            let mut p = data.clone();
            p[i] += eps;
            let mut m = data.clone();
            m[i] -= eps;
            let fd = (f(&p) - f(&m)) / (2.0 * eps as f64);
            assert!(
                (fd - g[i] as f64).abs() < 1e-3,
                "element {i}: fd {fd} vs grad {}",
                g[i]
            );
            if g[i] != 0.0 {
                nonzero += 1;
            }
        }
        assert!(
            nonzero > 10,
            "the gradient should reach many inputs, got {nonzero}"
        );
    }

    /// The CPU op and the tensor-op version (GPU backends) agree on the output and the
    /// gradient, ties included, for odd and even sizes and other geometries.
    #[test]
    fn cpu_op_matches_tensor_op_version() {
        let dev = Device::Cpu;
        for (h, w, k, s, p) in [
            (9, 7, 3, 2, 1),
            (8, 8, 3, 2, 1),
            (6, 5, 2, 2, 0),
            (5, 6, 3, 1, 1),
        ] {
            // Few distinct values: many ties.
            let data: Vec<f32> = (0..2 * 3 * h * w).map(|i| ((i * 7) % 5) as f32).collect();
            let r: Vec<f32> = (0..2 * 3 * h * w)
                .map(|i| ((i * 13) % 7) as f32 - 3.0)
                .collect();
            let run = |ops: bool| {
                let x = Var::from_vec(data.clone(), (2, 3, h, w), &dev).unwrap();
                let y = if ops {
                    max_pool2d_tensor_ops(x.as_tensor(), k, s, p).unwrap()
                } else {
                    max_pool2d(x.as_tensor(), k, s, p, &ag()).unwrap()
                };
                let rr = Tensor::from_vec(r[..y.elem_count()].to_vec(), y.dims(), &dev).unwrap();
                let g = (&y * rr).unwrap().sum_all().unwrap().backward().unwrap();
                let dx = g
                    .get(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                (y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), dx)
            };
            assert_eq!(run(false), run(true), "{:?}", (h, w, k, s, p));
        }
    }

    #[test]
    fn ties_send_the_gradient_to_one_input() {
        let dev = Device::Cpu;
        let x = Var::from_vec(vec![1f32; 16], (1, 1, 4, 4), &dev).unwrap();
        let y = max_pool2d(x.as_tensor(), 3, 2, 1, &ag()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let total = g
            .get(&x)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(total, y.elem_count() as f32);
    }

    /// PyTorch's CPU kernel updates its maximum where `val > maxval || isnan(val)`
    /// (aten/src/ATen/native/cpu/MaxPoolKernel.cpp): a window with a NaN outputs NaN and
    /// sends its gradient to the last NaN in row-major order.
    #[test]
    fn nan_propagates_and_takes_the_gradient_at_the_last_nan() {
        let dev = Device::Cpu;
        let mut data = vec![1f32, 9., 2., 3., 4., 5., 6., 7., 8.];
        data[1] = f32::NAN;
        data[6] = f32::NAN;
        let x = Var::from_vec(data, (1, 1, 3, 3), &dev).unwrap();
        let y = max_pool2d(x.as_tensor(), 3, 1, 0, &ag()).unwrap();
        assert!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0].is_nan());
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut want = vec![0f32; 9];
        want[6] = 1.0;
        assert_eq!(dx, want);
    }

    /// The taped training forward (each maximum's position kept, the backward a scatter)
    /// gives autograd's output and gradient bit for bit: values on a coarse grid (many ties
    /// in a window), NaNs (a window with a NaN takes the gradient at its last NaN), odd and
    /// even sizes (ResNet's 3-wide, stride-2 pool, picked lane by lane inside the row, on
    /// even and odd widths), kernels wider than the stride and equal to it, padding, f32 and
    /// f64.
    #[test]
    fn the_taped_max_pool_is_autograds() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            for (h, w, k, s, p) in [
                (9, 8, 3, 2, 1),
                (8, 9, 3, 2, 1),
                (7, 7, 2, 2, 0),
                (6, 11, 3, 1, 1),
                (5, 5, 5, 1, 2),
            ] {
                let n = 2 * 3 * h * w;
                let v: Vec<f32> = (0..n)
                    .map(|i| {
                        if i % 37 == 5 {
                            f32::NAN
                        } else {
                            (((i as u64 * 2_654_435_761) >> 7) % 3) as f32
                        }
                    })
                    .collect();
                let x = Tensor::from_vec(v, (2, 3, h, w), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
                let dy: Vec<f32> = (0..2 * 3 * oh * ow)
                    .map(|i| (i % 13) as f32 - 6.0)
                    .collect();
                let dy = Tensor::from_vec(dy, (2, 3, oh, ow), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let xv = Var::from_tensor(&x).unwrap();
                let ag = Pass::autograd(Compute::default(), true);
                let y = max_pool2d(xv.as_tensor(), k, s, p, &ag).unwrap();
                let auto = (&y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
                let (yt, tape) = crate::model::ops::tape::record(|t| {
                    let pass = Pass::taped(Compute::default(), t);
                    max_pool2d(xv.as_tensor(), k, s, p, &pass)
                })
                .unwrap();
                let mut taped = candle_core::backprop::GradStore::default();
                tape.backward(yt.id(), dy.clone(), &mut taped).unwrap();
                use crate::model::test_util::bits;
                let what = format!("{dtype:?} {h}x{w} k{k} s{s} p{p}");
                assert_eq!(bits(&yt), bits(&y), "{what}");
                let (a, t) = (
                    auto.get(xv.as_tensor()).unwrap(),
                    taped.get(xv.as_tensor()).unwrap(),
                );
                assert_eq!(bits(t), bits(a), "{what}");
            }
        }
    }

    #[test]
    fn concat_pool_is_max_then_mean() {
        let x = Tensor::from_vec(
            vec![1f32, 5., 3., 3., 0., 2., 2., 4.],
            (1, 2, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let y = concat_pool(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![5., 4., 3., 2.]]);
    }
}

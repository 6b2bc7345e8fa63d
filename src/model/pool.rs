//! Pooling with working gradients. candle's `max_pool2d` has no correct backward when the
//! kernel differs from the stride, and the ResNet stem needs a 3x3 stride-2 pool.
use super::cpu_op::{contiguous, round_bf16, run_float, Widen};
use crate::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, WithDType, D};
use half::bf16;
use rayon::prelude::*;

/// Max pooling with a square kernel, stride and padding (padding counts as -inf, as PyTorch).
/// The gradient goes to the first maximum of each window in row-major order, as PyTorch's.
/// On the CPU (f32/f64) one parallel pass each way; elsewhere built from tensor ops.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    // bf16 while recording: an activation stored by the bf16 training forward.
    let cpu = x.device().is_cpu()
        && (matches!(x.dtype(), DType::F32 | DType::F64)
            || (x.dtype() == DType::BF16 && super::tape::recording()));
    // Padding over half the kernel (which PyTorch refuses) could leave a window with no
    // input element: the tensor-op version handles it with -inf.
    if !cpu
        || stride == 0
        || kernel == 0
        || 2 * padding > kernel
        || h + 2 * padding < kernel
        || w + 2 * padding < kernel
    {
        if super::tape::recording() {
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
    if !super::tape::recording() {
        return Ok(x.apply_op1(op)?);
    }
    let y = x.apply_op1_no_bwd(&op)?;
    let saved = (x.clone(), y.clone());
    super::tape::push([&x], &y, move |dy, want| {
        let (x, y) = saved;
        Ok([op.bwd(&x, &y, dy)?.filter(|_| want[0])])
    });
    Ok(y)
}

/// A max-pooling window geometry.
#[derive(Debug, Clone, Copy)]
struct MaxPool {
    k: usize,
    s: usize,
    p: usize,
}

impl MaxPool {
    fn out(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.p - self.k) / self.s + 1,
            (w + 2 * self.p - self.k) / self.s + 1,
        )
    }

    /// The input indices `a..b` (along one axis of length `len`) of output `o`'s window.
    #[inline]
    fn span(&self, o: usize, len: usize) -> (usize, usize) {
        let start = (o * self.s) as isize - self.p as isize;
        (
            start.max(0) as usize,
            ((start + self.k as isize) as usize).min(len),
        )
    }

    /// Index in the plane of output (oy, ox)'s window maximum that PyTorch's kernel picks:
    /// the first maximum in row-major order, or the last NaN (`val > max || isnan(val)`).
    fn argmax<T: WithDType>(&self, plane: &[T], h: usize, w: usize, oy: usize, ox: usize) -> usize {
        let ((ya, yb), (xa, xb)) = (self.span(oy, h), self.span(ox, w));
        let mut best = ya * w + xa;
        for yy in ya..yb {
            for xx in xa..xb {
                let i = yy * w + xx;
                if plane[i] > plane[best] || plane[i].to_f64().is_nan() {
                    best = i;
                }
            }
        }
        best
    }

    /// The maxima of one (h, w) plane into `out` (oh, ow), separably: each input row's
    /// window maxima into `rows` (h, ow), then each output row's maximum over its input rows.
    fn plane<T: WithDType>(&self, x: &[T], h: usize, w: usize, out: &mut [T], rows: &mut Vec<T>) {
        let (_, ow) = self.out(h, w);
        rows.clear();
        for row in x.chunks_exact(w) {
            rows.extend((0..ow).map(|ox| {
                let (a, b) = self.span(ox, w);
                row[a + 1..b].iter().fold(row[a], |m, &v| larger(m, v))
            }));
        }
        for (oy, o) in out.chunks_exact_mut(ow).enumerate() {
            let (a, b) = self.span(oy, h);
            o.copy_from_slice(&rows[a * ow..][..ow]);
            for r in rows[(a + 1) * ow..b * ow].chunks_exact(ow) {
                for (m, &v) in o.iter_mut().zip(r) {
                    *m = larger(*m, v);
                }
            }
        }
    }
}

/// `v` where it is larger than `m` or NaN, else `m`: PyTorch's update, which propagates NaN.
/// Folding a window's elements through it in any order that visits each row's elements left
/// to right and the rows top to bottom keeps the first maximum in row-major order.
#[inline]
fn larger<T: WithDType>(m: T, v: T) -> T {
    #[allow(clippy::eq_op)] // v != v: NaN
    if v > m || v != v {
        v
    } else {
        m
    }
}

/// The elements of a contiguous (N, C, H, W) operand, with its H and W.
fn planes<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<(&'a [T], usize, usize)> {
    let d = l.dims();
    Ok((contiguous::<T>(s, l, "max pool operand")?, d[2], d[3]))
}

impl MaxPool {
    fn run<T: WithDType>(
        &self,
        s: &CpuStorage,
        l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, h, w) = planes::<T>(s, l)?;
        let (oh, ow) = self.out(h, w);
        let mut y = vec![T::zero(); x.len() / (h * w) * oh * ow];
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each_init(Vec::new, |rows, (out, plane)| {
                self.plane(plane, h, w, out, rows)
            });
        let d = l.dims();
        Ok((
            T::to_cpu_storage_owned(y),
            Shape::from((d[0], d[1], oh, ow)),
        ))
    }
}

impl MaxPool {
    /// Of a bf16 activation: each plane widened to float32 (in cache) and pooled as float32;
    /// the maxima, input values, are bf16 again exactly.
    fn run16(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, h, w) = planes::<bf16>(s, l)?;
        let (oh, ow) = self.out(h, w);
        let mut y = vec![bf16::ZERO; x.len() / (h * w) * oh * ow];
        y.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .for_each_init(
                || (Vec::new(), Vec::new(), vec![0f32; oh * ow]),
                |(rows, plane32, out32), (out, plane)| {
                    plane32.clear();
                    plane32.extend(plane.iter().map(|&v| f32::widen(v)));
                    self.plane(plane32, h, w, out32, rows);
                    for (o, &v) in out.iter_mut().zip(out32.iter()) {
                        *o = round_bf16(v);
                    }
                },
            );
        let d = l.dims();
        Ok((CpuStorage::BF16(y), Shape::from((d[0], d[1], oh, ow))))
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        if let CpuStorage::BF16(_) = s {
            let _p = super::prof::scope("maxpool forward");
            return self.run16(s, l);
        }
        run_float!(self, "max pool", "maxpool forward"; s, l)
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op3_no_bwd(
            res,
            &grad.contiguous()?,
            &MaxPoolBwd(*self),
        )?))
    }
}

/// dx: each output's gradient added to its window's maximum (as [`MaxPool::argmax`] picks
/// it); applied to (x, y, dy), x and y possibly bf16 activations (then dy is float32).
struct MaxPoolBwd(MaxPool);

impl MaxPoolBwd {
    /// One plane's dx (`out`, zero on entry) from its input `plane`, output `ys` and output
    /// gradient `g`; `cols` holds each output column's window columns.
    fn plane<T: WithDType>(
        &self,
        (h, w, oh, ow): (usize, usize, usize, usize),
        cols: &[(usize, usize)],
        (plane, ys, g): (&[T], &[T], &[T]),
        out: &mut [T],
    ) {
        let pool = self.0;
        for oy in 0..oh {
            let (ya, yb) = pool.span(oy, h);
            let rows = &plane[ya * w..yb * w];
            let (ms, gs) = (&ys[oy * ow..][..ow], &g[oy * ow..][..ow]);
            for (ox, ((&m, &d), &(xa, xb))) in ms.iter().zip(gs).zip(cols).enumerate() {
                // The first element equal to the window's maximum is the first maximum; a
                // NaN maximum goes the long way (the last NaN).
                let at = rows
                    .chunks_exact(w)
                    .enumerate()
                    .find_map(|(r, row)| row[xa..xb].iter().position(|&v| v == m).map(|c| (r, c)))
                    .map_or_else(
                        || pool.argmax(plane, h, w, oy, ox),
                        |(r, c)| (ya + r) * w + xa + c,
                    );
                out[at] += d;
            }
        }
    }

    fn run<T: WithDType>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, h, w) = planes::<T>(s1, l1)?;
        let (y, oh, ow) = planes::<T>(s2, l2)?;
        let (dy, ..) = planes::<T>(s3, l3)?;
        let mut dx = vec![T::zero(); x.len()];
        // Each output column's window columns, the same in every plane.
        let cols: Vec<(usize, usize)> = (0..ow).map(|ox| self.0.span(ox, w)).collect();
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w))
            .zip(y.par_chunks(oh * ow).zip(dy.par_chunks(oh * ow)))
            .for_each(|((out, plane), (ys, g))| {
                self.plane((h, w, oh, ow), &cols, (plane, ys, g), out)
            });
        Ok((T::to_cpu_storage_owned(dx), l1.shape().clone()))
    }

    /// Of bf16 activations x and y with a float32 dy: each plane widened to float32 (in
    /// cache), then as float32.
    fn run16(
        &self,
        (s1, l1): (&CpuStorage, &Layout),
        (s2, l2): (&CpuStorage, &Layout),
        (s3, l3): (&CpuStorage, &Layout),
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, h, w) = planes::<bf16>(s1, l1)?;
        let (y, oh, ow) = planes::<bf16>(s2, l2)?;
        let (dy, ..) = planes::<f32>(s3, l3)?;
        let mut dx = vec![0f32; x.len()];
        let cols: Vec<(usize, usize)> = (0..ow).map(|ox| self.0.span(ox, w)).collect();
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w))
            .zip(y.par_chunks(oh * ow).zip(dy.par_chunks(oh * ow)))
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(p32, y32), ((out, plane), (ys, g))| {
                    p32.clear();
                    p32.extend(plane.iter().map(|&v| f32::widen(v)));
                    y32.clear();
                    y32.extend(ys.iter().map(|&v| f32::widen(v)));
                    self.plane((h, w, oh, ow), &cols, (p32, y32, g), out)
                },
            );
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

impl candle_core::CustomOp3 for MaxPoolBwd {
    fn name(&self) -> &'static str {
        "max-pool2d-bwd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if let CpuStorage::BF16(_) = s1 {
            let _p = super::prof::scope("maxpool backward");
            return self.run16((s1, l1), (s2, l2), (s3, l3));
        }
        run_float!(self, "max pool", "maxpool backward"; s1, l1, s2, l2, s3, l3)
    }
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
    use candle_core::{Device, Var};

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
            let y = max_pool2d(&x, 3, 2, 1).unwrap();
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
        let y = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
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
            let y = max_pool2d(&t, 3, 2, 1).unwrap();
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
                    max_pool2d(x.as_tensor(), k, s, p).unwrap()
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
        let y = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
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
        let y = max_pool2d(x.as_tensor(), 3, 1, 0).unwrap();
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

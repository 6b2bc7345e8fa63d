//! Training-mode BatchNorm's backward: the input gradient and the parameters' gradients from
//! the statistics of the forward, with per-channel sums in float64.
use super::{dims3, BatchStats, BnTrainFwd};
use crate::model::ops::cpu_op::{contiguous, impl_op3, round_bf16, Widen};
use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};
use half::bf16;
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// One channel's float64 lanes of (sum g, sum g (x - mean)), summed over its blocks.
type Lanes = ([f64; 16], [f64; 16]);

/// Adds (sum g, sum g (x - mean)) over one block to a channel's `lanes`, with g = dy, or
/// with RELU g = dy where y > 0. Runs of 128 elements are summed in the tensor's own type in
/// 16 lanes (vectorised), and each lane's run sums added to the float64 lanes, reduced
/// across lanes once per channel by the caller: the error stays near one rounding per run,
/// unlike a long float32 running sum, and a small block (16 positions of a deep layer)
/// costs no reduction of its own. (The lanes are zipped iterators: indexed `a16[j]` with
/// the ReLU branch compiled to scalar compares, 5x slower.)
#[inline]
fn grad_sums<A: Copy, T: Widen<A>, const RELU: bool>(
    dy: &[T],
    y: &[A],
    x: &[A],
    mean_t: T,
    (a64, b64): &mut Lanes,
) {
    const RUN: usize = 128;
    for ((d, yv), xv) in dy.chunks(RUN).zip(y.chunks(RUN)).zip(x.chunks(RUN)) {
        let (mut a16, mut b16) = ([T::zero(); 16], [T::zero(); 16]);
        let (dc, yc, xc) = (d.chunks_exact(16), yv.chunks_exact(16), xv.chunks_exact(16));
        let (dr, yr, xr) = (dc.remainder(), yc.remainder(), xc.remainder());
        for ((d, yv), xv) in dc.zip(yc).zip(xc) {
            let lanes = a16.iter_mut().zip(b16.iter_mut());
            for ((a, b), ((&d, &yv), &xv)) in lanes.zip(d.iter().zip(yv).zip(xv)) {
                let g = if RELU && T::widen(yv) <= T::zero() {
                    T::zero()
                } else {
                    d
                };
                *a += g;
                *b += g * (T::widen(xv) - mean_t);
            }
        }
        for (j, ((d, yv), xv)) in dr.iter().zip(yr).zip(xr).enumerate() {
            let g = if RELU && T::widen(*yv) <= T::zero() {
                T::zero()
            } else {
                *d
            };
            a16[j] += g;
            b16[j] += g * (T::widen(*xv) - mean_t);
        }
        for j in 0..16 {
            a64[j] += a16[j].to_f64();
            b64[j] += b16[j].to_f64();
        }
    }
}

impl BnTrainFwd {
    /// (dx, d gamma, d beta) for the output gradient `grad` (the autograd op above and the
    /// taped backward, `model::tape`). The output `y` is read only for the ReLU's mask: it
    /// may be `None` without one.
    pub(super) fn grads(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        y: Option<&Tensor>,
        grad: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let grad = grad.contiguous()?;
        let y = match (self.relu, y) {
            (true, Some(y)) => y,
            (true, None) => candle_core::bail!("batch norm + relu backward: output not saved"),
            // Not read without a ReLU: the input stands in for the operand.
            (false, _) => x,
        };
        let stats = self
            .stats
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| candle_core::Error::Msg("batch norm: no statistics saved".into()))?;
        let sums = Arc::new(Mutex::new(None));
        let op = BnTrainBwd {
            eps: self.eps,
            relu: self.relu,
            dx16: self.keep16.is_some(),
            gamma: gamma.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?,
            stats,
            sums: sums.clone(),
        };
        let dx = x.apply_op3_no_bwd(y, &grad, &op)?;
        let (dgamma, dbeta) =
            sums.lock().ok().and_then(|mut s| s.take()).ok_or_else(|| {
                candle_core::Error::Msg("batch norm: backward sums missing".into())
            })?;
        let dgamma =
            Tensor::from_vec(dgamma, gamma.dims(), gamma.device())?.to_dtype(gamma.dtype())?;
        let dbeta =
            Tensor::from_vec(dbeta, gamma.dims(), gamma.device())?.to_dtype(gamma.dtype())?;
        Ok((dx, dgamma, dbeta))
    }
}

/// dx = gamma / sigma / M * (M dy - sum(dy) - x̂ sum(dy x̂)); also d gamma = sum(dy x̂) and
/// d beta = sum(dy), left in `sums`. Applied to (x, y, dy): with `relu`, dy is first zeroed
/// where the forward output y is not positive. x and y may be bf16 (stored by the bf16
/// training forward), dy float32; dx is float32, or with `dx16` bf16 (see [`GradOut`]).
struct BnTrainBwd {
    eps: f64,
    relu: bool,
    dx16: bool,
    gamma: Vec<f64>,
    stats: BatchStats,
    #[allow(clippy::type_complexity)]
    sums: Arc<Mutex<Option<(Vec<f64>, Vec<f64>)>>>,
}

/// The element type of BatchNorm's input gradient for gradients of type `T`: `T` itself, or
/// in the bf16 training step bf16, the float32 value rounded to nearest even. BatchNorm's
/// input is a convolution's output, and a bf16 convolution rounds its output gradient to
/// bf16 in exactly this way before multiplying it (`conv::mixed`): stored so, the gradient
/// moves half the bytes and the step computes the same numbers.
trait GradOut<T>: WithDType {
    fn from_grad(v: T) -> Self;
}

impl<T: WithDType> GradOut<T> for T {
    fn from_grad(v: T) -> T {
        v
    }
}

impl GradOut<f32> for bf16 {
    fn from_grad(v: f32) -> bf16 {
        round_bf16(v)
    }
}

impl GradOut<f64> for bf16 {
    fn from_grad(v: f64) -> bf16 {
        round_bf16(v as f32)
    }
}

impl BnTrainBwd {
    fn run<A: WithDType, T: Widen<A>>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)>
    where
        bf16: GradOut<T>,
    {
        let dims = dims3(l1)?;
        let x = contiguous::<A>(s1, l1, "batch norm input")?;
        let y = contiguous::<A>(s2, l2, "batch norm output")?;
        let dy = contiguous::<T>(s3, l3, "batch norm gradient")?;
        let dx = if self.dx16 {
            bf16::to_cpu_storage_owned(self.dx::<A, T, bf16>(x, y, dy, dims))
        } else {
            T::to_cpu_storage_owned(self.dx::<A, T, T>(x, y, dy, dims))
        };
        Ok((dx, l1.shape().clone()))
    }

    /// The input gradient, as `D`, of `(n, c, hw)` planes; the sums left in `self.sums`.
    ///
    /// A task takes a group of consecutive channels whose planes (over the batch) fit in the
    /// core's L2 cache: it sums them, then writes their input gradient, reading its operands
    /// a second time from the cache rather than from memory.
    fn dx<A: WithDType, T: Widen<A>, D: GradOut<T>>(
        &self,
        x: &[A],
        y: &[A],
        dy: &[T],
        (n, c, hw): (usize, usize, usize),
    ) -> Vec<D> {
        let st = &self.stats;
        let relu = self.relu;
        let m = st.count as f64;
        let inv_std = |ch: usize| 1.0 / (st.var[ch] + self.eps).sqrt();
        let mut dx = vec![D::zero(); x.len()];
        let group = channel_group(n, hw).min(c.max(1));
        let outs = by_group(&mut dx, (c, hw), group);
        let sums: Vec<Vec<(f64, f64)>> = outs
            .into_par_iter()
            .enumerate()
            .map(|(gi, mut outs)| {
                let chs = gi * group..((gi + 1) * group).min(c);
                let sums: Vec<(f64, f64)> = chs
                    .clone()
                    .map(|ch| {
                        let (a, b) = channel_sums(dy, y, x, (n, c, hw), ch, st.mean[ch], relu);
                        (a, b * inv_std(ch))
                    })
                    .collect();
                // dx = k * (m g - sum_dy - xhat * sum_dy_xhat) = a * g + bx * x + c0 per
                // channel, k = gamma / sigma / m, in the tensor's type (the sums carry the
                // precision).
                let coef: Vec<(T, T, T)> = chs
                    .clone()
                    .zip(&sums)
                    .map(|(ch, &(sum_dy, sum_dy_xhat))| {
                        let k = self.gamma[ch] * inv_std(ch) / m;
                        let bx = -k * sum_dy_xhat * inv_std(ch);
                        let c0 = -k * sum_dy - bx * st.mean[ch];
                        (T::from_f64(k * m), T::from_f64(bx), T::from_f64(c0))
                    })
                    .collect();
                for (i, out) in outs.iter_mut().enumerate() {
                    let blocks = out.chunks_mut(hw.max(1)).zip(chs.clone()).zip(&coef);
                    for ((o, ch), &(a, bx, c0)) in blocks {
                        let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                        dx_block::<A, T, D>(
                            o,
                            &dy[r.clone()],
                            &y[r.clone()],
                            &x[r],
                            (a, bx, c0),
                            relu,
                        );
                    }
                }
                sums
            })
            .collect();
        let (sum_dy, sum_dy_xhat): (Vec<f64>, Vec<f64>) = sums.into_iter().flatten().unzip();
        if let Ok(mut s) = self.sums.lock() {
            *s = Some((sum_dy_xhat, sum_dy));
        }
        dx
    }
}

/// Channels a task of [`BnTrainBwd::dx`] takes: their planes over a batch of `n` images of
/// `hw` positions, about 64 K elements (512 KB of a bf16 step's operands), stay in the
/// core's L2 cache from the pass that sums them to the pass that writes their gradient,
/// which then reads them from there instead of memory.
fn channel_group(n: usize, hw: usize) -> usize {
    ((1 << 16) / (n * hw).max(1)).max(1)
}

/// `buf`, `(n, c, hw)` planes, as one slice per image for each group of `group` channels.
fn by_group<D>(buf: &mut [D], (c, hw): (usize, usize), group: usize) -> Vec<Vec<&mut [D]>> {
    let mut out: Vec<Vec<&mut [D]>> = (0..c.div_ceil(group)).map(|_| Vec::new()).collect();
    if c * hw > 0 {
        for img in buf.chunks_mut(c * hw) {
            for (o, part) in out.iter_mut().zip(img.chunks_mut(group * hw)) {
                o.push(part);
            }
        }
    }
    out
}

/// (sum g, sum g (x - mean)) of channel `ch` of `(n, c, hw)` planes, with g = dy, or with
/// `relu` dy where y > 0.
fn channel_sums<A: Copy, T: Widen<A>>(
    dy: &[T],
    y: &[A],
    x: &[A],
    (n, c, hw): (usize, usize, usize),
    ch: usize,
    mean: f64,
    relu: bool,
) -> (f64, f64) {
    let mut lanes: Lanes = ([0.0; 16], [0.0; 16]);
    let mean_t = T::from_f64(mean);
    for i in 0..n {
        let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
        let (dyb, xb) = (&dy[r.clone()], &x[r.clone()]);
        if relu {
            grad_sums::<A, T, true>(dyb, &y[r], xb, mean_t, &mut lanes);
        } else {
            grad_sums::<A, T, false>(dyb, xb, xb, mean_t, &mut lanes);
        }
    }
    (lanes.0.iter().sum(), lanes.1.iter().sum())
}

/// One block of dx = a * g + bx * x + c0 with g = dy, or with `relu` dy where y > 0.
#[inline]
fn dx_block<A: Copy, T: Widen<A>, D: GradOut<T>>(
    out: &mut [D],
    dy: &[T],
    y: &[A],
    x: &[A],
    (a, bx, c0): (T, T, T),
    relu: bool,
) {
    if relu {
        for (((o, d), yv), xv) in out.iter_mut().zip(dy).zip(y).zip(x) {
            let g = if T::widen(*yv) > T::zero() {
                *d
            } else {
                T::zero()
            };
            *o = D::from_grad(a * g + bx * T::widen(*xv) + c0);
        }
    } else {
        for ((o, d), xv) in out.iter_mut().zip(dy).zip(x) {
            *o = D::from_grad(a * *d + bx * T::widen(*xv) + c0);
        }
    }
}

impl_op3!(
    BnTrainBwd,
    "batch-norm-train-backward",
    "batchnorm(+relu) backward",
    saved
);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The input gradient and the parameters' sums by their definition, in float64, where
    /// the channels are split into several groups of tasks, the last one short (2 images of
    /// 128x128: two channels a group, five channels).
    #[test]
    fn channel_groups_give_the_gradient_of_the_definition() {
        let (n, c, hw) = (2, 5, 128 * 128);
        assert_eq!(channel_group(n, hw), 2);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let len = n * c * hw;
        let mut r = |s: f32| -> Vec<f32> { (0..len).map(|_| rng.random_range(-s..s)).collect() };
        let (x, y, dy) = (r(2.0), r(1.0), r(1.0));
        let gamma: Vec<f64> = (0..c).map(|ch| 0.5 + ch as f64 * 0.3).collect();
        let at = |i: usize, ch: usize| (i * c + ch) * hw..(i * c + ch + 1) * hw;
        let (mean, var): (Vec<f64>, Vec<f64>) = (0..c)
            .map(|ch| {
                let v: Vec<f64> = (0..n)
                    .flat_map(|i| x[at(i, ch)].iter().map(|&v| v as f64))
                    .collect();
                let m = v.iter().sum::<f64>() / v.len() as f64;
                (
                    m,
                    v.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / v.len() as f64,
                )
            })
            .unzip();
        for relu in [true, false] {
            let op = BnTrainBwd {
                eps: 1e-5,
                relu,
                dx16: false,
                gamma: gamma.clone(),
                stats: BatchStats {
                    mean: mean.clone(),
                    var: var.clone(),
                    count: n * hw,
                },
                sums: Arc::new(Mutex::new(None)),
            };
            let dx = op.dx::<f32, f32, f32>(&x, &y, &dy, (n, c, hw));
            let (sum_dy_xhat, sum_dy) = op.sums.lock().unwrap().take().unwrap();
            for ch in 0..c {
                let inv = 1.0 / (var[ch] + 1e-5).sqrt();
                let g = |i: usize, j: usize| {
                    let p = at(i, ch).start + j;
                    if relu && y[p] <= 0.0 {
                        0.0
                    } else {
                        dy[p] as f64
                    }
                };
                let xhat = |i: usize, j: usize| (x[at(i, ch).start + j] as f64 - mean[ch]) * inv;
                let pos = || (0..n).flat_map(|i| (0..hw).map(move |j| (i, j)));
                let s_g: f64 = pos().map(|(i, j)| g(i, j)).sum();
                let s_gx: f64 = pos().map(|(i, j)| g(i, j) * xhat(i, j)).sum();
                // Runs of 128 summed in float32: within 128 u of the sum of magnitudes.
                let bound = |f: &dyn Fn(usize, usize) -> f64| {
                    1e-5 * pos().map(|(i, j)| f(i, j).abs()).sum::<f64>()
                };
                let (e_g, e_gx) = ((sum_dy[ch] - s_g).abs(), (sum_dy_xhat[ch] - s_gx).abs());
                assert!(
                    e_g <= bound(&g),
                    "relu {relu} ch {ch}: {} against {s_g}",
                    sum_dy[ch]
                );
                let gx = |i, j| g(i, j) * xhat(i, j);
                assert!(
                    e_gx <= bound(&gx),
                    "relu {relu} ch {ch}: {} against {s_gx}",
                    sum_dy_xhat[ch]
                );
                let m = (n * hw) as f64;
                for (i, j) in pos() {
                    let want = gamma[ch] * inv / m * (m * g(i, j) - s_g - xhat(i, j) * s_gx);
                    let got = dx[at(i, ch).start + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "relu {relu}: dx of image {i}, channel {ch}, position {j}: {got} against {want}"
                    );
                }
            }
        }
    }
}

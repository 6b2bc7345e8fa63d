//! Training-mode BatchNorm's backward: the input gradient and the parameters' gradients from
//! the statistics of the forward, with per-channel sums in float64.
use super::{dims3, min_blocks, BatchStats, BnTrainFwd};
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
    fn dx<A: WithDType, T: Widen<A>, D: GradOut<T>>(
        &self,
        x: &[A],
        y: &[A],
        dy: &[T],
        (n, c, hw): (usize, usize, usize),
    ) -> Vec<D> {
        let st = &self.stats;
        let relu = self.relu;
        let inv_std: Vec<f64> = st.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let (sum_dy, sum_dy_xhat): (Vec<f64>, Vec<f64>) = (0..c)
            .into_par_iter()
            .map(|ch| {
                let mut lanes: Lanes = ([0.0; 16], [0.0; 16]);
                let mean_t = T::from_f64(st.mean[ch]);
                for i in 0..n {
                    let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                    let (dyb, xb) = (&dy[r.clone()], &x[r.clone()]);
                    if relu {
                        grad_sums::<A, T, true>(dyb, &y[r], xb, mean_t, &mut lanes);
                    } else {
                        grad_sums::<A, T, false>(dyb, xb, xb, mean_t, &mut lanes);
                    }
                }
                let (a, b) = (lanes.0.iter().sum::<f64>(), lanes.1.iter().sum::<f64>());
                (a, b * inv_std[ch])
            })
            .unzip();
        let m = st.count as f64;
        // dx = k * (m g - sum_dy - xhat * sum_dy_xhat), as a * g + bx * x + c0 per channel,
        // k = gamma / sigma / m, in the tensor's type (the sums above carry the precision).
        let coef: Vec<(T, T, T)> = (0..c)
            .map(|ch| {
                let k = self.gamma[ch] * inv_std[ch] / m;
                let a = k * m;
                let bx = -k * sum_dy_xhat[ch] * inv_std[ch];
                let c0 = -k * sum_dy[ch] - bx * st.mean[ch];
                (T::from_f64(a), T::from_f64(bx), T::from_f64(c0))
            })
            .collect();
        let mut dx = vec![D::zero(); x.len()];
        let hw1 = hw.max(1);
        dx.par_chunks_mut(hw1)
            .with_min_len(min_blocks(hw1))
            .enumerate()
            .for_each(|(blk, out)| {
                let (a, bx, c0) = coef[blk % c];
                let r = blk * hw..(blk + 1) * hw;
                let (dyb, yb, xb) = (&dy[r.clone()], &y[r.clone()], &x[r]);
                if relu {
                    for (((o, d), yv), xv) in out.iter_mut().zip(dyb).zip(yb).zip(xb) {
                        let g = if T::widen(*yv) > T::zero() {
                            *d
                        } else {
                            T::zero()
                        };
                        *o = D::from_grad(a * g + bx * T::widen(*xv) + c0);
                    }
                } else {
                    for ((o, d), xv) in out.iter_mut().zip(dyb).zip(xb) {
                        *o = D::from_grad(a * *d + bx * T::widen(*xv) + c0);
                    }
                }
            });
        if let Ok(mut s) = self.sums.lock() {
            *s = Some((sum_dy_xhat, sum_dy));
        }
        dx
    }
}

impl_op3!(
    BnTrainBwd,
    "batch-norm-train-backward",
    "batchnorm(+relu) backward",
    saved
);

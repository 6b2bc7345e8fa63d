//! Fused training-mode BatchNorm for the CPU, forward and backward, with per-channel sums
//! accumulated in float64.
//!
//! Why: the BatchNorm backward cancels most of its inputs (dy - mean(dy) - x̂·mean(dy·x̂)),
//! and candle's float32 reductions are sequential, so the plain tensor-op version loses three
//! to four digits on early layers (measured: 2.7e-4 relative error on ResNet-18 gradients
//! against torchvision's float64 answer, where PyTorch float32 is within 2.4e-6). Fusing also
//! saves the intermediate tensors of the op-by-op version.
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Batch statistics of one training forward, per channel.
#[derive(Debug, Clone)]
pub struct BatchStats {
    /// Mean.
    pub mean: Vec<f64>,
    /// Biased variance (divided by the element count), as used for normalising.
    pub var: Vec<f64>,
    /// Elements per channel (N * H * W).
    pub count: usize,
}

/// (N, C, rest...) -> (N, C, prod(rest)).
fn dims3(l: &Layout) -> Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 {
        candle_core::bail!("batch norm expects (N, C, ...), got {d:?}")
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("batch norm: {what} must be contiguous")))?;
    Ok(&s.as_slice::<T>()?[start..end])
}

/// y = (x - mean) / sqrt(var + eps) * gamma + beta with batch statistics.
struct BnTrainFwd {
    eps: f64,
    stats: Arc<Mutex<Option<BatchStats>>>,
}

fn channel_stats<T: WithDType>(x: &[T], n: usize, c: usize, hw: usize) -> (Vec<f64>, Vec<f64>) {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let blocks = (0..n).map(|i| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw]);
            let count = (n * hw) as f64;
            let mean = blocks.clone().flatten().map(|v| v.to_f64()).sum::<f64>() / count;
            let var = blocks
                .flatten()
                .map(|v| {
                    let d = v.to_f64() - mean;
                    d * d
                })
                .sum::<f64>()
                / count;
            (mean, var)
        })
        .unzip()
}

impl BnTrainFwd {
    fn run<T: WithDType>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, hw) = dims3(l1)?;
        let x = contiguous::<T>(s1, l1, "input")?;
        let gamma = contiguous::<T>(s2, l2, "weight")?;
        let beta = contiguous::<T>(s3, l3, "bias")?;
        let (mean, var) = channel_stats(x, n, c, hw);
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(hw).enumerate().for_each(|(blk, out)| {
            let ch = blk % c;
            let scale = gamma[ch].to_f64() / (var[ch] + self.eps).sqrt();
            let shift = beta[ch].to_f64() - mean[ch] * scale;
            for (o, v) in out.iter_mut().zip(&x[blk * hw..(blk + 1) * hw]) {
                *o = T::from_f64(v.to_f64() * scale + shift);
            }
        });
        if let Ok(mut s) = self.stats.lock() {
            *s = Some(BatchStats {
                mean,
                var,
                count: n * hw,
            });
        }
        Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
    }
}

impl CustomOp3 for BnTrainFwd {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => self.run::<f32>(s1, l1, s2, l2, s3, l3),
            CpuStorage::F64(_) => self.run::<f64>(s1, l1, s2, l2, s3, l3),
            _ => candle_core::bail!("batch norm: only f32 and f64 are supported"),
        }
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let stats = self
            .stats
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| candle_core::Error::Msg("batch norm: no statistics saved".into()))?;
        let sums = Arc::new(Mutex::new(None));
        let op = BnTrainBwd {
            eps: self.eps,
            stats,
            sums: sums.clone(),
        };
        let dx = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &op)?;
        let (dgamma, dbeta) =
            sums.lock().ok().and_then(|mut s| s.take()).ok_or_else(|| {
                candle_core::Error::Msg("batch norm: backward sums missing".into())
            })?;
        let dgamma =
            Tensor::from_vec(dgamma, gamma.dims(), gamma.device())?.to_dtype(gamma.dtype())?;
        let dbeta =
            Tensor::from_vec(dbeta, gamma.dims(), gamma.device())?.to_dtype(gamma.dtype())?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// dx = gamma / sigma / M * (M dy - sum(dy) - x̂ sum(dy x̂)); also d gamma = sum(dy x̂) and
/// d beta = sum(dy), left in `sums`.
struct BnTrainBwd {
    eps: f64,
    stats: BatchStats,
    #[allow(clippy::type_complexity)]
    sums: Arc<Mutex<Option<(Vec<f64>, Vec<f64>)>>>,
}

impl BnTrainBwd {
    fn run<T: WithDType>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, hw) = dims3(l1)?;
        let x = contiguous::<T>(s1, l1, "input")?;
        let gamma = contiguous::<T>(s2, l2, "weight")?;
        let dy = contiguous::<T>(s3, l3, "gradient")?;
        let st = &self.stats;
        let inv_std: Vec<f64> = st.var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let (sum_dy, sum_dy_xhat): (Vec<f64>, Vec<f64>) = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut a, mut b) = (0f64, 0f64);
                for i in 0..n {
                    let r = (i * c + ch) * hw..(i * c + ch + 1) * hw;
                    for (g, v) in dy[r.clone()].iter().zip(&x[r]) {
                        let g = g.to_f64();
                        a += g;
                        b += g * (v.to_f64() - st.mean[ch]) * inv_std[ch];
                    }
                }
                (a, b)
            })
            .unzip();
        let m = st.count as f64;
        let mut dx = vec![T::zero(); x.len()];
        dx.par_chunks_mut(hw).enumerate().for_each(|(blk, out)| {
            let ch = blk % c;
            let k = gamma[ch].to_f64() * inv_std[ch] / m;
            let r = blk * hw..(blk + 1) * hw;
            for ((o, g), v) in out.iter_mut().zip(&dy[r.clone()]).zip(&x[r]) {
                let xhat = (v.to_f64() - st.mean[ch]) * inv_std[ch];
                *o = T::from_f64(k * (m * g.to_f64() - sum_dy[ch] - xhat * sum_dy_xhat[ch]));
            }
        });
        if let Ok(mut s) = self.sums.lock() {
            *s = Some((sum_dy_xhat, sum_dy));
        }
        Ok((T::to_cpu_storage_owned(dx), l1.shape().clone()))
    }
}

impl CustomOp3 for BnTrainBwd {
    fn name(&self) -> &'static str {
        "batch-norm-train-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match s1 {
            CpuStorage::F32(_) => self.run::<f32>(s1, l1, s2, l2, s3, l3),
            CpuStorage::F64(_) => self.run::<f64>(s1, l1, s2, l2, s3, l3),
            _ => candle_core::bail!("batch norm: only f32 and f64 are supported"),
        }
    }
}

/// Training-mode BatchNorm of a contiguous CPU tensor; returns the output and the batch
/// statistics (for the running averages).
pub fn batch_norm_train_cpu(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    let stats = Arc::new(Mutex::new(None));
    let y = x.contiguous()?.apply_op3(
        gamma,
        beta,
        BnTrainFwd {
            eps,
            stats: stats.clone(),
        },
    )?;
    let s = stats
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| candle_core::Error::Msg("batch norm: statistics missing".into()))?;
    Ok((y, s))
}

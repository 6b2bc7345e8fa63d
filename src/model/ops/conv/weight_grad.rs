//! The convolution's weight gradient: dw = sum_n dy_n . col(x_n)^T, or its transpose where
//! the `gemm` crate runs that faster, per thread over a share of the batch, then summed.
use super::gemm::{matmul, Mat};
use super::im2col::{im2col_at, side_by_side};
use super::{fold, mixed, split, Geom};
use crate::model::ops::cpu_op::{contiguous, impl_op2, Act};
use crate::model::ops::precision::Precision;
use candle_core::{CpuStorage, Layout, Shape, WithDType};
use rayon::prelude::*;

/// Weight gradient: dw = sum_n dy_n . col(x_n)^T, applied to (x, dy).
pub(super) struct ConvBwdFilter(pub(super) Geom, pub(super) Precision);

impl ConvBwdFilter {
    fn precision(&self) -> Precision {
        self.1
    }

    fn run_bf16(&self, x: Act, dy: Act) -> candle_core::Result<(Vec<f32>, Shape)> {
        let g = self.0;
        let dw = mixed::weight_grad(&g, x, dy);
        Ok((dw, Shape::from((g.c_out, g.c_in, g.k, g.k))))
    }

    fn run<T: WithDType>(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ds: &CpuStorage,
        dl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let shape = Shape::from((g.c_out, g.c_in, g.k, g.k));
        // A float32 stride-1 "same" convolution on small images: no im2col
        // (`bf16/direct_grad_f32.rs`).
        #[cfg(target_arch = "x86_64")]
        if matches!(xs, CpuStorage::F32(_))
            && super::direct_route::fits::<f32>(&g)
            && g.in_len() <= DIRECT_VALUES
        {
            let (x, dy) = (
                contiguous::<f32>(xs, xl, "conv input")?,
                contiguous::<f32>(ds, dl, "conv gradient")?,
            );
            let (shape_x, out) = ((g.n, g.c_in, g.h, g.w), (g.c_out, g.k));
            let t = rayon::current_num_threads();
            let dw = super::bf16::direct_grad_f32::weight_grad(x, dy, shape_x, out, t);
            return Ok((CpuStorage::F32(dw), shape));
        }
        let (x, dy) = (
            contiguous::<T>(xs, xl, "conv input")?,
            contiguous::<T>(ds, dl, "conv gradient")?,
        );
        let wlen = g.c_out * g.kk();
        let (workers, par) = split(g.n);
        let per = g.n.div_ceil(workers);
        let (p, kk, chunk) = (g.p(), g.kk(), fold(&g, per));
        let transposed = transposed_filter_grad(&g);
        let partial: Vec<Vec<T>> = (0..workers)
            .into_par_iter()
            .map(|t| {
                let mut acc = vec![T::zero(); wlen];
                let (mut col, mut dyc) = (Vec::new(), Vec::new());
                let (start, end) = (t * per, ((t + 1) * per).min(g.n));
                for first in (start..end).step_by(chunk) {
                    let c = chunk.min(end - first);
                    let ld = c * p;
                    let xs = &x[first * g.in_len()..(first + c) * g.in_len()];
                    let cols = if g.direct() && c == 1 {
                        Mat::rm(xs, kk, p)
                    } else if g.direct() {
                        side_by_side(&mut col, xs, g.c_in, p, c);
                        Mat::rm(&col, kk, ld)
                    } else {
                        col.resize(kk * ld, T::zero());
                        for j in 0..c {
                            let k = g.k;
                            let xi = &xs[j * g.in_len()..][..g.in_len()];
                            im2col_at(&g, xi, (0, p), &mut col, (ld, j * p), |c, kh, kw| {
                                (c * k + kh) * k + kw
                            });
                        }
                        Mat::rm(&col, kk, ld)
                    };
                    let dys = &dy[first * g.out_len()..(first + c) * g.out_len()];
                    let dym = if c == 1 {
                        Mat::rm(dys, g.c_out, p)
                    } else {
                        side_by_side(&mut dyc, dys, g.c_out, p, c);
                        Mat::rm(&dyc, g.c_out, ld)
                    };
                    if transposed {
                        matmul(&mut acc, first > start, cols, dym.t(), par);
                    } else {
                        matmul(&mut acc, first > start, dym, cols.t(), par);
                    }
                }
                acc
            })
            .collect();
        let dw = if transposed {
            sum_transposed(&partial, kk, g.c_out)
        } else {
            let mut parts = partial.into_iter();
            let mut dw = parts.next().unwrap_or_else(|| vec![T::zero(); wlen]);
            for p in parts {
                dw.par_iter_mut().zip(&p).for_each(|(a, b)| *a += *b);
            }
            dw
        };
        Ok((T::to_cpu_storage_owned(dw), shape))
    }
}

/// Input values per image up to which a float32 weight gradient that fits the direct route
/// takes it. Measured on ResNet's 3x3 convolutions, batch 32, 2 threads, Zen 5 (speed.md):
/// the direct route took 0.72-0.98x the im2col route's time from 64 channels of 32x32 down
/// (65536 values), 1.04-1.07x at 128 channels of 28x28 and 1.17-1.21x at 64 of 56x56, where
/// laying out its operands is a fifth of its time and the transposed im2col product runs
/// near the kernel's peak.
#[cfg(target_arch = "x86_64")]
const DIRECT_VALUES: usize = 1 << 16;

/// Whether the weight gradient is computed as its transpose, dw^T = col . dy^T (kk x c_out),
/// rather than dw = dy . col^T: measured with the `gemm` crate on this project's CPU
/// (2 threads, batch 32), the transposed product runs 1.3-3x faster where the result is
/// taller than wide and fits in L2 (ResNet-18 at 128 px: stem 63 -> 122 GFLOP/s, first
/// 3x3 layers 71 -> 210), and slower on the deep 3x3 layers and on 1x1 layers that widen
/// (ResNet-50's 64 -> 256: 372 -> 211).
fn transposed_filter_grad(g: &Geom) -> bool {
    const L2_ELEMENTS: usize = 1 << 19;
    g.c_out < g.kk() && g.kk() * g.c_out <= L2_ELEMENTS
}

/// `sum_t parts[t]^T`: each part `rows x cols` row-major, the result `cols x rows`, in
/// blocks of 16 result rows (one cache line of each part's row) across threads.
pub(super) fn sum_transposed<T: WithDType>(parts: &[Vec<T>], rows: usize, cols: usize) -> Vec<T> {
    const B: usize = 16;
    let mut out = vec![T::zero(); rows * cols];
    out.par_chunks_mut(B * rows)
        .enumerate()
        .for_each(|(blk, o)| {
            let c0 = blk * B;
            let w = o.len() / rows;
            for part in parts {
                for (i, row) in part.chunks_exact(cols).enumerate() {
                    for (j, v) in row[c0..c0 + w].iter().enumerate() {
                        o[j * rows + i] += *v;
                    }
                }
            }
        });
    out
}

impl_op2!(
    ConvBwdFilter,
    "conv2d-gemm-bwd-filter",
    "conv weight gradient",
    bf16 "conv weight gradient (bf16)"
);

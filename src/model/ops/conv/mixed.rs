//! The convolution's three products in bfloat16 mixed precision (float32 tensors in and out,
//! operands rounded to bf16, float32 accumulation; see `model::precision`). Same shapes and
//! work split as the float32 ops in `mod.rs`; several images' columns side by side make one
//! product wherever an image has few output positions, in the forward too (bit-exactness
//! with candle, which the float32 training forward keeps, has no meaning here). Safe code.
#[cfg(target_arch = "x86_64")]
use super::bf16::direct_grad;
use super::bf16::{product, FillRow16, PackedA, Right};
#[cfg(target_arch = "x86_64")]
use super::direct_route;
use super::gemm::Mat;
use super::im2col::{apart, im2col_row, side_by_side};
use super::{fold, split, Geom};
use crate::model::ops::cpu_op::{Act, Widen};
use candle_core::WithDType;
use half::bf16;
use rayon::prelude::*;

/// GEMM threads per product from the batch split.
pub(super) fn threads(n: usize) -> (usize, usize) {
    let (workers, par) = split(n);
    let t = match par {
        ::gemm::Parallelism::Rayon(t) => t.max(1),
        _ => 1,
    };
    (workers, t)
}

/// Row `l`, columns `j0..j0 + out.len()` of the im2col matrix of the images `xs` side by
/// side (column `j` is image `j / p`, position `j % p`).
fn im2col_fill<S: Copy, T: Widen<S>>(g: &Geom, xs: &[S], l: usize, j0: usize, out: &mut [T]) {
    let (p, k, hw) = (g.p(), g.k, g.h * g.w);
    let (ci, kh, kw) = (l / (k * k), (l / k) % k, l % k);
    let (mut j, mut o) = (j0, 0);
    while o < out.len() {
        let (img, t) = (j / p, j % p);
        let run = (p - t).min(out.len() - o);
        let plane = &xs[img * g.in_len() + ci * hw..][..hw];
        if g.direct() {
            for (d, v) in out[o..o + run].iter_mut().zip(&plane[t..t + run]) {
                *d = T::widen(*v);
            }
        } else {
            im2col_row(g, plane, (kh, kw), t, &mut out[o..o + run]);
        }
        o += run;
        j += run;
    }
}

/// [`im2col_fill`] of images `first..first + c` of the bf16 activation `x`, made in bf16.
fn im2col_fill16<'a>(
    g: &'a Geom,
    x: &'a [bf16],
    first: usize,
    c: usize,
) -> impl Fn(usize, usize, &mut [bf16]) + Sync + 'a {
    let xs = &x[first * g.in_len()..(first + c) * g.in_len()];
    move |l, j0, out| im2col_fill(g, xs, l, j0, out)
}

/// Forward: y = conv(x, w), `x` float32 or a bf16 activation; `packed` is `w` already
/// packed, when the caller has it. A `training` forward (whose weight changes every step,
/// so is never kept packed) runs as a direct convolution where that is faster.
pub(super) fn forward(
    g: &Geom,
    x: Act,
    w: &[f32],
    packed: Option<&PackedA>,
    training: bool,
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if training && direct_fits(g) && g.p() >= direct_route::FORWARD_POSITIONS {
        return match x {
            Act::F32(x) => direct_route::forward::<u32, _>(g, x, w),
            Act::Bf16(x) => direct_route::forward::<u32, _>(g, x, w),
        };
    }
    let own;
    let a = match packed {
        Some(a) => a,
        None => {
            own = PackedA::new(Mat::rm(w, g.c_out, g.kk()));
            &own
        }
    };
    assert_eq!(
        (a.rows(), a.cols()),
        (g.c_out, g.kk()),
        "packed weight's shape"
    );
    match x {
        Act::F32(x) => forward_of(g, x, Some(x), None, a),
        Act::Bf16(x) => forward_of(g, x, None, Some(x), a),
    }
}

/// [`forward`] of `x`, which is `x32` or `x16` when given (then a 1x1 stride-1 convolution
/// reads `x32` as its matrix, with no im2col, and the im2col rows of `x16` are packed from
/// its bf16 values as they are).
fn forward_of<S: Copy + Sync>(
    g: &Geom,
    x: &[S],
    x32: Option<&[f32]>,
    x16: Option<&[bf16]>,
    a: &PackedA,
) -> Vec<f32>
where
    f32: Widen<S>,
{
    let (_, par) = threads(g.n);
    let p = g.p();
    per_chunk(g, |first, c, dst| {
        let xs = &x[first * g.in_len()..(first + c) * g.in_len()];
        if let Some(x32) = x32.filter(|_| c == 1 && g.direct()) {
            let xs = &x32[first * g.in_len()..][..g.in_len()];
            return product(dst, p, false, a, Mat::rm(xs, g.kk(), p), par);
        }
        // The im2col matrix is made pair of rows by pair of rows as it is packed.
        let fill = |l: usize, j0: usize, out: &mut [f32]| im2col_fill(g, xs, l, j0, out);
        let fill16 = x16.map(|x| im2col_fill16(g, x, first, c));
        let b = Right::Rows {
            rows: g.kk(),
            cols: c * p,
            fill: &fill,
            fill16: fill16.as_ref().map(|f| f as FillRow16<'_>),
        };
        product(dst, c * p, false, a, b, par)
    })
}

/// The output of the batch, made in chunks of images (several side by side where an image
/// has few positions, in each share of the batch): `run(first, c, dst)` writes the
/// `c_out x (c * p)` result of images `first..first + c` side by side into `dst`, which is
/// their own output when `c` is 1.
pub(super) fn per_chunk(g: &Geom, run: impl Fn(usize, usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut y = vec![0.0f32; g.n * g.out_len()];
    let (workers, _) = threads(g.n);
    let per = g.n.div_ceil(workers);
    let (p, chunk) = (g.p(), fold(g, per));
    y.par_chunks_mut(per * g.out_len())
        .enumerate()
        .for_each(|(t, ys)| {
            let mut out = Vec::new();
            let imgs = ys.len() / g.out_len();
            for c0 in (0..imgs).step_by(chunk) {
                let c = chunk.min(imgs - c0);
                let yc = &mut ys[c0 * g.out_len()..(c0 + c) * g.out_len()];
                if c == 1 {
                    run(t * per + c0, 1, yc);
                    continue;
                }
                out.resize(g.c_out * c * p, 0.0);
                run(t * per + c0, c, &mut out);
                apart(yc, &out, g.c_out, p);
            }
        });
    y
}

/// Whether a convolution runs as a direct bf16 one (`direct_route.rs`).
#[cfg(target_arch = "x86_64")]
fn direct_fits(g: &Geom) -> bool {
    direct_route::fits::<u32>(g)
}

/// Input gradient: dx = col2im(w^T . dy); for a direct convolution, the direct convolution
/// of dy by w with its channels swapped and its taps reversed. `dy` is float32 or bf16 (the
/// same products: a float32 `dy` is rounded to bf16 as it is packed).
pub(super) fn input_grad(g: &Geom, dy: Act, w: &[f32]) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if direct_fits(g) {
        return match dy {
            Act::F32(dy) => direct_route::input_grad::<u32, _>(g, dy, w),
            Act::Bf16(dy) => direct_route::input_grad::<u32, _>(g, dy, w),
        };
    }
    let a = PackedA::new(Mat::tr(w, g.c_out, g.kk()));
    let (_, par) = threads(g.n);
    match dy {
        Act::F32(dy) => {
            super::input_grad_by(g, dy, |dst, b| product(dst, b.cols(), false, &a, b, par))
        }
        Act::Bf16(dy) => {
            super::input_grad_by(g, dy, |dst, b| product(dst, b.cols(), false, &a, b, par))
        }
    }
}

/// Weight gradient: for a direct convolution, `bf16/direct_grad.rs` (no im2col: each tap's
/// right operand is the input's rows of position pairs read at a shift); otherwise
/// dw = sum_n dy_n . col(x_n)^T, computed transposed as dw^T = sum_n col(x_n) . dy_n^T so
/// that the im2col matrix is made row by row while it is packed (never written whole). `dy`
/// is float32 or bf16, as in [`input_grad`].
pub(super) fn weight_grad(g: &Geom, x: Act, dy: Act) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if direct_fits(g) {
        let (shape, out) = ((g.n, g.c_in, g.h, g.w), (g.c_out, g.k));
        let t = rayon::current_num_threads();
        return match (x, dy) {
            (Act::F32(x), Act::F32(dy)) => direct_grad::weight_grad(x, dy, shape, out, t),
            (Act::F32(x), Act::Bf16(dy)) => direct_grad::weight_grad(x, dy, shape, out, t),
            (Act::Bf16(x), Act::F32(dy)) => direct_grad::weight_grad(x, dy, shape, out, t),
            (Act::Bf16(x), Act::Bf16(dy)) => direct_grad::weight_grad(x, dy, shape, out, t),
        };
    }
    match (x, dy) {
        (Act::F32(x), Act::F32(dy)) => weight_grad_of(g, x, None, dy),
        (Act::F32(x), Act::Bf16(dy)) => weight_grad_of(g, x, None, dy),
        (Act::Bf16(x), Act::F32(dy)) => weight_grad_of(g, x, Some(x), dy),
        (Act::Bf16(x), Act::Bf16(dy)) => weight_grad_of(g, x, Some(x), dy),
    }
}

/// [`weight_grad`] of `x`, which is `x16` when given (its im2col rows then packed from its
/// bf16 values as they are).
fn weight_grad_of<S: Copy + Sync, D: WithDType>(
    g: &Geom,
    x: &[S],
    x16: Option<&[bf16]>,
    dy: &[D],
) -> Vec<f32>
where
    f32: Widen<S>,
    for<'m> Mat<'m, D>: Into<Right<'m>>,
{
    let (kk, co) = (g.kk(), g.c_out);
    let (workers, par) = threads(g.n);
    let per = g.n.div_ceil(workers);
    let (p, chunk) = (g.p(), fold(g, per));
    let partial: Vec<Vec<f32>> = (0..workers)
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0.0f32; kk * co];
            let mut dyc = Vec::new();
            let (start, end) = (t * per, ((t + 1) * per).min(g.n));
            for first in (start..end).step_by(chunk) {
                let c = chunk.min(end - first);
                let ld = c * p;
                let xs = &x[first * g.in_len()..(first + c) * g.in_len()];
                let fill = |l: usize, j0: usize, out: &mut [f32]| im2col_fill(g, xs, l, j0, out);
                let fill16 = x16.map(|x| im2col_fill16(g, x, first, c));
                let a =
                    PackedA::from_rows(kk, ld, &fill, fill16.as_ref().map(|f| f as FillRow16<'_>));
                let dys = &dy[first * g.out_len()..(first + c) * g.out_len()];
                let b = if c == 1 {
                    Mat::tr(dys, co, p)
                } else {
                    side_by_side(&mut dyc, dys, co, p, c);
                    Mat::tr(&dyc, co, ld)
                };
                product(&mut acc, co, first > start, &a, b, par);
            }
            acc
        })
        .collect();
    // Sum the threads' parts and transpose (kk x c_out -> c_out x kk).
    let mut parts = partial.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![0.0; kk * co]);
    for p in parts {
        sum.par_iter_mut().zip(&p).for_each(|(a, b)| *a += *b);
    }
    let mut dw = vec![0.0f32; co * kk];
    dw.par_chunks_mut(kk).enumerate().for_each(|(o, row)| {
        for (l, v) in row.iter_mut().enumerate() {
            *v = sum[l * co + o];
        }
    });
    dw
}

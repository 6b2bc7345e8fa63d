//! The one convolution layer every model uses, so that its kernel can be swapped without
//! touching the ResNet code.
//!
//! On the CPU, float32/float64 convolutions run as large matrix products (im2col + GEMM) with
//! the `gemm` crate, in both directions of autograd: candle's own CPU backward uses a
//! naive loop for the input gradient (`conv_transpose2d`) and a convolution with a huge kernel
//! for the weight gradient, which made a ResNet-50 training step 4-8x slower than PyTorch.
//! Per image `n` (P = OH*OW output positions, K = C_in*k*k):
//!   forward         Y_n[C_out x P]  = W[C_out x K] . col(X_n)[K x P]
//!   input gradient  dX_n            = col2im(W^T[K x C_out] . dY_n[C_out x P])
//!   weight gradient dW[C_out x K]  += dY_n[C_out x P] . col(X_n)^T[P x K]
//!                   (or its transpose, where the `gemm` crate runs that faster)
//! A 1x1 stride-1 convolution needs no im2col: `col(X_n)` is `X_n` itself. Work is split over
//! the images of the batch (one thread each, single-threaded GEMMs, a private weight-gradient
//! accumulator per thread); a batch smaller than the thread count uses GEMM's own threads.
//! On a CPU with AVX-512 the float32 stride-1 "same" convolutions (a ResNet block's 3x3 but
//! a stage's first) take a direct route with no im2col (`direct_route.rs`) for the input
//! gradient, the weight gradient of small images and the inference forward of large ones;
//! the float32 training forward keeps candle's products (see `ConvFwd::run`).
//!
//! Candle's stock convolution stays selectable (a model's `Compute`; `COVID_RESNET_CONV=stock`
//! at start-up, `bench --conv stock`) to compare the two; CUDA and Metal always use their own
//! kernels.
//!
//! In bf16 mixed precision (`ops::precision`) the same three ops take float32 tensors, or
//! an input stored in bf16 by the training forward, and multiply their operands rounded to
//! bfloat16, accumulating in float32 (`mixed.rs`); outputs and gradients are float32.
//!
//! Layout: this file holds the forward and input-gradient ops (safe code; the layer with its
//! weight is `layers::conv`); `weight_grad.rs` the weight-gradient op; `im2col.rs` the patch
//! matrices; `mixed.rs` the bf16 products of the three ops (safe); `direct_route.rs` which
//! convolutions run direct, in both precisions (safe); `packed.rs` the weights a predicting
//! model keeps packed for bf16; `gemm.rs` (float32/64) and `bf16/` (the bf16 GEMM and its
//! packing, and the AVX-512 direct convolutions of both precisions) every unsafe line, behind
//! checked interfaces.
mod bf16;
#[cfg(target_arch = "x86_64")]
mod direct_route;
mod gemm;
mod geom;
mod im2col;
mod mixed;
mod packed;
#[cfg(test)]
mod tests;
mod weight_grad;

use super::pass::Pass;
use super::precision::Precision;
use crate::model::ops::cpu_op::{contiguous, impl_op2, run_mixed, Act};
use ::gemm::Parallelism;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, TensorId, WithDType};
use gemm::{matmul, tiled_products, Mat};
use geom::Geom;
use im2col::{apart, col2im, im2col, side_by_side, weight_khwc};
use rayon::prelude::*;
use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use weight_grad::ConvBwdFilter;

pub use bf16::native as bf16_native;
pub use bf16::{choose as bf16_choice, kernel as bf16_kernel, Kernel as Bf16Kernel};
pub use packed::PackedWeights;

/// Whether this CPU runs the float32 stride-1 "same" convolutions' direct route (AVX-512 F
/// and BW; `direct_route.rs`).
pub fn f32_direct() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use bf16::direct::Word;
        <f32 as Word>::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Which kernel runs CPU convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvImpl {
    /// Our im2col + GEMM custom ops (the default).
    Gemm,
    /// candle's own `conv2d` and its autograd.
    Stock,
}

impl std::fmt::Display for ConvImpl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvImpl::Gemm => "gemm",
            ConvImpl::Stock => "stock",
        })
    }
}

/// `x` (N, C_in, H, W) convolved with `w` (C_out, C_in, k, k), square stride and zero padding,
/// with the kernel, precision and gradient keeping of `pass`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    pass: &Pass<'_>,
) -> candle_core::Result<Tensor> {
    conv2d_of(x, w, None, stride, padding, pass)
}

/// [`conv2d`] with `w` the value of the parameter `param`: a bf16 pass without gradients
/// that carries [`PackedWeights`] takes the weight packed from there.
pub fn conv2d_of(
    x: &Tensor,
    w: &Tensor,
    param: Option<TensorId>,
    stride: usize,
    padding: usize,
    pass: &Pass<'_>,
) -> candle_core::Result<Tensor> {
    use candle_core::DType;
    // A bf16 input is an activation stored by the bf16 training forward (`ops::batch_norm`).
    let ours = x.device().is_cpu()
        && match (x.dtype(), w.dtype()) {
            (DType::F32, DType::F32) | (DType::F64, DType::F64) => true,
            (DType::BF16, DType::F32) => pass.precision() == Precision::Bf16,
            _ => false,
        }
        && pass.compute.kernel == ConvImpl::Gemm;
    if !ours {
        if pass.taping() {
            return Err(super::tape::unsupported("conv"));
        }
        let _p = super::prof::scope("conv forward (stock)");
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let (n, c_in, h, wd) = x.dims4()?;
    let (_, wc, kh, kw) = w.dims4()?;
    if n == 0
        || wc != c_in
        || kh != kw
        || stride == 0
        || h + 2 * padding < kh
        || wd + 2 * padding < kw
    {
        // An empty batch, or a shape candle reports as an error.
        if pass.taping() {
            return Err(super::tape::unsupported("conv"));
        }
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let g = Geom::new(x.dims(), w.dims(), stride, padding);
    // Kept packed weights serve only a bf16 forward that takes no gradient.
    let bf16_inference =
        !pass.grad_on() && pass.precision() == Precision::Bf16 && w.dtype() == DType::F32;
    let packed = match (pass.packed, param) {
        (Some(set), Some(id)) if bf16_inference => Some(set.get(id, w)?),
        _ => None,
    };
    let op = ConvFwd {
        g,
        inference: !pass.grad_on(),
        prec: pass.precision(),
        packed,
    };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    if !pass.taping() {
        return x.apply_op2(&w, op);
    }
    let y = x.apply_op2_no_bwd(&w, &op)?;
    let (xs, ws) = (x.clone(), w.clone());
    pass.push([&x, &w], &y, move |dy, want| {
        Ok(super::tape::grads2(
            op.grads(&xs, &ws, dy, want[0], want[1])?,
            want,
        ))
    });
    Ok(y)
}

/// Threads for the batch loop and for each GEMM.
fn split(n: usize) -> (usize, Parallelism) {
    let t = rayon::current_num_threads().max(1);
    if n >= t || t == 1 {
        (t.min(n).max(1), Parallelism::None)
    } else {
        (n.max(1), Parallelism::Rayon(t / n.max(1)))
    }
}

/// Images per product in the backward: several images' columns side by side make one
/// larger product where an image has few output positions (the deep layers), within
/// about 16 MB of scratch per thread.
fn fold(g: &Geom, per: usize) -> usize {
    const BUDGET: usize = 1 << 22;
    const COLUMNS: usize = 512;
    let by_size = BUDGET / (g.kk().max(g.c_out) * g.p()).max(1);
    COLUMNS.div_ceil(g.p()).min(by_size).clamp(1, per.max(1))
}

/// Runs `f` with scratch space for one im2col matrix (empty when the input is its own).
fn with_scratch<T: WithDType, R>(g: &Geom, f: impl FnOnce(&mut [T]) -> R) -> R {
    thread_local! {
        /// One im2col buffer per thread and element type, kept between calls: every
        /// element is written before it is read, so a new zeroed buffer (tens of MB of
        /// memset per image at 224 px, on one thread) would be wasted work.
        static SCRATCH: RefCell<HashMap<TypeId, Box<dyn Any>>> = RefCell::new(HashMap::new());
    }
    let len = if g.direct() { 0 } else { g.kk() * g.p() };
    SCRATCH.with(|s| {
        // A thread that waits inside a product may run another convolution's task (rayon
        // steals work): that one gets a buffer of its own.
        let Ok(mut s) = s.try_borrow_mut() else {
            return f(&mut vec![T::zero(); len]);
        };
        let buf = s
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(Vec::<T>::new()))
            .downcast_mut::<Vec<T>>()
            .expect("the buffer stored under T's TypeId is a Vec<T>");
        if buf.len() < len {
            buf.resize(len, T::zero());
        }
        f(&mut buf[..len])
    })
}

/// Output positions per forward GEMM for kernels larger than 1x1 (candle's tile).
const TILE: usize = 512;

/// Forward of a strided 1x1 convolution (the downsampling shortcut) as candle computes it,
/// so that its output too is candle's bit for bit: one product (N*P x C_in) . W^T over the
/// whole batch, then a transpose into (N, C_out, P).
fn forward_1x1_strided<T: WithDType>(g: &Geom, x: &[T], w: &[T]) -> Vec<T> {
    let (p, c, hw) = (g.p(), g.c_in, g.h * g.w);
    let mut col = vec![T::zero(); g.n * p * c];
    col.par_chunks_mut(p * c).enumerate().for_each(|(i, ci)| {
        let xi = &x[i * g.in_len()..][..g.in_len()];
        for (t, row) in ci.chunks_exact_mut(c).enumerate() {
            let iy = ((t / g.ow) * g.stride) as isize - g.pad as isize;
            let ix = ((t % g.ow) * g.stride) as isize - g.pad as isize;
            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                continue; // padding: the row stays zero
            }
            let at = iy as usize * g.w + ix as usize;
            for (ch, v) in row.iter_mut().enumerate() {
                *v = xi[ch * hw + at];
            }
        }
    });
    let mut prod = vec![T::zero(); g.n * p * g.c_out];
    let threads = rayon::current_num_threads();
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    matmul(
        &mut prod,
        false,
        Mat::rm(&col, g.n * p, c),
        Mat::tr(w, g.c_out, c),
        par,
    );
    let mut y = vec![T::zero(); g.n * g.out_len()];
    y.par_chunks_mut(g.out_len())
        .zip(prod.par_chunks(p * g.c_out))
        .for_each(|(yi, pi)| {
            for (t, row) in pi.chunks_exact(g.c_out).enumerate() {
                for (o, v) in row.iter().enumerate() {
                    yi[o * p + t] = *v;
                }
            }
        });
    y
}

/// Whether several images in one forward product give the bits of one product per image
/// (the tiled path), read from the `gemm` crate (0.19) and held to it by
/// `grouped_forward_is_bit_identical_to_candle_stock`. Its general path sums each output
/// over the inner dimension K in blocks whose size depends on K alone (`kernel_params`),
/// so more columns change no rounding, except that products of at most 64 x 64 outputs sum
/// in blocks of 512 (the same only where K <= 512). It has other kernels, with other orders,
/// for products of one column (matrix-vector), of at most 256 outputs and of K <= 2: an
/// image whose product would take one of those stays alone.
fn grouping_keeps_bits(g: &Geom) -> bool {
    let (p, co, kk) = (g.p(), g.c_out, g.kk());
    let general = p >= 2 && co >= 2 && p * co > 256 && kk > 2;
    general && p < TILE && (p > 64 || co > 64 || kk <= 512)
}

/// The training forward of images with few output positions (the deep layers, see
/// [`grouping_keeps_bits`]): `group` images' im2col matrices side by side make one
/// product, which turns one image's 16-64 columns (too few for the GEMM's widest kernel,
/// with the operands packed again for each image) into one wide product. `w_khwc` is the
/// weight in the tiled path's (C_out, k, k, C_in) order.
fn forward_grouped<T: WithDType>(g: &Geom, x: &[T], w_khwc: &[T], group: usize, y: &mut [T]) {
    let (p, kk, co) = (g.p(), g.kk(), g.c_out);
    let a = Mat::rm(w_khwc, co, kk);
    y.par_chunks_mut(group * g.out_len())
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(col, out), (gi, ys)| {
                let c = ys.len() / g.out_len();
                let ld = c * p;
                col.resize(kk * ld, T::zero());
                for j in 0..c {
                    let xi = &x[(gi * group + j) * g.in_len()..][..g.in_len()];
                    im2col::im2col_at(g, xi, (0, p), col, (ld, j * p), |ch, kh, kw| {
                        im2col::khwc(g, ch, kh, kw)
                    });
                }
                out.resize(co * ld, T::zero());
                matmul(out, false, a, Mat::rm(col, kk, ld), Parallelism::None);
                apart(ys, out, co, p);
            },
        );
}

/// Forward: y = conv(x, w).
struct ConvFwd {
    g: Geom,
    /// No gradient will be taken (any product order will do).
    inference: bool,
    /// The precision of this forward and its backward (bf16 applies to float32 tensors).
    prec: Precision,
    /// The weight already packed for a bf16 forward (see [`PackedWeights`]).
    packed: Option<Arc<bf16::PackedA>>,
}

impl ConvFwd {
    fn precision(&self) -> Precision {
        self.prec
    }

    fn run_bf16(&self, x: Act, w: Act) -> candle_core::Result<(Vec<f32>, Shape)> {
        let w = w.f32("conv weight")?;
        Ok((
            mixed::forward(&self.g, x, w, self.packed.as_deref(), !self.inference),
            self.g.out_shape(),
        ))
    }

    fn run<T: WithDType>(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.g;
        let (x, w) = (
            contiguous::<T>(xs, xl, "conv input")?,
            contiguous::<T>(ws, wl, "conv weight")?,
        );
        // Inference (no gradient will flow back): one product per image over the whole
        // im2col matrix, which is faster (batch 1: 23 against 18 images/s for ResNet-50 at
        // 224 px). Otherwise candle's own products, bit for bit (below).
        let fast = self.inference;
        // Inference on enough positions: a direct convolution (no im2col; `direct_route`).
        #[cfg(target_arch = "x86_64")]
        if fast && matches!(xs, CpuStorage::F32(_)) && direct_route::infers(&g) {
            let (x, w) = (
                contiguous::<f32>(xs, xl, "conv input")?,
                contiguous::<f32>(ws, wl, "conv weight")?,
            );
            let y = direct_route::forward::<f32, f32>(&g, x, w);
            return Ok((CpuStorage::F32(y), g.out_shape()));
        }
        if g.k == 1 && !g.direct() && !fast {
            let y = forward_1x1_strided(&g, x, w);
            return Ok((T::to_cpu_storage_owned(y), g.out_shape()));
        }
        let mut y = vec![T::zero(); g.n * g.out_len()];
        let (workers, par) = split(g.n);
        let per = g.n.div_ceil(workers);
        if g.k > 1 && !fast {
            // Tiles of candle's size are the unit of work: batch 1 still uses every thread.
            // The patch is in (kh, kw, c) order, so the products are candle's, in candle's
            // order, and the output is candle's bit for bit. That matters beyond taste:
            // ReLU and max-pool decisions follow the forward's rounding, and a different but
            // equally accurate rounding flipped one of them on the torchvision fixture.
            let w_khwc = weight_khwc(&g, w);
            let group = if grouping_keeps_bits(&g) {
                fold(&g, per)
            } else {
                1
            };
            if group > 1 {
                forward_grouped(&g, x, &w_khwc, group, &mut y);
                return Ok((T::to_cpu_storage_owned(y), g.out_shape()));
            }
            tiled_products(
                &mut y,
                g.n,
                g.p(),
                TILE,
                Mat::rm(&w_khwc, g.c_out, g.kk()),
                |i, t0, n, col| {
                    let xi = &x[i * g.in_len()..][..g.in_len()];
                    col.resize(n * g.kk(), T::zero());
                    im2col::im2col_range(&g, xi, (t0, n), col, |c, kh, kw| {
                        im2col::khwc(&g, c, kh, kw)
                    });
                },
            );
            return Ok((T::to_cpu_storage_owned(y), g.out_shape()));
        }
        y.par_chunks_mut(per * g.out_len())
            .enumerate()
            .for_each(|(t, ys)| {
                with_scratch::<T, _>(&g, |col| {
                    for (i, yi) in ys.chunks_exact_mut(g.out_len()).enumerate() {
                        let xi = &x[(t * per + i) * g.in_len()..][..g.in_len()];
                        let b = if g.direct() {
                            Mat::rm(xi, g.kk(), g.p())
                        } else {
                            match par {
                                Parallelism::None => im2col(&g, xi, col),
                                _ => im2col::im2col_par(&g, xi, col),
                            }
                            Mat::rm(col, g.kk(), g.p())
                        };
                        matmul(yi, false, Mat::rm(w, g.c_out, g.kk()), b, par);
                    }
                })
            });
        Ok((T::to_cpu_storage_owned(y), g.out_shape()))
    }
}

impl CustomOp2 for ConvFwd {
    fn name(&self) -> &'static str {
        "conv2d-gemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        run_mixed!(self, "conv", "conv forward", "conv forward (bf16)"; s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // An input image (no op, not a variable) needs no gradient: skip the largest product
        // of the stem. A frozen weight is read detached: no weight-gradient product.
        self.grads(x, w, grad, x.track_op(), w.track_op())
    }
}

impl ConvFwd {
    /// The input and weight gradients for the output gradient `grad`, each only if wanted
    /// (the autograd op above and the taped backward, `model::tape`).
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        want_x: bool,
        want_w: bool,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if want_x {
            Some(grad.apply_op2_no_bwd(w, &ConvBwdData(self.g, self.prec))?)
        } else {
            None
        };
        let dw = if want_w {
            Some(x.apply_op2_no_bwd(&grad, &ConvBwdFilter(self.g, self.prec))?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// The input gradient dx = col2im(w^T . dy) of every image of `dy`, where `mul(dst, b)`
/// writes `w^T . b` into `dst` (row-major, `b`'s columns): the work split and the folding of
/// images, shared by the float32 and the bf16 products (whose `dy` may be bf16).
fn input_grad_by<T: WithDType, D: WithDType>(
    g: &Geom,
    dy: &[D],
    mul: impl Fn(&mut [T], Mat<'_, D>) + Sync,
) -> Vec<T> {
    let mut dx = vec![T::zero(); g.n * g.in_len()];
    let (workers, _) = split(g.n);
    let per = g.n.div_ceil(workers);
    let (p, kk, chunk) = (g.p(), g.kk(), fold(g, per));
    dx.par_chunks_mut(per * g.in_len())
        .enumerate()
        .for_each(|(t, dxs)| {
            let (mut col, mut dyc) = (Vec::new(), Vec::new());
            let imgs = dxs.len() / g.in_len();
            for c0 in (0..imgs).step_by(chunk) {
                let c = chunk.min(imgs - c0);
                let (first, ld) = (t * per + c0, c * p);
                let dys = &dy[first * g.out_len()..(first + c) * g.out_len()];
                let b = if c == 1 {
                    Mat::rm(dys, g.c_out, p)
                } else {
                    side_by_side(&mut dyc, dys, g.c_out, p, c);
                    Mat::rm(&dyc, g.c_out, ld)
                };
                if g.direct() && c == 1 {
                    let dxi = &mut dxs[c0 * g.in_len()..][..g.in_len()];
                    mul(dxi, b);
                    continue;
                }
                col.resize(kk * ld, T::zero());
                mul(&mut col, b);
                let dxc = &mut dxs[c0 * g.in_len()..(c0 + c) * g.in_len()];
                if g.direct() {
                    apart(dxc, &col, kk, p);
                    continue;
                }
                for (j, dxi) in dxc.chunks_exact_mut(g.in_len()).enumerate() {
                    // dx is still the zeros it was made with.
                    col2im(g, &col, (ld, j * p), dxi);
                }
            }
        });
    dx
}

/// Input gradient: dx = col2im(w^T . dy), applied to (dy, w).
struct ConvBwdData(Geom, Precision);

impl ConvBwdData {
    fn precision(&self) -> Precision {
        self.1
    }

    fn run_bf16(&self, dy: Act, w: Act) -> candle_core::Result<(Vec<f32>, Shape)> {
        let g = self.0;
        let w = w.f32("conv weight")?;
        Ok((
            mixed::input_grad(&g, dy, w),
            Shape::from((g.n, g.c_in, g.h, g.w)),
        ))
    }

    fn run<T: WithDType>(
        &self,
        ds: &CpuStorage,
        dl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let shape = Shape::from((g.n, g.c_in, g.h, g.w));
        // A float32 stride-1 "same" convolution: the direct convolution of dy (no col2im).
        #[cfg(target_arch = "x86_64")]
        if matches!(ds, CpuStorage::F32(_)) && direct_route::fits::<f32>(&g) {
            let (dy, w) = (
                contiguous::<f32>(ds, dl, "conv gradient")?,
                contiguous::<f32>(ws, wl, "conv weight")?,
            );
            let dx = direct_route::input_grad::<f32, f32>(&g, dy, w);
            return Ok((CpuStorage::F32(dx), shape));
        }
        let (dy, w) = (
            contiguous::<T>(ds, dl, "conv gradient")?,
            contiguous::<T>(ws, wl, "conv weight")?,
        );
        let (_, par) = split(g.n);
        let a = Mat::tr(w, g.c_out, g.kk());
        let dx = input_grad_by(&g, dy, |dst, b| matmul(dst, false, a, b, par));
        Ok((T::to_cpu_storage_owned(dx), shape))
    }
}

impl_op2!(
    ConvBwdData,
    "conv2d-gemm-bwd-data",
    "conv input gradient",
    bf16 "conv input gradient (bf16)"
);

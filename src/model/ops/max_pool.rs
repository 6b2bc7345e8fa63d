//! The max-pool's CPU ops: the forward, its backward for autograd (which finds each window's
//! maximum again), and the taped training forward, which keeps each maximum's position so
//! that its backward is one scatter. bf16 activations (the bf16 training forward) are
//! pooled as float32, plane by plane.
use super::cpu_op::{contiguous, impl_op3, round_bf16, run_float, Widen};
use super::pass::Pass;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType};
use half::bf16;
use rayon::prelude::*;

/// A max-pooling window geometry.
#[derive(Debug, Clone, Copy)]
pub(super) struct MaxPool {
    pub(super) k: usize,
    pub(super) s: usize,
    pub(super) p: usize,
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

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
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
/// it); applied to (x, y, dy). (Autograd's; the taped backward is [`Scatter`].)
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
}

impl_op3!(MaxPoolBwd, "max-pool2d-bwd", "maxpool backward");

/// The training forward on a tape: the output, and each maximum's position in its plane
/// kept for the backward, which adds each output's gradient there (in the order the
/// autograd backward adds them, so the result is the same bit for bit).
pub(super) fn taped(x: &Tensor, pool: MaxPool, pass: &Pass<'_>) -> candle_core::Result<Tensor> {
    let at = std::sync::Arc::new(std::sync::Mutex::new(None));
    let op = Indexed {
        pool,
        at: at.clone(),
    };
    let y = x.apply_op1_no_bwd(&op)?;
    let at = at.lock().ok().and_then(|mut a| a.take()).ok_or_else(|| {
        candle_core::Error::Msg("max pool: the maxima's positions are missing".into())
    })?;
    let (xshape, planes) = (x.shape().clone(), x.dims()[0] * x.dims()[1]);
    pass.push([x], &y, move |dy, want| {
        if !want[0] {
            return Ok([None]);
        }
        let scatter = Scatter {
            at,
            planes,
            shape: xshape,
        };
        Ok([Some(dy.contiguous()?.apply_op1_no_bwd(&scatter)?)])
    });
    Ok(y)
}

/// Whether `v` replaces the running maximum `m`: PyTorch's update (see [`larger`]).
#[inline(always)]
fn takes<T: WithDType>(v: T, m: T) -> bool {
    #[allow(clippy::eq_op)] // v != v: NaN
    let nan = v != v;
    v > m || nan
}

/// A plane's running maxima and their positions, one per output column (or output).
struct Picks<T> {
    val: Vec<T>,
    at: Vec<u32>,
}

impl MaxPool {
    /// [`Self::plane`] that also writes each maximum's index in the plane to `at`: the
    /// element [`Self::argmax`] picks (the row pass keeps each row's pick with its column,
    /// the column pass the pick among the rows, by the same update rule). Written as
    /// selects over runs of output columns, which the compiler vectorises.
    fn plane_at<T: WithDType>(
        &self,
        x: &[T],
        (h, w): (usize, usize),
        (out, at): (&mut [T], &mut [u32]),
        rows: &mut Picks<T>,
    ) {
        let (_, ow) = self.out(h, w);
        // Each output column's window columns, the same in every line.
        let spans: Vec<(usize, usize)> = (0..ow).map(|ox| self.span(ox, w)).collect();
        rows.val.resize(h * ow, T::zero());
        rows.at.resize(h * ow, 0);
        let lines = rows
            .val
            .chunks_exact_mut(ow)
            .zip(rows.at.chunks_exact_mut(ow));
        // ResNet's pool (3 wide, stride 2, padding 1): the windows of outputs 1.. that lie
        // inside the row read odd, even, odd columns (2ox - 1, 2ox, 2ox + 1), so the row is
        // split into its even and odd columns and those outputs are picked lane by lane.
        let inner = if (self.k, self.s, self.p) == (3, 2, 1) {
            ow.min(w / 2)
        } else {
            0
        };
        let (mut even, mut odd) = (vec![T::zero(); w / 2], vec![T::zero(); w / 2]);
        for (row, (rv, ri)) in x.chunks_exact(w).zip(lines) {
            if inner > 1 {
                for ((e, o), p) in even.iter_mut().zip(odd.iter_mut()).zip(row.chunks_exact(2)) {
                    (*e, *o) = (p[0], p[1]);
                }
                let picks = rv[1..inner].iter_mut().zip(&mut ri[1..inner]);
                let windows = odd.iter().zip(&even[1..]).zip(&odd[1..]);
                for (ox, ((v, i), ((&l, &c), &r))) in picks.zip(windows).enumerate() {
                    let first = (2 * ox + 1) as u32;
                    let (mut m, mut at) = (l, first);
                    (m, at) = if takes(c, m) { (c, first + 1) } else { (m, at) };
                    (m, at) = if takes(r, m) { (r, first + 2) } else { (m, at) };
                    (*v, *i) = (m, at);
                }
            }
            let rest = (0..ow).filter(|&ox| inner <= 1 || ox == 0 || ox >= inner);
            for ox in rest {
                let (a, b) = spans[ox];
                let (mut m, mut c) = (row[a], a as u32);
                for (j, &x) in row[a + 1..b].iter().enumerate() {
                    let take = takes(x, m);
                    m = if take { x } else { m };
                    c = if take { (a + 1 + j) as u32 } else { c };
                }
                (rv[ox], ri[ox]) = (m, c);
            }
        }
        let lines = out.chunks_exact_mut(ow).zip(at.chunks_exact_mut(ow));
        for (oy, (o, ix)) in lines.enumerate() {
            let (a, b) = self.span(oy, h);
            o.copy_from_slice(&rows.val[a * ow..][..ow]);
            for (i, &c) in ix.iter_mut().zip(&rows.at[a * ow..][..ow]) {
                *i = (a * w) as u32 + c;
            }
            for r in a + 1..b {
                let (rv, ri) = (&rows.val[r * ow..][..ow], &rows.at[r * ow..][..ow]);
                let base = (r * w) as u32;
                for (((m, i), &v), &c) in o.iter_mut().zip(ix.iter_mut()).zip(rv).zip(ri) {
                    let take = takes(v, *m);
                    *m = if take { v } else { *m };
                    *i = if take { base + c } else { *i };
                }
            }
        }
    }
}

/// The max-pool forward that leaves each output's maximum position (in its plane) in `at`.
struct Indexed {
    pool: MaxPool,
    at: std::sync::Arc<std::sync::Mutex<Option<Vec<u32>>>>,
}

impl Indexed {
    /// Pools planes of `S`, computed as `T`, with outputs stored through `store`.
    fn pool<S: Copy + Sync, T: Widen<S>, O: Copy + Send>(
        &self,
        x: &[S],
        (h, w): (usize, usize),
        zero: O,
        store: impl Fn(T) -> O + Sync,
    ) -> Vec<O> {
        let (oh, ow) = self.pool.out(h, w);
        let n = x.len() / (h * w) * oh * ow;
        let (mut y, mut at) = (vec![zero; n], vec![0u32; n]);
        y.par_chunks_mut(oh * ow)
            .zip(at.par_chunks_mut(oh * ow))
            .zip(x.par_chunks(h * w))
            .for_each_init(
                || {
                    let picks = Picks {
                        val: Vec::new(),
                        at: Vec::new(),
                    };
                    (picks, Vec::new(), vec![T::zero(); oh * ow])
                },
                |(rows, plane_t, out_t), ((out, at), plane)| {
                    plane_t.clear();
                    plane_t.extend(plane.iter().map(|&v| T::widen(v)));
                    self.pool.plane_at(plane_t, (h, w), (out_t, at), rows);
                    for (o, &v) in out.iter_mut().zip(out_t.iter()) {
                        *o = store(v);
                    }
                },
            );
        if let Ok(mut a) = self.at.lock() {
            *a = Some(at);
        }
        y
    }
}

impl CustomOp1 for Indexed {
    fn name(&self) -> &'static str {
        "max-pool2d-indexed"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let _p = super::prof::scope("maxpool forward");
        let d = l.dims();
        let (h, w) = (d[2], d[3]);
        let (oh, ow) = self.pool.out(h, w);
        let shape = Shape::from((d[0], d[1], oh, ow));
        let out = match s {
            CpuStorage::F32(_) => {
                let x = contiguous::<f32>(s, l, "max pool input")?;
                CpuStorage::F32(self.pool::<f32, f32, f32>(x, (h, w), 0.0, |v| v))
            }
            CpuStorage::F64(_) => {
                let x = contiguous::<f64>(s, l, "max pool input")?;
                CpuStorage::F64(self.pool::<f64, f64, f64>(x, (h, w), 0.0, |v| v))
            }
            // The maxima are input values: bf16 again exactly.
            CpuStorage::BF16(_) => {
                let x = contiguous::<bf16>(s, l, "max pool input")?;
                CpuStorage::BF16(self.pool::<bf16, f32, bf16>(x, (h, w), bf16::ZERO, round_bf16))
            }
            _ => candle_core::bail!("max pool: only f32, f64 and bf16 are supported"),
        };
        Ok((out, shape))
    }
}

/// dx of the taped max-pool, applied to dy: each output's gradient added at its maximum's
/// position, outputs in order.
struct Scatter {
    at: Vec<u32>,
    planes: usize,
    shape: Shape,
}

impl Scatter {
    fn run<T: WithDType>(
        &self,
        s: &CpuStorage,
        l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dy = contiguous::<T>(s, l, "max pool gradient")?;
        let hw = self.shape.elem_count() / self.planes.max(1);
        let ohw = dy.len() / self.planes.max(1);
        let mut dx = vec![T::zero(); self.shape.elem_count()];
        dx.par_chunks_mut(hw.max(1))
            .zip(
                dy.par_chunks(ohw.max(1))
                    .zip(self.at.par_chunks(ohw.max(1))),
            )
            .for_each(|(out, (g, at))| {
                for (&d, &i) in g.iter().zip(at) {
                    out[i as usize] += d;
                }
            });
        Ok((T::to_cpu_storage_owned(dx), self.shape.clone()))
    }
}

impl CustomOp1 for Scatter {
    fn name(&self) -> &'static str {
        "max-pool2d-scatter"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        run_float!(self, "max pool", "maxpool backward"; s, l)
    }
}

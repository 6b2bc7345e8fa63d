//! Patch matrices: image -> im2col columns and back (col2im), images side by side, and the
//! weight reordered to the patch order candle's tiled kernel uses. Safe code only.
use super::Geom;
use crate::model::ops::cpu_op::Widen;
use candle_core::WithDType;
use rayon::prelude::*;

/// `dst = src`, widened (a plain copy when the types are one).
#[inline]
fn copy_widened<S: Copy, T: Widen<S>>(src: &[S], dst: &mut [T]) {
    for (d, v) in dst.iter_mut().zip(src) {
        *d = T::widen(*v);
    }
}

/// Output columns `lo..hi` whose input column `ox * s + kw - pad` falls inside a line.
pub(super) fn valid_cols(g: &Geom, kw: usize) -> (usize, usize) {
    let lo = (g.pad.saturating_sub(kw)).div_ceil(g.stride).min(g.ow);
    let hi = if g.w + g.pad > kw {
        ((g.w + g.pad - kw - 1) / g.stride + 1).min(g.ow)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// Output positions `t0..t0 + n` of the im2col matrix of image `x` (C, H, W): `col` holds
/// C*k*k rows of n, patch element (c, kh, kw) in row `row_of(c, kh, kw)`.
pub(super) fn im2col_range<T: WithDType>(
    g: &Geom,
    x: &[T],
    (t0, n): (usize, usize),
    col: &mut [T],
    row_of: impl Fn(usize, usize, usize) -> usize,
) {
    im2col_at(g, x, (t0, n), col, (n, 0), row_of)
}

/// [`im2col_range`] into a wider matrix: rows `ld` apart, starting at column `off`.
pub(super) fn im2col_at<T: WithDType>(
    g: &Geom,
    x: &[T],
    (t0, n): (usize, usize),
    col: &mut [T],
    (ld, off): (usize, usize),
    row_of: impl Fn(usize, usize, usize) -> usize,
) {
    let k = g.k;
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for kh in 0..k {
            for kw in 0..k {
                let row = &mut col[row_of(c, kh, kw) * ld + off..][..n];
                im2col_row(g, plane, (kh, kw), t0, row);
            }
        }
    }
}

/// Output positions `t0..t0 + out.len()` of the im2col row of patch element (kh, kw) of one
/// channel's `plane` (H x W), widened to `T` (an f32 row of a bf16 activation).
pub(super) fn im2col_row<S: Copy, T: Widen<S>>(
    g: &Geom,
    plane: &[S],
    (kh, kw): (usize, usize),
    t0: usize,
    out: &mut [T],
) {
    if out.is_empty() {
        return;
    }
    if let Some(sh) = Shift::new(g, (kh, kw)) {
        return sh.copy(plane, t0, out);
    }
    let (s, n) = (g.stride, out.len());
    let (lo, hi) = valid_cols(g, kw);
    let (mut oy, mut ox0, mut o) = (t0 / g.ow, t0 % g.ow, 0);
    while o < n {
        let ox1 = g.ow.min(ox0 + (n - o));
        let dst = &mut out[o..o + (ox1 - ox0)];
        o += ox1 - ox0;
        let iy = (oy * s + kh) as isize - g.pad as isize;
        let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
        if iy < 0 || iy >= g.h as isize || a == b {
            dst.fill(T::zero());
        } else {
            let line = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
            dst[..a - ox0].iter_mut().for_each(|v| *v = T::zero());
            dst[b - ox0..].iter_mut().for_each(|v| *v = T::zero());
            let src = &line[a * s + kw - g.pad..];
            let dst = &mut dst[a - ox0..b - ox0];
            match s {
                1 => copy_widened(&src[..dst.len()], dst),
                // Whole pairs where the line has them (the compiler vectorises this form).
                2 => {
                    let whole = dst.len().min(src.len() / 2);
                    let (head, last) = dst.split_at_mut(whole);
                    for (d, pair) in head.iter_mut().zip(src.chunks_exact(2)) {
                        *d = T::widen(pair[0]);
                    }
                    if let Some(d) = last.first_mut() {
                        *d = T::widen(src[2 * whole]);
                    }
                }
                _ => {
                    for (d, v) in dst.iter_mut().zip(src.iter().step_by(s)) {
                        *d = T::widen(*v);
                    }
                }
            }
        }
        (oy, ox0) = (oy + 1, 0);
    }
}

/// A stride-1 convolution whose output lines are as long as its input lines ("same"
/// padding): patch element (kh, kw) of output position t reads the plane at t + `off`, so a
/// row of the im2col matrix is the plane shifted, with zeros where the input line ends.
/// One contiguous copy (or sum) and a few elements a line, instead of a copy a line.
struct Shift {
    /// Positions `t_lo..t_hi` read the plane at `t + off` (both inside it); the others of
    /// the lines `y0..y1` read outside the plane, and lines outside `y0..y1` read padding.
    t_lo: usize,
    t_hi: usize,
    off: isize,
    /// Positions whose column lies outside the input line: columns `0..lo` and `hi..w`.
    lo: usize,
    hi: usize,
    w: usize,
}

impl Shift {
    fn new(g: &Geom, (kh, kw): (usize, usize)) -> Option<Self> {
        if g.stride != 1 || g.ow != g.w || g.oh != g.h || g.w == 0 {
            return None;
        }
        let (w, hw) = (g.w as isize, (g.h * g.w) as isize);
        let off = (kh as isize - g.pad as isize) * w + kw as isize - g.pad as isize;
        // Lines whose input line exists: 0 <= oy + kh - pad < h.
        let y0 = g.pad.saturating_sub(kh).min(g.oh);
        let y1 = (g.h + g.pad).saturating_sub(kh).clamp(y0, g.oh);
        let t_lo = ((y0 * g.w) as isize).max(-off);
        let t_hi = ((y1 * g.w) as isize).min(hw - off).max(t_lo);
        let (lo, hi) = valid_cols(g, kw);
        Some(Self {
            t_lo: t_lo as usize,
            t_hi: t_hi as usize,
            off,
            lo,
            hi,
            w: g.w,
        })
    }

    fn src(&self, t: usize) -> usize {
        (t as isize + self.off) as usize
    }

    /// Positions `t0..t0 + out.len()`.
    fn copy<S: Copy, T: Widen<S>>(&self, plane: &[S], t0: usize, out: &mut [T]) {
        let t1 = t0 + out.len();
        let (a, b) = (self.t_lo.clamp(t0, t1), self.t_hi.clamp(t0, t1));
        out[..a - t0].fill(T::zero());
        out[b - t0..].fill(T::zero());
        if a == b {
            return;
        }
        copy_widened(&plane[self.src(a)..self.src(b)], &mut out[a - t0..b - t0]);
        self.each_outside(a, b, |t| out[t - t0] = T::zero());
    }

    /// Calls `f` for every position in `a..b` whose column is outside the input line.
    fn each_outside(&self, a: usize, b: usize, mut f: impl FnMut(usize)) {
        if self.lo == 0 && self.hi == self.w {
            return;
        }
        for line in ((a / self.w) * self.w..b).step_by(self.w) {
            let cols = (0..self.lo).chain(self.hi..self.w);
            for t in cols.map(|c| line + c).filter(|t| (a..b).contains(t)) {
                f(t);
            }
        }
    }

    /// `plane[t + off] += row[t]` for the positions that read the plane.
    fn add<T: WithDType>(&self, row: &[T], plane: &mut [T], saved: &mut Vec<T>) {
        let (a, b) = (self.t_lo, self.t_hi.min(row.len()));
        if a >= b {
            return;
        }
        // The elements that positions outside their line would touch keep their value.
        saved.clear();
        self.each_outside(a, b, |t| saved.push(plane[self.src(t)]));
        for (d, v) in plane[self.src(a)..self.src(b)].iter_mut().zip(&row[a..b]) {
            *d += *v;
        }
        let mut it = saved.iter();
        self.each_outside(a, b, |t| {
            if let Some(v) = it.next() {
                plane[self.src(t)] = *v;
            }
        });
    }
}

/// Copies image `x` (C, H, W) into `col` (C*k*k rows of OH*OW, patch order (c, kh, kw)).
pub(super) fn im2col<T: WithDType>(g: &Geom, x: &[T], col: &mut [T]) {
    let k = g.k;
    im2col_range(g, x, (0, g.p()), col, |c, kh, kw| (c * k + kh) * k + kw);
}

/// [`im2col`] with the channels shared among rayon's threads: for a product that has the
/// threads to itself (an image alone, as in batch-1 inference), where a one-thread im2col
/// would leave the other threads waiting.
pub(super) fn im2col_par<T: WithDType>(g: &Geom, x: &[T], col: &mut [T]) {
    let (k, p) = (g.k, g.p());
    col.par_chunks_mut(k * k * p)
        .zip(x.par_chunks(g.h * g.w))
        .for_each(|(rows, plane)| {
            for (r, row) in rows.chunks_exact_mut(p).enumerate() {
                im2col_row(g, plane, (r / k, r % k), 0, row);
            }
        });
}

/// Adds `col` (C*k*k rows of OH*OW, rows `ld` apart from column `off`) into image `dx`
/// (C, H, W), which the caller has zeroed (a fresh zeroed buffer needs no second pass).
pub(super) fn col2im<T: WithDType>(g: &Geom, col: &[T], (ld, off): (usize, usize), dx: &mut [T]) {
    let (p, k, s) = (g.p(), g.k, g.stride);
    let shifts: Option<Vec<Shift>> = (0..k * k).map(|r| Shift::new(g, (r / k, r % k))).collect();
    let mut saved = Vec::new();
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for kh in 0..k {
            for kw in 0..k {
                let row = &col[((c * k + kh) * k + kw) * ld + off..][..p];
                if let Some(sh) = &shifts {
                    sh[kh * k + kw].add(row, plane, &mut saved);
                    continue;
                }
                let (lo, hi) = valid_cols(g, kw);
                if lo == hi {
                    continue;
                }
                for (oy, src) in row.chunks_exact(g.ow).enumerate() {
                    let iy = (oy * s + kh) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let line = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let start = lo * s + kw - g.pad;
                    if s == 1 {
                        for (d, v) in line[start..start + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += *v;
                        }
                    } else if s == 2 {
                        // Whole pairs where the line has them (vectorised), then the last.
                        let (src, dst) = (&src[lo..hi], &mut line[start..]);
                        let whole = src.len().min(dst.len() / 2);
                        for (pair, v) in dst.chunks_exact_mut(2).zip(&src[..whole]) {
                            pair[0] += *v;
                        }
                        if let Some(v) = src.get(whole) {
                            dst[2 * whole] += *v;
                        }
                    } else {
                        for (d, v) in line[start..].iter_mut().step_by(s).zip(&src[lo..hi]) {
                            *d += *v;
                        }
                    }
                }
            }
        }
    }
}

/// `c` images of `rows x p` (consecutive) side by side as one `rows x c*p` matrix.
pub(super) fn side_by_side<T: WithDType>(
    dst: &mut Vec<T>,
    src: &[T],
    rows: usize,
    p: usize,
    c: usize,
) {
    dst.resize(rows * c * p, T::zero());
    let ld = c * p;
    for j in 0..c {
        for r in 0..rows {
            dst[r * ld + j * p..][..p].copy_from_slice(&src[(j * rows + r) * p..][..p]);
        }
    }
}

/// The inverse of [`side_by_side`]: the `rows x c*p` matrix `src` split into the `c`
/// consecutive `rows x p` images of `dst` (`c` = `dst.len() / (rows * p)`).
pub(super) fn apart<T: Copy>(dst: &mut [T], src: &[T], rows: usize, p: usize) {
    let ld = dst.len() / rows.max(1);
    for (j, image) in dst.chunks_exact_mut(rows * p).enumerate() {
        for (r, row) in image.chunks_exact_mut(p).enumerate() {
            row.copy_from_slice(&src[r * ld + j * p..][..p]);
        }
    }
}

/// The row of patch element (c, kh, kw) in the training forward's im2col matrix: (kh, kw, c)
/// order, candle's, which [`weight_khwc`] gives the weight too.
pub(super) fn khwc(g: &Geom, c: usize, kh: usize, kw: usize) -> usize {
    (kh * g.k + kw) * g.c_in + c
}

/// `w` (C_out, C_in, k, k) reordered to (C_out, k, k, C_in): the column order of
/// the tiled forward.
pub(super) fn weight_khwc<T: WithDType>(g: &Geom, w: &[T]) -> Vec<T> {
    let (c, kk) = (g.c_in, g.k * g.k);
    let mut out = vec![T::zero(); w.len()];
    for (o, src) in out.chunks_exact_mut(c * kk).zip(w.chunks_exact(c * kk)) {
        for ci in 0..c {
            for r in 0..kk {
                o[r * c + ci] = src[ci * kk + r];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (h, w, k, stride, pad): "same" stride-1 shapes (the shifted path, including kernels
    /// wider than the image) and the others (the line-by-line path).
    const SHAPES: [(usize, usize, usize, usize, usize); 13] = [
        (4, 4, 3, 1, 1),
        (5, 7, 3, 1, 1),
        (7, 5, 5, 1, 2),
        (6, 6, 7, 1, 3),
        (3, 3, 5, 1, 2),
        (1, 5, 3, 1, 1),
        (2, 2, 3, 1, 1),
        (1, 1, 1, 1, 0),
        (8, 8, 3, 2, 1),
        (9, 7, 7, 2, 3),
        (5, 5, 1, 2, 0),
        (4, 6, 3, 1, 0),
        (7, 8, 3, 3, 1),
    ];

    fn geom((h, w, k, s, pad): (usize, usize, usize, usize, usize), c_in: usize) -> Geom {
        Geom::new(&[1, c_in, h, w], &[2, c_in, k, k], s, pad)
    }

    /// The input element patch element (kh, kw) of output position t reads, if any.
    fn source(g: &Geom, (kh, kw): (usize, usize), t: usize) -> Option<usize> {
        let (oy, ox) = (t / g.ow, t % g.ow);
        let iy = (oy * g.stride + kh)
            .checked_sub(g.pad)
            .filter(|&y| y < g.h)?;
        let ix = (ox * g.stride + kw)
            .checked_sub(g.pad)
            .filter(|&x| x < g.w)?;
        Some(iy * g.w + ix)
    }

    #[test]
    fn rows_of_any_range_are_the_definition() {
        for shape in SHAPES {
            let g = geom(shape, 1);
            let plane: Vec<f32> = (0..g.h * g.w).map(|i| i as f32 + 1.0).collect();
            for (kh, kw) in (0..g.k).flat_map(|a| (0..g.k).map(move |b| (a, b))) {
                let want: Vec<f32> = (0..g.p())
                    .map(|t| source(&g, (kh, kw), t).map_or(0.0, |i| plane[i]))
                    .collect();
                for t0 in 0..g.p() {
                    for n in 1..=g.p() - t0 {
                        let mut out = vec![f32::NAN; n];
                        im2col_row(&g, &plane, (kh, kw), t0, &mut out);
                        assert_eq!(out, want[t0..t0 + n], "{shape:?} ({kh}, {kw}) {t0}+{n}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_threaded_im2col_is_the_one_thread_one() {
        for shape in SHAPES {
            let g = geom(shape, 3);
            let x: Vec<f32> = (0..g.in_len()).map(|i| (i as f32).sin()).collect();
            let (mut one, mut par) = (vec![0.0; g.kk() * g.p()], vec![f32::NAN; g.kk() * g.p()]);
            im2col(&g, &x, &mut one);
            im2col_par(&g, &x, &mut par);
            assert_eq!(one, par, "{shape:?}");
        }
    }

    #[test]
    fn col2im_sums_each_element_as_the_definition_and_ignores_the_padding() {
        for shape in SHAPES {
            let g = geom(shape, 2);
            let (p, kk) = (g.p(), g.kk());
            // Distinct values; NaN on every position that reads padding, which must not
            // reach the image (nor be added and taken back out).
            let col: Vec<f64> = (0..kk * p)
                .map(|i| {
                    let (r, t) = (i / p, i % p);
                    let (kh, kw) = ((r / g.k) % g.k, r % g.k);
                    match source(&g, (kh, kw), t) {
                        Some(_) => 1.0 + (i as f64).sqrt(),
                        None => f64::NAN,
                    }
                })
                .collect();
            let mut want = vec![0.0f64; g.in_len()];
            for r in 0..kk {
                let (c, kh, kw) = (r / (g.k * g.k), (r / g.k) % g.k, r % g.k);
                for t in 0..p {
                    if let Some(i) = source(&g, (kh, kw), t) {
                        want[c * g.h * g.w + i] += col[r * p + t];
                    }
                }
            }
            let mut got = vec![0.0f64; g.in_len()];
            col2im(&g, &col, (p, 0), &mut got);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{shape:?}");
        }
    }
}

//! Patch matrices: image -> im2col columns and back (col2im), images side by side, and the
//! weight reordered to the patch order candle's tiled kernel uses. Safe code only.
use super::Geom;
use candle_core::WithDType;

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
/// channel's `plane` (H x W).
pub(super) fn im2col_row<T: WithDType>(
    g: &Geom,
    plane: &[T],
    (kh, kw): (usize, usize),
    t0: usize,
    out: &mut [T],
) {
    let (s, n) = (g.stride, out.len());
    let (lo, hi) = valid_cols(g, kw);
    let mut t = t0;
    while t < t0 + n {
        let (oy, ox0) = (t / g.ow, t % g.ow);
        let ox1 = g.ow.min(ox0 + (t0 + n - t));
        let out = &mut out[t - t0..t - t0 + (ox1 - ox0)];
        t += ox1 - ox0;
        let iy = (oy * s + kh) as isize - g.pad as isize;
        let (a, b) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
        if iy < 0 || iy >= g.h as isize || a == b {
            out.fill(T::zero());
            continue;
        }
        let line = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
        out[..a - ox0].fill(T::zero());
        out[b - ox0..].fill(T::zero());
        let start = a * s + kw - g.pad;
        let dst = &mut out[a - ox0..b - ox0];
        if s == 1 {
            dst.copy_from_slice(&line[start..start + (b - a)]);
        } else {
            for (o, v) in dst.iter_mut().zip(line[start..].iter().step_by(s)) {
                *o = *v;
            }
        }
    }
}

/// Copies image `x` (C, H, W) into `col` (C*k*k rows of OH*OW, patch order (c, kh, kw)).
pub(super) fn im2col<T: WithDType>(g: &Geom, x: &[T], col: &mut [T]) {
    let k = g.k;
    im2col_range(g, x, (0, g.p()), col, |c, kh, kw| (c * k + kh) * k + kw);
}

/// Adds `col` (C*k*k rows of OH*OW, rows `ld` apart from column `off`) back into image
/// `dx` (C, H, W), which it overwrites.
pub(super) fn col2im<T: WithDType>(g: &Geom, col: &[T], (ld, off): (usize, usize), dx: &mut [T]) {
    let (p, k, s) = (g.p(), g.k, g.stride);
    dx.fill(T::zero());
    for c in 0..g.c_in {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for kh in 0..k {
            for kw in 0..k {
                let row = &col[((c * k + kh) * k + kw) * ld + off..][..p];
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

//! A direct convolution on the AVX512_BF16 kernel, for the "same" convolutions of stride 1
//! (k x k, k odd, padding (k - 1) / 2: every 3x3 convolution of a ResNet's blocks but the
//! first of a stage). The im2col route makes and packs a matrix k*k times the input's size
//! for every product; here the input is laid out once as planes of channel pairs (each u32
//! the bf16 pair `(x[2c][t], x[2c+1][t])`, images side by side), which is already the right
//! operand `vdpbf16ps` wants: for a tap (kh, kw), the 16 output positions `j..j+16` read the
//! 16 input positions `j + (kh - p) * w + (kw - p)`, one unaligned load, with the positions
//! that fall outside their image masked to zero.
//!
//! The weight is packed in the layout of the im2col route's panels (`PackedA`), its inner
//! dimension ordered (channel pair, tap) instead of (channel, tap); a training step packs it
//! anew, as the im2col route does. The same convolutions' weight gradient is `direct_grad.rs`.
use super::{native, Kernel, MR, NC, NR};
use crate::model::ops::cpu_op::round_bf16;
use half::bf16;
use rayon::prelude::*;

/// Channel pairs per block of the inner dimension (with 9 taps: 189 pairs, as `KC`).
fn pairs_per_block(taps: usize) -> usize {
    (super::KC / taps).max(1)
}

/// A value of an activation as bf16 bits: rounded from float32 (nearest even) or as it is.
pub trait Bf16Bits: Copy + Sync {
    fn bf16_bits(self) -> u32;
    /// The values as bf16 (rounded, or as they are).
    fn bf16s(v: &[Self]) -> std::borrow::Cow<'_, [bf16]>;
}

impl Bf16Bits for f32 {
    #[inline(always)]
    fn bf16_bits(self) -> u32 {
        round_bf16(self).to_bits() as u32
    }
    fn bf16s(v: &[Self]) -> std::borrow::Cow<'_, [bf16]> {
        let mut out = vec![bf16::ZERO; v.len()];
        out.par_chunks_mut(1 << 14)
            .zip(v.par_chunks(1 << 14))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, &s)| *d = round_bf16(s)));
        out.into()
    }
}

impl Bf16Bits for bf16 {
    #[inline(always)]
    fn bf16_bits(self) -> u32 {
        self.to_bits() as u32
    }
    fn bf16s(v: &[Self]) -> std::borrow::Cow<'_, [bf16]> {
        v.into()
    }
}

/// The input of a direct convolution: `pairs` planes, plane `c` holding for every column
/// (`imgs` images of `h x w` positions side by side) the u32 `x[2c] | x[2c + 1] << 16` (the
/// high half zero past an odd channel count).
pub struct Planes {
    data: Vec<u32>,
    pairs: usize,
    imgs: usize,
    h: usize,
    w: usize,
}

impl Planes {
    /// The planes of `xs`: `imgs` images of `c` channels of `h x w` (NCHW), rounded to bf16.
    pub fn new<S: Bf16Bits>(xs: &[S], imgs: usize, c: usize, (h, w): (usize, usize)) -> Self {
        let _p = crate::model::ops::prof::scope("in conv: bf16 direct input planes");
        let (hw, pairs) = (h * w, c.div_ceil(2));
        assert_eq!(xs.len(), imgs * c * hw, "input of {imgs}x{c}x{h}x{w}");
        let mut data = vec![0u32; pairs * imgs * hw];
        if hw > 0 {
            data.par_chunks_mut(hw).enumerate().for_each(|(e, plane)| {
                let (cp, img) = (e / imgs, e % imgs);
                let lo = &xs[(img * c + 2 * cp) * hw..][..hw];
                if 2 * cp + 1 < c {
                    let hi = &xs[(img * c + 2 * cp + 1) * hw..][..hw];
                    for ((d, l), h) in plane.iter_mut().zip(lo).zip(hi) {
                        *d = l.bf16_bits() | h.bf16_bits() << 16;
                    }
                } else {
                    for (d, l) in plane.iter_mut().zip(lo) {
                        *d = l.bf16_bits();
                    }
                }
            });
        }
        Self {
            data,
            pairs,
            imgs,
            h,
            w,
        }
    }

    /// Columns of a plane.
    fn cols(&self) -> usize {
        self.imgs * self.h * self.w
    }
}

/// A weight packed for [`conv`]: `m` output channels, `c` input channels, `k x k` taps, in
/// panels of MR output channels as `PackedA`'s, pair `q = cp * k * k + t` of a panel's row
/// `o` holding channels 2 cp and 2 cp + 1 at tap t.
pub struct DirectWeight {
    panels: Vec<u32>,
    m: usize,
    c: usize,
    k: usize,
}

impl DirectWeight {
    /// Packs a weight of `m` output channels, `c` input channels and `k x k` taps whose taps
    /// for output channel `o` and input channel `ch` are `taps(o, ch)` (k*k values, in the
    /// order kh * k + kw, or the reverse when `reversed`), rounded to bf16.
    pub fn new<'w>(
        (m, c, k): (usize, usize, usize),
        taps: impl Fn(usize, usize) -> &'w [f32] + Sync,
        reversed: bool,
    ) -> Self {
        let _p = crate::model::ops::prof::scope("in conv: bf16 direct weight");
        let (tn, pairs) = (k * k, c.div_ceil(2));
        let kp = pairs * tn;
        let mut panels = vec![0u32; m.div_ceil(MR) * kp * MR];
        if kp > 0 {
            panels
                .par_chunks_mut(kp * MR)
                .enumerate()
                .for_each(|(pr, panel)| {
                    for (cp, dst) in panel.chunks_exact_mut(tn * MR).enumerate() {
                        for r in 0..MR.min(m - pr * MR) {
                            let o = pr * MR + r;
                            let lo = &taps(o, 2 * cp)[..tn];
                            let hi = (2 * cp + 1 < c).then(|| &taps(o, 2 * cp + 1)[..tn]);
                            for t in 0..tn {
                                let s = if reversed { tn - 1 - t } else { t };
                                let h = hi.map_or(0, |h| h[s].bf16_bits());
                                dst[t * MR + r] = lo[s].bf16_bits() | h << 16;
                            }
                        }
                    }
                });
        }
        Self { panels, m, c, k }
    }

    /// Output channels.
    pub fn rows(&self) -> usize {
        self.m
    }
}

/// Whether [`conv`] runs on this CPU (AVX512_BF16, the kernel chosen for bf16 products).
pub fn available() -> bool {
    native() && super::kernel() == Kernel::Avx512
}

/// One tap of a tile of NR columns: the offset of its input from the output column and the
/// masks of the two vectors' lanes that read inside their image.
#[derive(Clone, Copy, Default)]
struct Tap {
    off: isize,
    m0: u16,
    m1: u16,
}

/// The shift (rows, columns) at which tap `t` of a k x k "same" kernel reads its input.
pub(super) fn tap_shift(t: usize, k: usize) -> (isize, isize) {
    let p = (k / 2) as isize;
    ((t / k) as isize - p, (t % k) as isize - p)
}

/// The place (row, column) in its image of each position from `first` on, images of `h x w`
/// side by side, stepped along (no division per position); `None` from `end` on.
pub(super) fn places(
    first: usize,
    (h, w): (usize, usize),
    end: usize,
) -> impl Iterator<Item = Option<(isize, isize)>> {
    let (h, w) = (h as isize, w as isize);
    let at = first as isize % (h * w).max(1);
    let (mut oy, mut ox) = (at / w.max(1), at % w.max(1));
    (first..).map(move |q| {
        let here = (q < end).then_some((oy, ox));
        ox += 1;
        if ox == w {
            (oy, ox) = (oy + 1, 0);
            if oy == h {
                oy = 0;
            }
        }
        here
    })
}

/// Whether a position at `place` (of an image of `h x w`) reads inside its image at `shift`.
pub(super) fn reads_inside(
    place: Option<(isize, isize)>,
    (dy, dx): (isize, isize),
    (h, w): (usize, usize),
) -> bool {
    place.is_some_and(|(oy, ox)| {
        (0..h as isize).contains(&(oy + dy)) && (0..w as isize).contains(&(ox + dx))
    })
}

/// The taps of the tile at column `j`: lane `l` (column `j + l`) reads at tap t the input
/// column `j + l + off`, its mask bit set when that lies inside its image. Every lane set in
/// a mask reads inside `0..cols` (asserted: the kernel's loads rely on it).
fn taps_of(x: &Planes, k: usize, j: usize, out: &mut [Tap]) {
    let (hw, cols) = ((x.h, x.w), x.cols());
    let mut at = [None; NR];
    for (a, place) in at.iter_mut().zip(places(j, hw, cols)) {
        *a = place;
    }
    for (t, tap) in out.iter_mut().enumerate() {
        let shift = tap_shift(t, k);
        let off = shift.0 * x.w as isize + shift.1;
        let mut mask = 0u32;
        for (l, &place) in at.iter().enumerate() {
            if reads_inside(place, shift, hw) {
                let src = (j + l) as isize + off;
                assert!(
                    (0..cols as isize).contains(&src),
                    "tap read outside the planes"
                );
                mask |= 1 << l;
            }
        }
        *tap = Tap {
            off,
            m0: mask as u16,
            m1: (mask >> 16) as u16,
        };
    }
}

/// `y` (the weight's rows x the planes' columns, row-major) = the stride-1 "same"
/// convolution of the planes by `a`, on `threads` tasks (each a share of the rows).
pub fn conv(y: &mut [f32], a: &DirectWeight, x: &Planes, threads: usize) {
    let (m, cols, k) = (a.rows(), x.cols(), a.k);
    assert!(available(), "the direct convolution needs AVX512_BF16");
    assert!(
        k % 2 == 1 && a.c.div_ceil(2) == x.pairs,
        "weight and input disagree"
    );
    assert_eq!(y.len(), m * cols, "output of {m}x{cols}");
    if m == 0 || cols == 0 {
        return;
    }
    let panels_per = m.div_ceil(MR).div_ceil(threads.max(1));
    y.par_chunks_mut(panels_per * MR * cols)
        .enumerate()
        .for_each(|(part, ys)| {
            let first = part * panels_per;
            rows_of(ys, first, a, x);
        });
}

/// The rows of panels `first..` that `ys` holds, in blocks of NC columns (the block's
/// outputs stay in L2 while every pair of channels adds to them).
fn rows_of(ys: &mut [f32], first: usize, a: &DirectWeight, x: &Planes) {
    let _p = crate::model::ops::prof::scope("in conv: bf16 direct kernel");
    let (cols, k, panels) = (x.cols(), a.k, &a.panels);
    let taps = k * k;
    let kp = x.pairs * taps;
    let rows = ys.len() / cols;
    let per = pairs_per_block(taps);
    let mut block_taps = vec![Tap::default(); NC.div_ceil(NR) * taps];
    for jc in (0..cols).step_by(NC) {
        // The taps of the block's tiles, the same for every pair of channels.
        let tiles = (jc..(jc + NC).min(cols)).step_by(NR);
        for (j, tile_taps) in tiles.clone().zip(block_taps.chunks_exact_mut(taps)) {
            taps_of(x, k, j, tile_taps);
        }
        for cp0 in (0..x.pairs).step_by(per) {
            let cps = per.min(x.pairs - cp0);
            for (j, tile_taps) in tiles.clone().zip(block_taps.chunks_exact(taps)) {
                let n = NR.min(cols - j);
                for pr in 0..rows.div_ceil(MR) {
                    let r = MR.min(rows - pr * MR);
                    let ap = &panels[((first + pr) * kp + cp0 * taps) * MR..][..cps * taps * MR];
                    let c = &mut ys[pr * MR * cols + j..];
                    // SAFETY: the features are present (`available()`, asserted by `conv`); the
                    // planes cp0..cp0 + cps exist (cp0 + cps <= pairs) and every lane set in a
                    // tap's masks reads inside its plane (`taps_of`); `c` holds r rows of
                    // `cols` from column j, of which the first n are written.
                    unsafe {
                        tile(
                            ap,
                            &x.data[cp0 * cols..(cp0 + cps) * cols],
                            cols,
                            j,
                            tile_taps,
                            c,
                            (r, n),
                            cp0 > 0,
                        )
                    }
                }
            }
        }
    }
}

/// `c[rows x n] (+)= a . x` over the planes of `x` (each `cols` long) and every tap, for the
/// NR columns from `j`.
///
/// # Safety
/// AVX512_BF16, F and BW must be available; `a` holds (planes x taps) pairs of MR; every lane
/// set in a tap's masks reads a column in `0..cols` of each plane; `c` holds `rows - 1` rows
/// of `cols` and `n` more (rows <= MR, n <= NR).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    a: &[u32],
    x: &[u32],
    cols: usize,
    j: usize,
    taps: &[Tap],
    c: &mut [f32],
    (rows, n): (usize, usize),
    load: bool,
) {
    use std::arch::x86_64::*;
    let planes = x.len() / cols;
    assert!(
        taps.len().checked_mul(planes * MR) == Some(a.len())
            && rows <= MR
            && n <= NR
            && (rows == 0
                || (rows - 1)
                    .checked_mul(cols)
                    .and_then(|e| e.checked_add(n))
                    .is_some_and(|e| e <= c.len()))
    );
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let ap = a.as_ptr();
    for cp in 0..planes {
        let base = x.as_ptr().wrapping_add(cp * cols + j);
        for (t, tap) in taps.iter().enumerate() {
            let q = cp * taps.len() + t;
            let p = base.wrapping_offset(tap.off);
            // SAFETY: the masked loads touch only lanes whose column lies in this plane (the
            // contract); q < planes * taps, so the MR weights read are inside `a`.
            unsafe {
                let b0: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi32(tap.m0, p.cast()));
                let b1: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi32(
                    tap.m1,
                    p.wrapping_add(16).cast(),
                ));
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*ap.add(q * MR + r) as i32));
                    acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, b0);
                    acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, b1);
                }
            }
        }
    }
    // SAFETY: the features are enabled; c holds `rows` rows of n from r * cols (asserted).
    unsafe { super::avx512::store_tile(&acc, c.as_mut_ptr(), cols, (rows, n), load) }
}

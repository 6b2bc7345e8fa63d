//! A direct convolution on AVX-512, for the "same" convolutions of stride 1 (k x k, k odd,
//! padding (k - 1) / 2: every 3x3 convolution of a ResNet's blocks but the first of a stage).
//! The im2col route makes and packs a matrix k*k times the input's size for every product;
//! here the input is laid out once as planes of words (images side by side), each word
//! either the bf16 pair `(x[2c][t], x[2c+1][t])` in a u32, the operand `vdpbf16ps` wants
//! (bf16 mixed precision), or one float32 channel, the operand of `vfmadd` (float32): for a
//! tap (kh, kw), the 16 output positions `j..j+16` read the 16 input positions
//! `j + (kh - p) * w + (kw - p)`, one unaligned load, with the positions that fall outside
//! their image masked to zero.
//!
//! The weight is packed in the layout of the im2col route's panels (`PackedA`), its inner
//! dimension ordered (word, tap) instead of (channel, tap); a training step packs it anew, as
//! the im2col route does. The bf16 weight gradient of the same convolutions is
//! `direct_grad.rs`.
use super::{native, Kernel, MR, NC, NR};
use crate::model::ops::cpu_op::round_bf16;
use half::bf16;
use rayon::prelude::*;
use std::arch::x86_64::{__m512, __m512i};

/// Words per block of the inner dimension (with 9 taps: 21 words, 189 with their taps, as
/// `KC`).
fn words_per_block(taps: usize) -> usize {
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

/// What a lane of the direct convolution's planes and packed weight holds.
pub trait Word: Copy + Default + Send + Sync + 'static {
    /// Input channels a word holds.
    const CHANNELS: usize;
    /// Whether this CPU runs the kernel of these words.
    fn available() -> bool;
    /// `acc + a . b` lane by lane, `a` broadcast to every lane and `b` 16 words.
    ///
    /// # Safety
    /// The word's instructions must be available ([`Word::available`]).
    unsafe fn madd(acc: __m512, a: Self, b: __m512i) -> __m512;
    /// [`tile`] compiled for this word's instructions.
    ///
    /// # Safety
    /// As [`tile`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        a: &[Self],
        x: &[Self],
        cols: usize,
        j: usize,
        taps: &[Tap],
        c: &mut [f32],
        rows_n: (usize, usize),
        load: bool,
    );
}

/// A word made of the values of its channels (`hi`, the odd channel of a pair, absent past
/// an odd channel count and for one-channel words).
pub trait WordOf<S>: Word {
    fn of(lo: S, hi: Option<S>) -> Self;
}

/// The bf16 pair of channels 2c (low half) and 2c + 1, multiplied by `vdpbf16ps`.
impl Word for u32 {
    const CHANNELS: usize = 2;
    fn available() -> bool {
        native() && super::kernel() == Kernel::Avx512
    }
    #[inline(always)]
    unsafe fn madd(acc: __m512, a: Self, b: __m512i) -> __m512 {
        use std::arch::x86_64::*;
        // SAFETY: AVX512_BF16 is available (the contract); the casts only retype bits.
        unsafe {
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(a as i32));
            _mm512_dpbf16_ps(acc, av, std::mem::transmute::<__m512i, __m512bh>(b))
        }
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile(
        a: &[Self],
        x: &[Self],
        cols: usize,
        j: usize,
        taps: &[Tap],
        c: &mut [f32],
        rows_n: (usize, usize),
        load: bool,
    ) {
        // SAFETY: the caller keeps tile's contract; the features are enabled here.
        unsafe { tile(a, x, cols, j, taps, c, rows_n, load) }
    }
}

impl<S: Bf16Bits> WordOf<S> for u32 {
    #[inline(always)]
    fn of(lo: S, hi: Option<S>) -> Self {
        lo.bf16_bits() | hi.map_or(0, |h| h.bf16_bits()) << 16
    }
}

/// One float32 channel, multiplied by `vfmadd231ps`.
impl Word for f32 {
    const CHANNELS: usize = 1;
    fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }
    #[inline(always)]
    unsafe fn madd(acc: __m512, a: Self, b: __m512i) -> __m512 {
        use std::arch::x86_64::*;
        // SAFETY: AVX-512 F is available (the contract); the cast only retypes bits.
        unsafe { _mm512_fmadd_ps(_mm512_set1_ps(a), _mm512_castsi512_ps(b), acc) }
    }
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn tile(
        a: &[Self],
        x: &[Self],
        cols: usize,
        j: usize,
        taps: &[Tap],
        c: &mut [f32],
        rows_n: (usize, usize),
        load: bool,
    ) {
        // SAFETY: the caller keeps tile's contract; the features are enabled here.
        unsafe { tile(a, x, cols, j, taps, c, rows_n, load) }
    }
}

impl WordOf<f32> for f32 {
    #[inline(always)]
    fn of(lo: f32, _: Option<f32>) -> Self {
        lo
    }
}

/// The input of a direct convolution: `words` planes, plane `q` holding for every column
/// (`imgs` images of `h x w` positions side by side) the word of channels
/// `q * W::CHANNELS..`.
pub struct Planes<W> {
    data: Vec<W>,
    words: usize,
    imgs: usize,
    h: usize,
    w: usize,
}

impl<W: Word> Planes<W> {
    /// The planes of `xs`: `imgs` images of `c` channels of `h x w` (NCHW).
    pub fn new<S: Copy + Sync>(xs: &[S], imgs: usize, c: usize, (h, w): (usize, usize)) -> Self
    where
        W: WordOf<S>,
    {
        let _p = crate::model::ops::prof::scope("in conv: direct input planes");
        let (hw, words) = (h * w, c.div_ceil(W::CHANNELS));
        assert_eq!(xs.len(), imgs * c * hw, "input of {imgs}x{c}x{h}x{w}");
        let mut data = vec![W::default(); words * imgs * hw];
        if hw > 0 {
            data.par_chunks_mut(hw).enumerate().for_each(|(e, plane)| {
                let (q, img) = (e / imgs, e % imgs);
                let ch = q * W::CHANNELS;
                let lo = &xs[(img * c + ch) * hw..][..hw];
                if W::CHANNELS == 2 && ch + 1 < c {
                    let hi = &xs[(img * c + ch + 1) * hw..][..hw];
                    for ((d, &l), &h) in plane.iter_mut().zip(lo).zip(hi) {
                        *d = W::of(l, Some(h));
                    }
                } else {
                    for (d, &l) in plane.iter_mut().zip(lo) {
                        *d = W::of(l, None);
                    }
                }
            });
        }
        Self {
            data,
            words,
            imgs,
            h,
            w,
        }
    }
}

impl<W> Planes<W> {
    /// Columns of a plane.
    fn cols(&self) -> usize {
        self.imgs * self.h * self.w
    }
}

/// A weight packed for [`conv`]: `m` output channels, `c` input channels, `k x k` taps, in
/// panels of MR output channels as `PackedA`'s, word `q = cw * k * k + t` of a panel's row
/// `o` holding the word of channels `cw * W::CHANNELS..` at tap t.
pub struct DirectWeight<W> {
    panels: Vec<W>,
    m: usize,
    c: usize,
    k: usize,
}

impl<W: WordOf<f32>> DirectWeight<W> {
    /// Packs a weight of `m` output channels, `c` input channels and `k x k` taps whose taps
    /// for output channel `o` and input channel `ch` are `taps(o, ch)` (k*k values, in the
    /// order kh * k + kw, or the reverse when `reversed`).
    ///
    /// Each block of a panel (MR rows, one word of channels, every tap) is made from its rows'
    /// taps in one loop (rows past `m` and a channel past `c` read as zeros).
    pub fn new<'w>(
        (m, c, k): (usize, usize, usize),
        taps: impl Fn(usize, usize) -> &'w [f32] + Sync,
        reversed: bool,
    ) -> Self {
        let _p = crate::model::ops::prof::scope("in conv: direct weight");
        let (tn, words) = (k * k, c.div_ceil(W::CHANNELS));
        let kp = words * tn;
        let mut panels = vec![W::default(); m.div_ceil(MR) * kp * MR];
        if kp > 0 {
            // A task's panels walk the channels together. Unswapped, one panel a task reads its
            // rows' taps in order; the swapped weight of an input gradient (`reversed`) holds
            // a channel's taps for consecutive rows side by side, read in one run for eight
            // panels.
            let per_task = if reversed { 8 } else { 1 };
            let zeros = vec![0.0f32; tn];
            panels
                .par_chunks_mut(kp * MR * per_task)
                .enumerate()
                .for_each(|(gi, group)| {
                    for cw in 0..words {
                        let ch = cw * W::CHANNELS;
                        for (g, panel) in group.chunks_exact_mut(kp * MR).enumerate() {
                            let pr = gi * per_task + g;
                            let rows = MR.min(m - pr * MR);
                            let mut lo = [&zeros[..]; MR];
                            let mut hi = [&zeros[..]; MR];
                            for r in 0..rows {
                                lo[r] = &taps(pr * MR + r, ch)[..tn];
                                if W::CHANNELS == 2 && ch + 1 < c {
                                    hi[r] = &taps(pr * MR + r, ch + 1)[..tn];
                                }
                            }
                            let dst = &mut panel[cw * tn * MR..][..tn * MR];
                            for (t, d) in dst.chunks_exact_mut(MR).enumerate() {
                                let s = if reversed { tn - 1 - t } else { t };
                                for r in 0..MR {
                                    d[r] = W::of(lo[r][s], Some(hi[r][s]));
                                }
                            }
                        }
                    }
                });
        }
        Self { panels, m, c, k }
    }
}

impl<W> DirectWeight<W> {
    /// Output channels.
    pub fn rows(&self) -> usize {
        self.m
    }
}

/// Whether [`conv`] runs on this CPU for bf16 words (AVX512_BF16, the kernel chosen for bf16
/// products).
pub fn available() -> bool {
    <u32 as Word>::available()
}

/// One tap of a tile of NR columns: the offset of its input from the output column and the
/// masks of the two vectors' lanes that read inside their image.
#[derive(Clone, Copy, Default)]
pub struct Tap {
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
fn taps_of<W>(x: &Planes<W>, k: usize, j: usize, out: &mut [Tap]) {
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
pub fn conv<W: Word>(y: &mut [f32], a: &DirectWeight<W>, x: &Planes<W>, threads: usize) {
    let (m, cols, k) = (a.rows(), x.cols(), a.k);
    assert!(
        W::available(),
        "the direct convolution needs AVX-512 (and AVX512_BF16 for bf16)"
    );
    assert!(
        k % 2 == 1 && a.c.div_ceil(W::CHANNELS) == x.words,
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
/// outputs stay in L2 while every word of channels adds to them).
fn rows_of<W: Word>(ys: &mut [f32], first: usize, a: &DirectWeight<W>, x: &Planes<W>) {
    let _p = crate::model::ops::prof::scope("in conv: direct kernel");
    let (cols, k, panels) = (x.cols(), a.k, &a.panels);
    let taps = k * k;
    let kp = x.words * taps;
    let rows = ys.len() / cols;
    let per = words_per_block(taps);
    let mut block_taps = vec![Tap::default(); NC.div_ceil(NR) * taps];
    for jc in (0..cols).step_by(NC) {
        // The taps of the block's tiles, the same for every word of channels.
        let tiles = (jc..(jc + NC).min(cols)).step_by(NR);
        for (j, tile_taps) in tiles.clone().zip(block_taps.chunks_exact_mut(taps)) {
            taps_of(x, k, j, tile_taps);
        }
        for q0 in (0..x.words).step_by(per) {
            let qs = per.min(x.words - q0);
            for (j, tile_taps) in tiles.clone().zip(block_taps.chunks_exact(taps)) {
                let n = NR.min(cols - j);
                for pr in 0..rows.div_ceil(MR) {
                    let r = MR.min(rows - pr * MR);
                    let ap = &panels[((first + pr) * kp + q0 * taps) * MR..][..qs * taps * MR];
                    let c = &mut ys[pr * MR * cols + j..];
                    // SAFETY: the features are present (`W::available()`, asserted by
                    // `conv`); the planes q0..q0 + qs exist (q0 + qs <= words) and every lane
                    // set in a tap's masks reads inside its plane (`taps_of`); `c` holds r
                    // rows of `cols` from column j, of which the first n are written.
                    unsafe {
                        W::tile(
                            ap,
                            &x.data[q0 * cols..(q0 + qs) * cols],
                            cols,
                            j,
                            tile_taps,
                            c,
                            (r, n),
                            q0 > 0,
                        )
                    }
                }
            }
        }
    }
}

/// `c[rows x n] (+)= a . x` over the planes of `x` (each `cols` long) and every tap, for the
/// NR columns from `j`. Inlined into each word's [`Word::tile`], which enables its
/// instructions.
///
/// # Safety
/// AVX-512 F and BW and the word's instructions must be available; `a` holds (planes x taps)
/// words of MR; every lane set in a tap's masks reads a column in `0..cols` of each plane; `c`
/// holds `rows - 1` rows of `cols` and `n` more (rows <= MR, n <= NR).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<W: Word>(
    a: &[W],
    x: &[W],
    cols: usize,
    j: usize,
    taps: &[Tap],
    c: &mut [f32],
    (rows, n): (usize, usize),
    load: bool,
) {
    use std::arch::x86_64::*;
    const { assert!(std::mem::size_of::<W>() == 4, "a word is 32 bits") };
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
    // SAFETY (every block below): AVX-512 F is available (the contract).
    let mut acc = [[unsafe { _mm512_setzero_ps() }; 2]; MR];
    let ap = a.as_ptr();
    for q in 0..planes {
        let base = x.as_ptr().wrapping_add(q * cols + j);
        for (t, tap) in taps.iter().enumerate() {
            let i = q * taps.len() + t;
            let p = base.wrapping_offset(tap.off);
            // SAFETY: the masked loads touch only lanes whose column lies in this plane (the
            // contract; a word is 32 bits); i < planes * taps, so the MR weights read are
            // inside `a`; the word's instructions are available.
            unsafe {
                let b0 = _mm512_maskz_loadu_epi32(tap.m0, p.cast());
                let b1 = _mm512_maskz_loadu_epi32(tap.m1, p.wrapping_add(16).cast());
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let av = *ap.add(i * MR + r);
                    acc_r[0] = W::madd(acc_r[0], av, b0);
                    acc_r[1] = W::madd(acc_r[1], av, b1);
                }
            }
        }
    }
    // SAFETY: the features are enabled; c holds `rows` rows of n from r * cols (asserted).
    unsafe { super::avx512::store_tile(&acc, c.as_mut_ptr(), cols, (rows, n), load) }
}

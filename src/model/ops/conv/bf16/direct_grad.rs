//! The weight gradient of the direct convolution (`direct.rs`: stride 1, k x k, k odd, "same"
//! padding) on the AVX512_BF16 kernel, without im2col.
//!
//! `dw[o][c][t] = sum_q dy[o][q] * x[c][q + off(t)]` over the output positions `q` of the
//! images side by side, where tap `t = (kh, kw)` reads its input `off(t) = (kh - p) * w +
//! (kw - p)` positions away (zero outside its image). `vdpbf16ps` multiplies pairs along the
//! summed dimension, here the positions, so both operands are laid out in pairs of positions:
//! - `dy` in panels of MR output channels, pair `i` of row `o` the u32 `dy[o][2i] | dy[o][2i+1]
//!   << 16` (the im2col route's `PackedA` layout, with `dy` as its matrix), broadcast;
//! - `x` as rows of position pairs, one u32 per channel, so that 16 channels of a pair are one
//!   vector (in blocks of NR channels, a block's rows adjacent), in two copies: pairs from an
//!   even position (`x[c][2i] | x[c][2i+1] << 16`) and from an odd one (`x[c][2i+1] |
//!   x[c][2i+2] << 16`). A tap whose offset is `2m` reads row `i + m` of the even copy for
//!   pair `i`, one whose offset is `2m + 1` row `i + m` of the odd copy: the whole right
//!   operand of every tap is these two arrays, read at a shift.
//!
//! A position whose tap falls outside its image is masked to zero in the load (its half of each
//! u32). Each output tile (MR output channels x NR input channels, for one tap) sums a block of
//! KC pairs in registers, as the GEMM's micro-tile does. The threads split the output
//! channels, each summing over all the images: no partial sums to add afterwards (what made
//! the im2col route slow where the weight is large and the positions few).
use super::direct::{available, places, reads_inside, tap_shift, Bf16Bits, Word};
use super::pack::{pack_a_panel16, transpose_8x16};
use super::{KC, MR, NR};
use half::bf16;
use rayon::prelude::*;

/// Both operands of one chunk of images.
struct Operands {
    /// Rows of position pairs (`margin` zero rows before and after), in blocks of NR
    /// channels (`rows` rows of NR u32 each): the pairs from even positions, then those from
    /// odd ones.
    even: Vec<u32>,
    odd: Vec<u32>,
    rows: usize,
    /// `dy` in panels of MR output channels, `pairs` u32 pairs of MR each.
    dy: Vec<u32>,
    pairs: usize,
    margin: usize,
}

/// Input values per chunk of images (about 8 MB of operands at most, besides `dy`).
pub(super) const CHUNK_VALUES: usize = 1 << 20;

/// The gradient, in the weight's layout (`co x c x k x k`), of the stride-1 "same"
/// convolution whose input `x` is `n` images of `c` channels of `h x w` (NCHW) and whose
/// output gradient is `dy` (`n x co x h x w`), both rounded to bf16, summed in float32, on
/// `threads` tasks.
pub fn weight_grad<S: Bf16Bits, D: Bf16Bits>(
    x: &[S],
    dy: &[D],
    (n, c, h, w): (usize, usize, usize, usize),
    (co, k): (usize, usize),
    threads: usize,
) -> Vec<f32> {
    weight_grad_in_chunks(x, dy, (n, c, h, w), (co, k), threads, CHUNK_VALUES)
}

/// [`weight_grad`] in chunks of images of about `chunk_values` input values.
fn weight_grad_in_chunks<S: Bf16Bits, D: Bf16Bits>(
    x: &[S],
    dy: &[D],
    (n, c, h, w): (usize, usize, usize, usize),
    (co, k): (usize, usize),
    threads: usize,
    chunk_values: usize,
) -> Vec<f32> {
    assert!(available(), "the direct convolution needs AVX512_BF16");
    assert!(k % 2 == 1, "an odd kernel");
    let (hw, taps) = (h * w, k * k);
    assert_eq!(x.len(), n * c * hw, "input of {n}x{c}x{h}x{w}");
    assert_eq!(dy.len(), n * co * hw, "output gradient of {n}x{co}x{h}x{w}");
    let (x, dy) = (S::bf16s(x), D::bf16s(dy));
    let ld = c.div_ceil(NR) * NR;
    let chunk = (chunk_values / (ld * hw).max(1)).clamp(1, n.max(1));
    // Rows (o, t) of `ld` channels, the threads each summing a share of the output channels
    // over all the images.
    let mut sums = vec![0.0f32; co.div_ceil(MR) * MR * taps * ld];
    for first in (0..n).step_by(chunk) {
        let imgs = chunk.min(n - first);
        let ops = Operands::new(
            &x[first * c * hw..(first + imgs) * c * hw],
            &dy[first * co * hw..(first + imgs) * co * hw],
            (imgs, c, h, w),
            (co, k),
        );
        accumulate(&mut sums, &ops, (imgs, h, w, k, ld), threads, first > 0);
    }
    to_weight_layout(&sums, (co, c, taps, ld))
}

/// The weight gradient (`co x c x taps`) from `sums`, rows `(o, t)` of `ld` channels.
pub(super) fn to_weight_layout(
    sums: &[f32],
    (co, c, taps, ld): (usize, usize, usize, usize),
) -> Vec<f32> {
    let mut dw = vec![0.0f32; co * c * taps];
    if !dw.is_empty() {
        dw.par_chunks_mut(c * taps)
            .enumerate()
            .for_each(|(o, row)| {
                for t in 0..taps {
                    let from = &sums[(o * taps + t) * ld..][..c];
                    for (d, &v) in row.chunks_exact_mut(taps).zip(from) {
                        d[t] = v;
                    }
                }
            });
    }
    dw
}

/// Where channel `ch` of row `r` lies in [`Operands`]' rows (`rows` a block).
#[inline(always)]
pub(super) fn slot(rows: usize, r: usize, ch: usize) -> usize {
    ((ch / NR) * rows + r) * NR + ch % NR
}

impl Operands {
    /// The operands of `imgs` images: `x` (`c` channels) and `dy` (`co` channels), both
    /// `h x w`, for a k x k kernel.
    fn new(
        x: &[bf16],
        dy: &[bf16],
        (imgs, c, h, w): (usize, usize, usize, usize),
        (co, k): (usize, usize),
    ) -> Self {
        let _p = crate::model::ops::prof::scope("in conv: bf16 direct gradient operands");
        let hw = h * w;
        let pairs = (imgs * hw).div_ceil(2);
        // A tap reads at most (k / 2) * (w + 1) positions away: that many pairs, and one.
        let margin = ((k / 2) * (w + 1)).div_ceil(2) + 1;
        let rows = pairs + 2 * margin;
        let blocks = c.div_ceil(NR);
        let (mut even, mut odd) = (
            vec![0u32; blocks * rows * NR],
            vec![0u32; blocks * rows * NR],
        );
        let mut panels = vec![0u32; co.div_ceil(MR) * pairs * MR];
        if hw.is_multiple_of(2) && pairs > 0 {
            // Whole pairs in every image.
            let kp = hw / 2;
            even.par_chunks_mut(rows * NR)
                .zip(odd.par_chunks_mut(rows * NR))
                .enumerate()
                .for_each(|(b, (ev, od))| {
                    let chs = b * NR..c.min((b + 1) * NR);
                    for img in 0..imgs {
                        let xi = &x[(img * c + chs.start) * hw..(img * c + chs.end) * hw];
                        let at = (margin + img * kp) * NR;
                        let (ev, od) = (&mut ev[at..][..kp * NR], &mut od[at..][..kp * NR]);
                        // SAFETY: the features are present (`weight_grad` asserts them).
                        unsafe { pair_rows(xi, chs.len(), hw, ev, od) }
                    }
                });
            // An image's last odd pair ends with the next image's first position.
            for img in 1..imgs {
                for ch in 0..c {
                    odd[slot(rows, margin + img * kp - 1, ch)] |=
                        (x[(img * c + ch) * hw].to_bits() as u32) << 16;
                }
            }
            panels
                .par_chunks_mut(pairs * MR)
                .enumerate()
                .for_each(|(pr, panel)| {
                    let n = MR.min(co - pr * MR);
                    for (img, part) in panel.chunks_exact_mut(kp * MR).enumerate() {
                        let d = &dy[(img * co + pr * MR) * hw..][..n * hw];
                        // SAFETY: the features are present (as above).
                        unsafe { pack_a_panel16(d, kp, n, part) }
                    }
                });
        } else {
            let shape = (imgs, c, hw, co);
            pairs_one_by_one(
                x,
                dy,
                shape,
                (rows, margin),
                (&mut even, &mut odd),
                &mut panels,
            );
        }
        // The odd pair before the first: (nothing, x[0]).
        for ch in 0..c {
            odd[slot(rows, margin - 1, ch)] = (x[ch * hw].to_bits() as u32) << 16;
        }
        Self {
            even,
            odd,
            rows,
            dy: panels,
            pairs,
            margin,
        }
    }
}

/// [`Operands::new`]'s rows and panels for images of an odd number of positions (pairs then
/// straddle images), value by value.
fn pairs_one_by_one(
    x: &[bf16],
    dy: &[bf16],
    (imgs, c, hw, co): (usize, usize, usize, usize),
    (rows, margin): (usize, usize),
    (even, odd): (&mut [u32], &mut [u32]),
    panels: &mut [u32],
) {
    let npos = imgs * hw;
    let pairs = npos.div_ceil(2);
    // Where position `q` of the images side by side lies: (image, position in it).
    let place: Vec<(usize, usize)> = (0..npos).map(|q| (q / hw, q % hw)).collect();
    // Value `q` of channel `ch` of `v` (`count` channels), as bf16 bits; 0 past the end.
    let at = |v: &[bf16], count: usize, ch: usize, q: usize| -> u32 {
        place.get(q).map_or(0, |&(img, t)| {
            v[(img * count + ch) * hw + t].to_bits() as u32
        })
    };
    even.par_chunks_mut(rows * NR)
        .zip(odd.par_chunks_mut(rows * NR))
        .enumerate()
        .for_each(|(b, (ev, od))| {
            for ch in b * NR..c.min((b + 1) * NR) {
                for i in 0..pairs {
                    let (l, h, n) = (
                        at(x, c, ch, 2 * i),
                        at(x, c, ch, 2 * i + 1),
                        at(x, c, ch, 2 * i + 2),
                    );
                    ev[(margin + i) * NR + ch % NR] = l | h << 16;
                    od[(margin + i) * NR + ch % NR] = h | n << 16;
                }
            }
        });
    if pairs > 0 {
        panels
            .par_chunks_mut(pairs * MR)
            .enumerate()
            .for_each(|(pr, panel)| {
                for o in pr * MR..co.min((pr + 1) * MR) {
                    for (i, d) in panel.chunks_exact_mut(MR).enumerate() {
                        d[o % MR] = at(dy, co, o, 2 * i) | at(dy, co, o, 2 * i + 1) << 16;
                    }
                }
            });
    }
}

/// The rows of position pairs of one image `x` (`c` <= NR channels of `hw` positions, hw
/// even) into `even` and `odd` (hw / 2 rows of NR u32 each), the odd copy's last pair
/// without its high half (the next image's first position).
///
/// # Safety
/// AVX-512 F and BW must be available.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pair_rows(x: &[bf16], c: usize, hw: usize, even: &mut [u32], odd: &mut [u32]) {
    use std::arch::x86_64::*;
    let kp = hw / 2;
    assert!(
        hw.is_multiple_of(2)
            && c <= NR
            && c.checked_mul(hw) == Some(x.len())
            && kp
                .checked_mul(NR)
                .is_some_and(|n| n == even.len() && n == odd.len())
    );
    for ch0 in (0..c).step_by(8) {
        let nch = 8.min(c - ch0);
        let store: __mmask8 = if nch == 8 { !0 } else { (1u8 << nch) - 1 };
        for q in (0..kp).step_by(16) {
            let np = 16.min(kp - q);
            for (s, dst) in [(0, &mut *even), (1, &mut *odd)] {
                let from = 2 * q + s;
                let n = (hw - from).min(32);
                let m: __mmask32 = if n == 32 { !0 } else { (1u32 << n) - 1 };
                let mut v = [_mm512_setzero_si512(); 8];
                for (r, vr) in v.iter_mut().enumerate().take(nch) {
                    let plane = &x[(ch0 + r) * hw..][..hw];
                    // SAFETY: the masked load reads elements from..from + n of the plane
                    // (from + n <= hw).
                    *vr = unsafe { _mm512_maskz_loadu_epi16(m, plane.as_ptr().add(from).cast()) };
                }
                // Vector t: pairs 2t and 2t + 1 of the 8 channels.
                for (t, o) in transpose_8x16(v).iter().enumerate() {
                    for (half, pair) in [(0, 2 * t), (1, 2 * t + 1)] {
                        if pair >= np {
                            break;
                        }
                        let d = &mut dst[(q + pair) * NR + ch0..][..nch];
                        let y = if half == 0 {
                            _mm512_castsi512_si256(*o)
                        } else {
                            _mm512_extracti64x4_epi64::<1>(*o)
                        };
                        // SAFETY: writes nch (<= 8) u32 into d, nch long.
                        unsafe { _mm256_mask_storeu_epi32(d.as_mut_ptr().cast(), store, y) };
                    }
                }
            }
        }
    }
}

/// One chunk's operands of a direct weight gradient along the summed dimension, in units of
/// `POSITIONS` positions (a pair for bf16, one for float32), and the kernel that multiplies
/// them.
pub(super) trait GradOperands: Sync {
    type Word: Word;
    /// Positions a unit holds.
    const POSITIONS: usize;
    /// Units of the chunk.
    fn units(&self) -> usize;
    /// The output gradient in panels of MR output channels, `units()` units of MR each.
    fn panels(&self) -> &[Self::Word];
    /// The `kc` rows (NR words each) of channel block `j` that a tap reading `off` positions
    /// away multiplies with units `i0..i0 + kc`.
    fn rows(&self, off: isize, i0: usize, j: usize, kc: usize) -> &[Self::Word];
    /// The load mask of a unit whose positions are at `places`, for a tap at `shift`: a bit
    /// per 16-bit half of a row's vector.
    fn mask(places: &[Option<(isize, isize)>], shift: (isize, isize), hw: (usize, usize)) -> u32;
    /// [`tile`] compiled for the word's instructions.
    ///
    /// # Safety
    /// As [`tile`].
    unsafe fn tile(
        a: &[Self::Word],
        x: &[Self::Word],
        masks: &[u32],
        c: &mut [f32],
        ldc: usize,
        load: bool,
    );
}

impl GradOperands for Operands {
    type Word = u32;
    const POSITIONS: usize = 2;
    fn units(&self) -> usize {
        self.pairs
    }
    fn panels(&self) -> &[u32] {
        &self.dy
    }
    fn rows(&self, off: isize, i0: usize, j: usize, kc: usize) -> &[u32] {
        let src = if off % 2 == 0 { &self.even } else { &self.odd };
        let row0 = (self.margin as isize + i0 as isize + off.div_euclid(2)) as usize;
        &src[slot(self.rows, row0, j)..][..kc * NR]
    }
    /// The 16-bit halves of each u32 lane whose position reads inside its image.
    fn mask(places: &[Option<(isize, isize)>], shift: (isize, isize), hw: (usize, usize)) -> u32 {
        let half = |place, bits: u32| {
            if reads_inside(place, shift, hw) {
                bits
            } else {
                0
            }
        };
        half(places[0], 0x5555_5555) | half(places[1], 0xAAAA_AAAA)
    }
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn tile(a: &[u32], x: &[u32], masks: &[u32], c: &mut [f32], ldc: usize, load: bool) {
        // SAFETY: the caller keeps tile's contract; the features are enabled here.
        unsafe { tile(a, x, masks, c, ldc, load) }
    }
}

/// Writes the chunk's products to `sums` (rows `(o, t)` of `ld`), or adds them to what it
/// holds when `add`, block of KC units by block, its output channels split over `threads`
/// tasks. The caller has checked the kernel's instructions.
pub(super) fn accumulate<O: GradOperands>(
    sums: &mut [f32],
    ops: &O,
    (imgs, h, w, k, ld): (usize, usize, usize, usize, usize),
    threads: usize,
    add: bool,
) {
    let _p = crate::model::ops::prof::scope("in conv: direct gradient kernel");
    let (taps, units, up) = (k * k, ops.units(), O::POSITIONS);
    let panels = sums.len() / (MR * taps * ld);
    let per = panels.div_ceil(threads.max(1)).max(1);
    let npos = imgs * h * w;
    sums.par_chunks_mut(per * MR * taps * ld)
        .enumerate()
        .for_each(|(part, rows)| {
            let (mut masks, mut at) = (vec![0u32; taps * KC], vec![None; up * KC]);
            for i0 in (0..units).step_by(KC) {
                let kc = KC.min(units - i0);
                for (a, place) in at
                    .iter_mut()
                    .zip(places(up * i0, (h, w), npos))
                    .take(up * kc)
                {
                    *a = place;
                }
                // Each unit's mask at each tap: its positions that read inside their image.
                for (t, m) in masks.chunks_exact_mut(KC).enumerate() {
                    let shift = tap_shift(t, k);
                    for (m, at) in m.iter_mut().zip(at.chunks_exact(up)).take(kc) {
                        *m = O::mask(at, shift, (h, w));
                    }
                }
                let load = add || i0 > 0;
                for t in 0..taps {
                    let (dy, dx) = tap_shift(t, k);
                    let off = dy * w as isize + dx;
                    for j in (0..ld).step_by(NR) {
                        let xs = ops.rows(off, i0, j, kc);
                        for pr in 0..rows.len() / (MR * taps * ld) {
                            let a =
                                &ops.panels()[((part * per + pr) * units + i0) * MR..][..kc * MR];
                            let c = &mut rows[(pr * MR * taps + t) * ld + j..];
                            let m = &masks[t * KC..][..kc];
                            // SAFETY: the caller has checked the features.
                            unsafe { O::tile(a, xs, m, c, taps * ld, load) }
                        }
                    }
                }
            }
        });
}

/// `c[MR x NR] (+)= a . x`: for each of `masks.len()` units `i`, the MR broadcast words of
/// `a` by the NR words of row `i` of `x`, its 16-bit halves masked by `masks[i]`; `c`'s rows
/// `ldc` apart. Inlined into each word's [`GradOperands::tile`], which enables its
/// instructions.
///
/// # Safety
/// AVX-512 F and BW and the word's instructions must be available.
#[inline(always)]
pub(super) unsafe fn tile<W: Word>(
    a: &[W],
    x: &[W],
    masks: &[u32],
    c: &mut [f32],
    ldc: usize,
    load: bool,
) {
    use std::arch::x86_64::*;
    const { assert!(std::mem::size_of::<W>() == 4, "a word is 32 bits") };
    let kc = masks.len();
    assert!(
        a.len() == kc * MR
            && x.len() == kc * NR
            && (MR - 1)
                .checked_mul(ldc)
                .and_then(|e| e.checked_add(NR))
                .is_some_and(|e| e <= c.len())
    );
    // SAFETY (every block below): AVX-512 F is available (the contract).
    let mut acc = [[unsafe { _mm512_setzero_ps() }; 2]; MR];
    let (ap, xp) = (a.as_ptr(), x.as_ptr());
    for (i, &mask) in masks.iter().enumerate() {
        // SAFETY: i < kc, so row i of x (NR words: two vectors of 16) and words i * MR.. + MR
        // of a lie inside them (asserted); the word's instructions are available.
        unsafe {
            let row = xp.add(i * NR);
            let b0 = _mm512_maskz_loadu_epi16(mask, row.cast());
            let b1 = _mm512_maskz_loadu_epi16(mask, row.add(16).cast());
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = *ap.add(i * MR + r);
                acc_r[0] = W::madd(acc_r[0], av, b0);
                acc_r[1] = W::madd(acc_r[1], av, b1);
            }
        }
    }
    // SAFETY: the features are enabled; c holds MR rows of NR, ldc apart (asserted).
    unsafe { super::avx512::store_tile(&acc, c.as_mut_ptr(), ldc, (MR, NR), load) }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The shapes both weight gradients are checked on, with the input values per chunk of
    /// images: images of odd and even position counts, several chunks of images (the second
    /// added to the first), several blocks of the summed dimension, channels past a block of
    /// NR and not a multiple of 8, output channels not a multiple of MR, 3x3 and 5x5.
    pub(in super::super) const CASES: [(usize, usize, usize, usize, usize, usize, usize); 5] = [
        (5, 3, 7, 6, 9, 3, 200),
        (4, 37, 5, 4, 10, 3, 1 << 20),
        (3, 2, 21, 21, 3, 5, 1000),
        (3, 40, 9, 7, 17, 3, 3000),
        (2, 8, 30, 26, 8, 3, 1 << 20),
    ];

    /// Asserts that `got` is the weight gradient of the stride-1 "same" convolution of `x`
    /// (`n x c x h x w`) with output gradient `dy` (`n x co x h x w`), k x k taps, by its
    /// definition in f64 within the float32 summation bound `gamma_n * sum |terms|` (n the
    /// terms of an element).
    pub(in super::super) fn assert_is_the_definition(
        x: &[f64],
        dy: &[f64],
        (n, c, h, w): (usize, usize, usize, usize),
        (co, k): (usize, usize),
        got: &[f32],
        case: &str,
    ) {
        let hw = h * w;
        let p = (k / 2) as isize;
        for o in 0..co {
            for ch in 0..c {
                for t in 0..k * k {
                    let (sy, sx) = ((t / k) as isize - p, (t % k) as isize - p);
                    let (mut want, mut size) = (0.0f64, 0.0f64);
                    for img in 0..n {
                        for (oy, ox) in (0..h).flat_map(|i| (0..w).map(move |j| (i, j))) {
                            let (iy, ix) = (oy as isize + sy, ox as isize + sx);
                            if !(0..h as isize).contains(&iy) || !(0..w as isize).contains(&ix) {
                                continue;
                            }
                            let g = dy[(img * co + o) * hw + oy * w + ox];
                            let v = x[(img * c + ch) * hw + iy as usize * w + ix as usize];
                            want += g * v;
                            size += (g * v).abs();
                        }
                    }
                    let terms = (n * hw) as f64;
                    let gamma = terms * 2f64.powi(-24) / (1.0 - terms * 2f64.powi(-24));
                    let have = got[(o * c + ch) * k * k + t] as f64;
                    assert!(
                        (have - want).abs() <= gamma * size + 1e-30,
                        "{case} dw[{o}][{ch}][{t}] = {have}, by definition {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_gradient_is_the_bf16_products_summed_over_chunks_and_blocks() {
        // Against dw by its definition, the sums of the bf16 values' products, on `CASES`.
        if !available() {
            eprintln!(
                "skipped: the_gradient_is_the_bf16_products_summed_over_chunks_and_blocks \
                 (no AVX512_BF16)"
            );
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for (n, c, h, w, co, k, chunk) in CASES {
            let hw = h * w;
            let mut vals = |len: usize| -> Vec<bf16> {
                (0..len)
                    .map(|_| bf16::from_f32(rng.random_range(-2.0f32..2.0)))
                    .collect()
            };
            let (x, dy) = (vals(n * c * hw), vals(n * co * hw));
            let got = weight_grad_in_chunks(&x, &dy, (n, c, h, w), (co, k), 2, chunk);
            let wide = |v: &[bf16]| -> Vec<f64> { v.iter().map(|v| v.to_f64()).collect() };
            let case = format!("{:?}", (n, c, h, w, co, k, chunk));
            assert_is_the_definition(&wide(&x), &wide(&dy), (n, c, h, w), (co, k), &got, &case);
        }
    }
}

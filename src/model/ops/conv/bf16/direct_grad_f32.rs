//! The float32 weight gradient of the direct convolution (`direct.rs`: stride 1, k x k, k
//! odd, "same" padding) on AVX-512, without im2col: `direct_grad.rs`'s arrangement with one
//! position where that one has a pair.
//!
//! `dw[o][c][t] = sum_q dy[o][q] * x[c][q + off(t)]` over the output positions `q` of the
//! images side by side, tap `t` reading its input `off(t)` positions away (zero outside its
//! image). Both operands are laid out along the positions:
//! - `dy` in panels of MR output channels, position `q` of row `o` at `q * MR + o % MR`
//!   (broadcast);
//! - `x` as rows of positions, NR channels to a row (two vectors; in blocks of NR channels,
//!   a block's rows adjacent, `margin` zero rows before and after), so that every tap's right
//!   operand is these rows read from row `q + off(t)`; a position whose tap falls outside its
//!   image is masked to zero in the load.
//!
//! Each output tile (MR output channels x NR input channels, for one tap) sums a block of KC
//! positions in registers; the threads split the output channels, each summing over all the
//! images.
use super::direct::{reads_inside, Word};
use super::direct_grad::{accumulate, slot, tile, to_weight_layout, GradOperands, CHUNK_VALUES};
use super::{MR, NR};
use rayon::prelude::*;

/// Both operands of one chunk of images.
struct Operands {
    /// Rows of positions (`margin` zero rows before and after), in blocks of NR channels
    /// (`rows` rows of NR each).
    x: Vec<f32>,
    rows: usize,
    /// `dy` in panels of MR output channels, `npos` positions of MR each.
    dy: Vec<f32>,
    npos: usize,
    margin: usize,
}

/// The gradient, in the weight's layout (`co x c x k x k`), of the stride-1 "same"
/// convolution whose input `x` is `n` images of `c` channels of `h x w` (NCHW) and whose
/// output gradient is `dy` (`n x co x h x w`), summed in float32 on `threads` tasks.
pub fn weight_grad(
    x: &[f32],
    dy: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (co, k): (usize, usize),
    threads: usize,
) -> Vec<f32> {
    weight_grad_in_chunks(x, dy, (n, c, h, w), (co, k), threads, CHUNK_VALUES)
}

/// [`weight_grad`] in chunks of images of about `chunk_values` input values.
fn weight_grad_in_chunks(
    x: &[f32],
    dy: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    (co, k): (usize, usize),
    threads: usize,
    chunk_values: usize,
) -> Vec<f32> {
    assert!(f32::available(), "the direct convolution needs AVX-512");
    assert!(k % 2 == 1, "an odd kernel");
    let (hw, taps) = (h * w, k * k);
    assert_eq!(x.len(), n * c * hw, "input of {n}x{c}x{h}x{w}");
    assert_eq!(dy.len(), n * co * hw, "output gradient of {n}x{co}x{h}x{w}");
    let ld = c.div_ceil(NR) * NR;
    let chunk = (chunk_values / (ld * hw).max(1)).clamp(1, n.max(1));
    // Rows (o, t) of `ld` channels.
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

impl Operands {
    /// The operands of `imgs` images: `x` (`c` channels) and `dy` (`co` channels), both
    /// `h x w`, for a k x k kernel.
    fn new(
        x: &[f32],
        dy: &[f32],
        (imgs, c, h, w): (usize, usize, usize, usize),
        (co, k): (usize, usize),
    ) -> Self {
        let _p = crate::model::ops::prof::scope("in conv: direct gradient operands");
        let hw = h * w;
        let npos = imgs * hw;
        // A tap reads at most (k / 2) * (w + 1) positions away.
        let margin = (k / 2) * (w + 1);
        let rows = npos + 2 * margin;
        let mut xr = vec![0.0f32; c.div_ceil(NR) * rows * NR];
        if npos > 0 {
            xr.par_chunks_mut(rows * NR)
                .enumerate()
                .for_each(|(b, blk)| {
                    let chs = b * NR..c.min((b + 1) * NR);
                    for img in 0..imgs {
                        let dst = &mut blk[(margin + img * hw) * NR..][..hw * NR];
                        for ch in chs.clone() {
                            let plane = &x[(img * c + ch) * hw..][..hw];
                            for (d, &v) in dst.chunks_exact_mut(NR).zip(plane) {
                                d[ch % NR] = v;
                            }
                        }
                    }
                });
        }
        let mut panels = vec![0.0f32; co.div_ceil(MR) * npos * MR];
        if npos > 0 {
            panels
                .par_chunks_mut(npos * MR)
                .enumerate()
                .for_each(|(pr, panel)| {
                    for o in pr * MR..co.min((pr + 1) * MR) {
                        for img in 0..imgs {
                            let plane = &dy[(img * co + o) * hw..][..hw];
                            let dst = &mut panel[img * hw * MR..][..hw * MR];
                            for (d, &v) in dst.chunks_exact_mut(MR).zip(plane) {
                                d[o % MR] = v;
                            }
                        }
                    }
                });
        }
        Self {
            x: xr,
            rows,
            dy: panels,
            npos,
            margin,
        }
    }
}

impl GradOperands for Operands {
    type Word = f32;
    const POSITIONS: usize = 1;
    fn units(&self) -> usize {
        self.npos
    }
    fn panels(&self) -> &[f32] {
        &self.dy
    }
    fn rows(&self, off: isize, i0: usize, j: usize, kc: usize) -> &[f32] {
        let row0 = (self.margin as isize + i0 as isize + off) as usize;
        &self.x[slot(self.rows, row0, j)..][..kc * NR]
    }
    /// Every lane, or none, as the position reads inside its image or not.
    fn mask(places: &[Option<(isize, isize)>], shift: (isize, isize), hw: (usize, usize)) -> u32 {
        if reads_inside(places[0], shift, hw) {
            !0
        } else {
            0
        }
    }
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn tile(a: &[f32], x: &[f32], masks: &[u32], c: &mut [f32], ldc: usize, load: bool) {
        // SAFETY: the caller keeps tile's contract; the features are enabled here.
        unsafe { tile(a, x, masks, c, ldc, load) }
    }
}

#[cfg(test)]
mod tests {
    use super::super::direct_grad::tests::{assert_is_the_definition, CASES};
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_gradient_is_the_products_summed_over_chunks_and_blocks() {
        // Against dw by its definition on the bf16 gradient's shapes (`CASES`: chunks of
        // images, blocks of positions, channel blocks, odd and even position counts).
        if !f32::available() {
            eprintln!(
                "skipped: the_gradient_is_the_products_summed_over_chunks_and_blocks (no AVX-512)"
            );
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (n, c, h, w, co, k, chunk) in CASES {
            let hw = h * w;
            let mut vals = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-2.0f32..2.0)).collect()
            };
            let (x, dy) = (vals(n * c * hw), vals(n * co * hw));
            let got = weight_grad_in_chunks(&x, &dy, (n, c, h, w), (co, k), 2, chunk);
            let wide = |v: &[f32]| -> Vec<f64> { v.iter().map(|&v| v as f64).collect() };
            let case = format!("{:?}", (n, c, h, w, co, k, chunk));
            assert_is_the_definition(&wide(&x), &wide(&dy), (n, c, h, w), (co, k), &got, &case);
        }
    }
}

//! Which convolutions run as direct ones (`bf16/direct.rs`: no im2col matrix, the input laid
//! out once as planes) and the forward and input gradient through it, for both word types:
//! bf16 pairs (mixed precision, `mixed.rs`) and float32 channels (the float32 input gradient
//! and inference forward, `mod.rs`; the float32 training forward keeps candle's products, see
//! there). Safe code.
use super::bf16::direct::{self, DirectWeight, Planes, Word, WordOf};
use super::mixed::{per_chunk, threads};
use super::Geom;

/// Positions an image needs for the bf16 forward to run as a direct convolution: all of
/// ResNet's at 128 and 224 px. At 512 channels of 4x4 (batch 32, 2 threads, Zen 5, best of 25
/// alternating in one process) the direct forward took 0.0036 s against the im2col route's
/// 0.0040, at 7x7 0.0101-0.0109 against 0.0105-0.0107, its weight packing included.
pub(super) const FORWARD_POSITIONS: usize = 16;

/// Whether a float32 inference forward (no gradient, so any order of the sums will do) runs
/// as a direct convolution: where it fits, on images of at least [`INFER_POSITIONS`] output
/// positions. The rule looks at one image only, never at the batch, so that an image's
/// probabilities are the same bits alone (the viewer, `predict`) as in a batch (`eval`, the
/// review): each output's sum runs in the same order whatever images share its product.
/// Measured on ResNet-50's 3x3 convolutions at 224 px (2 threads, Zen 5, best of 10-40
/// alternating in one process), the direct route's time against the im2col route's: at
/// 56x56, 1.07x on one image and 0.74-0.81x on 2 to 32; at 28x28, 0.95-1.04x on one and
/// 0.88-0.93x on more; at 14x14 and 7x7, 1.19x and 2.0x on one image (its weight, packed
/// every call, then weighs more).
pub(super) fn infers(g: &Geom) -> bool {
    g.p() >= INFER_POSITIONS && fits::<f32>(g)
}

/// Output positions of an image from which a float32 inference forward is direct (28x28).
const INFER_POSITIONS: usize = 784;

/// Whether a convolution can run as a direct one of words `W`: stride 1, an odd kernel with
/// "same" padding, on a CPU with the word's instructions.
pub(super) fn fits<W: Word>(g: &Geom) -> bool {
    g.stride == 1 && g.k % 2 == 1 && g.k > 1 && g.pad == g.k / 2 && W::available()
}

/// The forward y = conv(x, w) as a direct convolution (`fits::<W>(g)`).
pub(super) fn forward<W: WordOf<f32> + WordOf<S>, S: Copy + Sync>(
    g: &Geom,
    x: &[S],
    w: &[f32],
) -> Vec<f32> {
    let (c, kk) = (g.c_in, g.k * g.k);
    let a = DirectWeight::<W>::new(
        (g.c_out, c, g.k),
        |o, ch| &w[(o * c + ch) * kk..][..kk],
        false,
    );
    run(g, x, &a)
}

/// The input gradient of y = conv(x, w) (`fits::<W>(g)`): the direct convolution of `dy` by
/// `w` with its channels swapped and its taps reversed, with no col2im.
pub(super) fn input_grad<W: WordOf<f32> + WordOf<S>, S: Copy + Sync>(
    g: &Geom,
    dy: &[S],
    w: &[f32],
) -> Vec<f32> {
    let (ci, kk) = (g.c_in, g.k * g.k);
    let a = DirectWeight::<W>::new(
        (ci, g.c_out, g.k),
        |o, ch| &w[(ch * ci + o) * kk..][..kk],
        true,
    );
    let t = Geom::new(
        &[g.n, g.c_out, g.oh, g.ow],
        &[ci, g.c_out, g.k, g.k],
        1,
        g.pad,
    );
    run(&t, dy, &a)
}

/// The direct convolution of `x` (the input `g` describes) by `a`, in chunks of images side
/// by side as the im2col route's products.
fn run<W: WordOf<S>, S: Copy + Sync>(g: &Geom, x: &[S], a: &DirectWeight<W>) -> Vec<f32> {
    let (_, par) = threads(g.n);
    per_chunk(g, |first, c, dst| {
        let xs = &x[first * g.in_len()..(first + c) * g.in_len()];
        direct::conv(dst, a, &Planes::<W>::new(xs, c, g.c_in, (g.h, g.w)), par)
    })
}

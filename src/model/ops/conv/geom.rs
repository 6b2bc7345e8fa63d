//! The shape of one convolution: sizes, output positions, the im2col matrix.
use candle_core::Shape;

/// The shape of one convolution.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geom {
    pub(super) n: usize,
    pub(super) c_in: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c_out: usize,
    pub(super) k: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geom {
    pub(super) fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Self {
        let (h, wd, k) = (x[2], x[3], w[2]);
        Self {
            n: x[0],
            c_in: x[1],
            h,
            w: wd,
            c_out: w[0],
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (wd + 2 * pad - k) / stride + 1,
        }
    }
    /// Output positions per image.
    pub(super) fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Rows of the im2col matrix.
    pub(super) fn kk(&self) -> usize {
        self.c_in * self.k * self.k
    }
    pub(super) fn in_len(&self) -> usize {
        self.c_in * self.h * self.w
    }
    pub(super) fn out_len(&self) -> usize {
        self.c_out * self.p()
    }
    /// The input is its own im2col matrix.
    pub(super) fn direct(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }
    pub(super) fn out_shape(&self) -> Shape {
        Shape::from((self.n, self.c_out, self.oh, self.ow))
    }
}

//! The operands of a bf16 product: the left one packed once per product in the layout of
//! the kernel that will multiply it ([`PackedA`]), the right one a view or a matrix made row
//! by row ([`Right`]), and the safe entry points to the AVX-512 packers of `pack.rs`.
use super::amx::RowsA;
#[cfg(target_arch = "x86_64")]
use super::pack::{pack_a_panel, pack_a_panel16, pack_b, pack_b16, pack_rows, pack_rows16};
use super::rounded::rounded;
use super::Mat;
use super::{kernel, native, Kernel, MR};
use half::bf16;
use rayon::prelude::*;

/// `x` rounded to bfloat16, as its 16 bits.
#[inline(always)]
pub(super) fn bits(x: f32) -> u32 {
    crate::model::ops::cpu_op::round_bf16(x).to_bits() as u32
}

/// Packs `b` as [`pack::pack_b`] or [`pack::pack_rows`] do, into `buf` (panels `ps` pairs
/// apart; rows `kc..ps` of each panel left as they are), where the CPU has AVX512_BF16;
/// false elsewhere.
pub(super) fn pack_b_native(
    b: Right<'_>,
    (q0, kc, ps): (usize, usize, usize),
    (jc, nc): (usize, usize),
    buf: &mut Vec<u32>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if native() {
        // SAFETY: the features are present (`native()`).
        unsafe {
            match b {
                Right::Mat(b) => pack_b(b, (q0, kc, ps), jc, nc, buf),
                Right::Mat16(b) => pack_b16(b, (q0, kc, ps), (jc, nc), buf),
                Right::Rows {
                    rows,
                    fill16: Some(fill16),
                    ..
                } => pack_rows16(rows, fill16, (q0, kc, ps), (jc, nc), &mut Vec::new(), buf),
                Right::Rows { rows, fill, .. } => {
                    pack_rows(rows, fill, (q0, kc, ps), (jc, nc), &mut Vec::new(), buf)
                }
            }
        }
        return true;
    }
    let _ = (b, q0, kc, ps, jc, nc, buf);
    false
}

/// The left operand, packed for one kernel.
pub struct PackedA {
    pub(super) data: Layout,
    m: usize,
    k: usize,
}

/// [`PackedA`]'s data, in the layout of its kernel.
pub(super) enum Layout {
    /// AVX-512: panels of MR rows, each holding for every pair `q` of the inner dimension MR
    /// u32 (`a[i][2q]` in the low half, `a[i][2q+1]` in the high half; zeros past the
    /// matrix).
    Panels(Vec<u32>),
    /// AMX: rows of pairs.
    Rows(RowsA),
    /// The float32 GEMM: the rounded values, row-major.
    Rounded(Vec<f32>),
}

impl PackedA {
    /// Packs `a` for the current [`kernel`], rounding to bf16.
    pub fn new(a: Mat<'_, f32>) -> Self {
        Self::for_kernel(kernel(), a)
    }

    /// Packs `a` for `kern`.
    pub fn for_kernel(kern: Kernel, a: Mat<'_, f32>) -> Self {
        let _p = crate::model::ops::prof::scope("in conv: bf16 pack a");
        let (m, k) = (a.rows(), a.cols());
        let data = match kern {
            Kernel::Amx => Layout::Rows(RowsA::of(a)),
            Kernel::F32 => Layout::Rounded(rounded(a.into())),
            Kernel::Avx512 => {
                let kp = k.div_ceil(2);
                let mut data = vec![0u32; m.div_ceil(MR) * kp * MR];
                if kp > 0 {
                    data.par_chunks_mut(kp * MR)
                        .enumerate()
                        .for_each(|(pr, panel)| pack_panel(a, pr * MR, panel));
                }
                Layout::Panels(data)
            }
        };
        Self { data, m, k }
    }

    /// Packs the `m x k` matrix that `fill` makes row by row, for the current [`kernel`];
    /// `fill16`, when given, makes the same rows of values that are bf16 already (stored
    /// activations), which the AVX-512 packing takes as they are.
    pub fn from_rows(m: usize, k: usize, fill: FillRow<'_>, fill16: Option<FillRow16<'_>>) -> Self {
        Self::from_rows_for(kernel(), m, k, fill, fill16)
    }

    /// [`PackedA::from_rows`] for `kern` (AVX-512: panel by panel, through a scratch of MR
    /// rows).
    pub fn from_rows_for(
        kern: Kernel,
        m: usize,
        k: usize,
        fill: FillRow<'_>,
        fill16: Option<FillRow16<'_>>,
    ) -> Self {
        let _p = crate::model::ops::prof::scope("in conv: bf16 pack a (im2col rows)");
        let data = match kern {
            Kernel::Amx => Layout::Rows(RowsA::from_rows(m, k, fill)),
            Kernel::F32 => Layout::Rounded(rounded(Right::Rows {
                rows: m,
                cols: k,
                fill,
                fill16: None,
            })),
            Kernel::Avx512 => {
                let kp = k.div_ceil(2);
                let mut data = vec![0u32; m.div_ceil(MR) * kp * MR];
                if let Some(fill16) = fill16.filter(|_| native() && kp > 0) {
                    data.par_chunks_mut(kp * MR).enumerate().for_each_init(
                        Vec::new,
                        |scratch: &mut Vec<bf16>, (pr, panel)| {
                            // Rows of 2 kp, so that an odd k's last pair ends in a zero.
                            let rows = MR.min(m - pr * MR);
                            scratch.resize(rows * 2 * kp, bf16::ZERO);
                            for (r, row) in scratch.chunks_exact_mut(2 * kp).enumerate() {
                                let (row, pad) = row.split_at_mut(k);
                                fill16(pr * MR + r, 0, row);
                                pad.fill(bf16::ZERO);
                            }
                            #[cfg(target_arch = "x86_64")]
                            // SAFETY: the features are present (`native()`).
                            unsafe {
                                pack_a_panel16(scratch, kp, rows, panel)
                            };
                        },
                    );
                } else if kp > 0 {
                    data.par_chunks_mut(kp * MR).enumerate().for_each_init(
                        Vec::new,
                        |scratch: &mut Vec<f32>, (pr, panel)| {
                            let rows = MR.min(m - pr * MR);
                            scratch.resize(rows * k, 0.0);
                            for (r, row) in scratch.chunks_exact_mut(k).enumerate() {
                                fill(pr * MR + r, 0, row);
                            }
                            pack_panel(Mat::rm(scratch, rows, k), 0, panel);
                        },
                    );
                }
                Layout::Panels(data)
            }
        };
        Self { data, m, k }
    }

    /// The kernel it is packed for.
    #[cfg(test)]
    pub fn kernel(&self) -> Kernel {
        match self.data {
            Layout::Panels(_) => Kernel::Avx512,
            Layout::Rows(_) => Kernel::Amx,
            Layout::Rounded(_) => Kernel::F32,
        }
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Columns of the matrix (the inner dimension).
    pub fn cols(&self) -> usize {
        self.k
    }

    pub(super) fn pairs(&self) -> usize {
        self.k.div_ceil(2)
    }
}

/// Writes row `l`, columns `j0..j0 + out.len()` of a matrix into `out`.
pub type FillRow<'a> = &'a (dyn Fn(usize, usize, &mut [f32]) + Sync);

/// [`FillRow`] of a matrix whose values are bf16 already, as bf16.
pub type FillRow16<'a> = &'a (dyn Fn(usize, usize, &mut [bf16]) + Sync);

/// The right operand of a product: a matrix view, or a matrix made row by row as it is
/// packed (an im2col matrix that is never written out whole).
#[derive(Clone, Copy)]
pub enum Right<'a> {
    /// A view.
    Mat(Mat<'a, f32>),
    /// A view of values that are bf16 already (an output gradient stored in bf16 by the
    /// BatchNorm below it): the AVX-512 packing takes their bits as they are.
    Mat16(Mat<'a, bf16>),
    /// `rows x cols`, made by `fill`; by `fill16` too where its values are bf16 already
    /// (the same values: the AVX-512 packing then takes their bits as they are).
    Rows {
        rows: usize,
        cols: usize,
        fill: FillRow<'a>,
        fill16: Option<FillRow16<'a>>,
    },
}

impl Right<'_> {
    pub(super) fn rows(&self) -> usize {
        match self {
            Right::Mat(m) => m.rows(),
            Right::Mat16(m) => m.rows(),
            Right::Rows { rows, .. } => *rows,
        }
    }

    pub(super) fn cols(&self) -> usize {
        match self {
            Right::Mat(m) => m.cols(),
            Right::Mat16(m) => m.cols(),
            Right::Rows { cols, .. } => *cols,
        }
    }
}

impl<'a> From<Mat<'a, f32>> for Right<'a> {
    fn from(m: Mat<'a, f32>) -> Self {
        Right::Mat(m)
    }
}

impl<'a> From<Mat<'a, bf16>> for Right<'a> {
    fn from(m: Mat<'a, bf16>) -> Self {
        Right::Mat16(m)
    }
}

/// Packs rows `i0..i0 + MR` (fewer at the end) of `a` into one panel of [`Layout::Panels`].
fn pack_panel(a: Mat<'_, f32>, i0: usize, panel: &mut [u32]) {
    let (k, rows) = (a.cols(), MR.min(a.rows() - i0));
    #[cfg(target_arch = "x86_64")]
    if native() {
        // SAFETY: the features are present (`native()`).
        unsafe { pack_a_panel(a, i0, rows, panel) };
        return;
    }
    for r in 0..rows {
        for q in 0..k.div_ceil(2) {
            let lo = bits(a.at(i0 + r, 2 * q));
            let hi = if 2 * q + 1 < k {
                bits(a.at(i0 + r, 2 * q + 1))
            } else {
                0
            };
            panel[q * MR + r] = lo | hi << 16;
        }
    }
}

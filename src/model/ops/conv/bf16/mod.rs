//! bfloat16 matrix products with float32 accumulation (mixed precision), and every unsafe
//! line they need.
//!
//! `dst (+)= a . b` with `a` and `b` float32 views whose elements are rounded to bfloat16
//! (nearest even, as PyTorch's autocast) as they are packed, multiplied by one of three
//! kernels (`kernel.rs`; the fastest on this CPU is chosen by measuring, `choose.rs`):
//! - `avx512.rs`: AVX512_BF16's `vdpbf16ps`, which multiplies pairs of bf16 along the inner
//!   dimension and adds both products to a float32 lane; `a` packed as pairs
//!   `(a[i][2q], a[i][2q+1])` in one u32 (broadcast to all lanes) in panels of MR rows, `b` as
//!   pairs `(b[2q][j], b[2q+1][j])` for 16 columns in one vector (`pack.rs`);
//! - `amx.rs` on `tiles.rs`: AMX tiles' `tdpbf16ps`, `a` as rows of pairs, `b` as above;
//! - `rounded.rs`: the float32 GEMM on bf16-rounded copies (products of two bf16 are exact in
//!   float32), on any CPU.
//!
//! The direct convolutions (`direct.rs`, `direct_grad.rs`; no im2col) live here too, with the
//! float32 ones that share their layout and kernel (`direct.rs`'s float32 words,
//! `direct_grad_f32.rs`).
//!
//! All compute the same mathematical function up to the order of the float32 additions
//! (`exact.rs` is the bound the tests and the start-up check hold them to). This file splits a
//! product over threads, each writing its own block of the output through a [`Share`].
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub mod direct;
#[cfg(target_arch = "x86_64")]
pub mod direct_grad;
#[cfg(target_arch = "x86_64")]
pub mod direct_grad_f32;
mod kernel;
mod operands;
#[cfg(target_arch = "x86_64")]
mod pack;
mod rounded;
#[cfg(test)]
mod tests;

pub mod amx;
pub mod choose;
pub mod exact;
pub mod tiles;

use super::gemm::Mat;
pub use kernel::{kernel, native, set_kernel, Kernel};
use operands::Layout;
use operands::{bits, pack_b_native};
pub use operands::{FillRow, FillRow16, PackedA, Right};
use rayon::prelude::*;
use rounded::rounded_product;

/// Rows of a micro-tile.
const MR: usize = 8;
/// Columns of a micro-tile (two vectors of 16 float32).
const NR: usize = 32;
/// Pairs of the inner dimension per packed block of `b` (its micro-panel, KC x NR u32 = 24 KB,
/// stays in L1).
const KC: usize = 192;
/// Columns per packed block of `b`.
const NC: usize = 768;
/// Rows per block of packed `a` (a multiple of MR).
const MC: usize = 512;

/// `x` rounded to bfloat16 and back (exactly representable in float32; NaN stays NaN),
/// written without branches so that a loop of it vectorises.
#[inline(always)]
pub fn round(x: f32) -> f32 {
    f32::from_bits(bits(x) << 16)
}

/// A pointer to an output that threads write through, each to its own elements.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: used only by `product`, whose threads write disjoint elements of a buffer the
// caller lends exclusively for the call.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

impl Out {
    fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// One thread's share of a product's output: rows `r0..r1` and columns `c0..c1` of a
/// row-major matrix whose rows are `ld` apart, read and written only through checked
/// copies of blocks inside the share.
pub struct Share {
    out: Out,
    ld: usize,
    rows: (usize, usize),
    cols: (usize, usize),
}

impl Share {
    /// # Safety
    /// `out` must be valid for reads and writes of rows `rows.0..rows.1`, columns
    /// `cols.0..cols.1` (rows `ld` apart), and no one else may access them while the share
    /// lives.
    unsafe fn new(out: Out, ld: usize, rows: (usize, usize), cols: (usize, usize)) -> Self {
        Self {
            out,
            ld,
            rows,
            cols,
        }
    }

    /// Its rows.
    pub fn rows(&self) -> (usize, usize) {
        self.rows
    }

    /// Its columns.
    pub fn cols(&self) -> (usize, usize) {
        self.cols
    }

    /// Panics unless the block of `r x c` elements at `(i, j)` lies in the share and in `buf`
    /// with rows `ld` apart.
    fn check(&self, (i, j): (usize, usize), (r, c): (usize, usize), len: usize, ld: usize) {
        assert!(
            i >= self.rows.0
                && i.checked_add(r).is_some_and(|e| e <= self.rows.1)
                && j >= self.cols.0
                && j.checked_add(c).is_some_and(|e| e <= self.cols.1)
                && c <= ld
                && super::gemm::span(r, c, ld, 1).is_some_and(|n| n <= len),
            "block {r}x{c} at ({i}, {j}) outside the share {:?} x {:?} or a buffer of {len}",
            self.rows,
            self.cols
        );
    }

    /// Copies the `r x c` block at `(i, j)` into `buf` (rows `ld` apart); zeros in the rest of
    /// each of the first `r` rows' `ld` elements and in the rows after.
    pub fn read(&self, (i, j): (usize, usize), (r, c): (usize, usize), buf: &mut [f32], ld: usize) {
        self.check((i, j), (r, c), buf.len(), ld);
        buf.fill(0.0);
        for row in 0..r {
            // SAFETY: the row's c elements lie in the share (checked), which `new`'s
            // contract makes readable and ours alone.
            let src = unsafe {
                std::slice::from_raw_parts(self.out.ptr().add((i + row) * self.ld + j), c)
            };
            buf[row * ld..][..c].copy_from_slice(src);
        }
    }

    /// Writes the `r x c` block at `(i, j)` from `buf` (rows `ld` apart).
    pub fn write(
        &mut self,
        (i, j): (usize, usize),
        (r, c): (usize, usize),
        buf: &[f32],
        ld: usize,
    ) {
        self.check((i, j), (r, c), buf.len(), ld);
        for row in 0..r {
            // SAFETY: as `read`, for writing.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(self.out.ptr().add((i + row) * self.ld + j), c)
            };
            dst.copy_from_slice(&buf[row * ld..][..c]);
        }
    }
}

/// `dst (m x n, row-major, rows dst_rs apart) (+)= a . b` on the kernel `a` is packed for;
/// panics when the shapes disagree. `threads` > 1 splits the product over that many rayon
/// tasks. A product packed for a kernel this CPU lacks still runs: AVX-512 panels through
/// the float32 GEMM, AMX rows on emulated tiles.
pub fn product<'b>(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: &PackedA,
    b: impl Into<Right<'b>>,
    threads: usize,
) {
    product_on(dst, dst_rs, accumulate, a, b.into(), threads, false)
}

fn product_on(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: &PackedA,
    b: Right<'_>,
    threads: usize,
    emulate: bool,
) {
    let (m, n) = (a.rows(), b.cols());
    assert_eq!(b.rows(), a.cols(), "inner dimensions");
    assert!(dst_rs >= n, "row stride {dst_rs} for {n} columns");
    assert!(
        super::gemm::span(m, n, dst_rs, 1).is_some_and(|need| dst.len() >= need),
        "{} elements for a {m}x{n} result, rows {dst_rs} apart",
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if a.cols() == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..][..n].fill(0.0);
            }
        }
        return;
    }
    let rows_unit = match &a.data {
        Layout::Panels(_) if native() => MR,
        Layout::Rows(_) => amx::MT,
        _ => return rounded_product(dst, dst_rs, accumulate, a, b, threads),
    };
    // Split the columns (in whole micro-tiles) or, when they are too few, the row blocks.
    let threads = threads.max(1);
    let col_tiles = n.div_ceil(NR);
    let out = Out(dst.as_mut_ptr());
    let ranges: Vec<((usize, usize), (usize, usize))> = if threads == 1 {
        vec![((0, m), (0, n))]
    } else if col_tiles >= 2 * threads || col_tiles >= m.div_ceil(rows_unit) {
        let per = col_tiles.div_ceil(threads) * NR;
        (0..n)
            .step_by(per)
            .map(|j| ((0, m), (j, (j + per).min(n))))
            .collect()
    } else {
        let per = m.div_ceil(rows_unit).div_ceil(threads) * rows_unit;
        (0..m)
            .step_by(per)
            .map(|i| ((i, (i + per).min(m)), (0, n)))
            .collect()
    };
    let kp = a.pairs();
    ranges.par_iter().for_each(|&(rows, cols)| {
        // SAFETY: dst holds (m-1)*dst_rs + n elements (checked above) and each range
        // writes only its own rows x columns of it, the ranges being disjoint; dst is
        // borrowed exclusively for the call.
        let mut share = unsafe { Share::new(out, dst_rs, rows, cols) };
        match &a.data {
            Layout::Rows(ra) => {
                #[cfg(target_arch = "x86_64")]
                if !emulate {
                    if let Some(mut t) = tiles::Hardware::new() {
                        return amx::block(&mut t, &mut share, accumulate, ra, b, kp);
                    }
                }
                let _ = emulate;
                amx::block(
                    &mut tiles::Emulated::default(),
                    &mut share,
                    accumulate,
                    ra,
                    b,
                    kp,
                )
            }
            Layout::Panels(panels) => {
                // SAFETY: `native()` holds (checked above); the share's contract as above.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    avx512::block(out.ptr(), dst_rs, accumulate, panels, kp, b, rows, cols)
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = panels;
            }
            Layout::Rounded(_) => unreachable!("handled above"),
        }
    });
}

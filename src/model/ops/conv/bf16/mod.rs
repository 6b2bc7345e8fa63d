//! bfloat16 matrix products with float32 accumulation (mixed precision), and every unsafe
//! line they need.
//!
//! `dst (+)= a . b` with `a` and `b` float32 views whose elements are rounded to bfloat16
//! (nearest even, as PyTorch's autocast) while they are packed. On a CPU with AVX512_BF16
//! the products run on `vdpbf16ps`, which multiplies pairs of bf16 along the inner dimension
//! and adds both products to a float32 lane; packing therefore stores `a` as pairs
//! `(a[i][2q], a[i][2q+1])` in one u32 (broadcast to all lanes) and `b` as pairs
//! `(b[2q][j], b[2q+1][j])` for 16 columns in one vector. Blocking follows BLIS: panels of
//! `a` of MR rows over the whole inner dimension (packed once per call, shared by the
//! threads), blocks of `b` of KC pairs x NC columns packed per thread, an MR x NR micro-tile
//! in 2*MR registers. Without AVX512_BF16 the operands are rounded the same way and
//! multiplied by the float32 kernels (products of two bf16 are exact in float32), so both
//! paths compute the same mathematical function up to the order of the float32 additions.
#[cfg(target_arch = "x86_64")]
mod pack;
#[cfg(test)]
mod tests;

pub mod amx;
pub mod choose;
pub mod exact;
pub mod tiles;

use super::gemm::Mat;
use amx::RowsA;
#[cfg(target_arch = "x86_64")]
use pack::{pack_a_panel, pack_b, pack_rows};
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

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

/// The kernels that can run a bf16 product; which one runs is chosen by measuring them on
/// this CPU (`ops::kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// AVX512_BF16's `vdpbf16ps` on packed pairs.
    Avx512,
    /// AMX tiles (`tdpbf16ps`), see `amx.rs` and `tiles.rs`.
    Amx,
    /// The float32 GEMM on bf16-rounded copies of the operands (any CPU).
    F32,
}

impl Kernel {
    /// Every kernel, in the order `info` lists them.
    pub const ALL: [Kernel; 3] = [Kernel::Amx, Kernel::Avx512, Kernel::F32];

    /// The name used in `COVID_RESNET_BF16`, files and benchmark lines.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512",
            Kernel::Amx => "amx",
            Kernel::F32 => "f32",
        }
    }

    /// What it is, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Kernel::Avx512 => "AVX-512 BF16 (vdpbf16ps)",
            Kernel::Amx => "AMX tiles (tdpbf16ps)",
            Kernel::F32 => "float32 products of bf16-rounded operands",
        }
    }

    /// Whether this CPU (and, for AMX, the operating system) can run it.
    pub fn available(self) -> bool {
        match self {
            Kernel::Avx512 => native(),
            Kernel::Amx => tiles::granted(),
            Kernel::F32 => true,
        }
    }

    /// The kernel `name` names.
    pub fn named(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }
}

static CURRENT: OnceLock<Kernel> = OnceLock::new();

/// Sets the kernel every bf16 product of this process runs, once (`ops::kernels` does, after
/// measuring); a second call changes nothing.
pub fn set_kernel(k: Kernel) {
    let _ = CURRENT.set(k);
}

/// The kernel bf16 products run: the one set, else AVX-512 where the CPU has it, else the
/// float32 GEMM.
pub fn kernel() -> Kernel {
    CURRENT.get().copied().unwrap_or(if native() {
        Kernel::Avx512
    } else {
        Kernel::F32
    })
}

/// Whether this CPU multiplies bf16 natively (AVX512_BF16, with AVX-512 F and BW).
pub fn native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to bfloat16, as its 16 bits.
#[inline(always)]
fn bits(x: f32) -> u32 {
    crate::model::ops::cpu_op::round_bf16(x).to_bits() as u32
}

/// Packs `b` as [`pack::pack_b`] or [`pack::pack_rows`] do, into `buf` (panels `ps` pairs
/// apart; rows `kc..ps` of each panel left as they are), where the CPU has AVX512_BF16;
/// false elsewhere.
fn pack_b_native(
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

/// `x` rounded to bfloat16 and back (exactly representable in float32).
pub fn round(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// The left operand, packed for one kernel.
pub struct PackedA {
    data: Layout,
    m: usize,
    k: usize,
}

/// [`PackedA`]'s data, in the layout of its kernel.
enum Layout {
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

    /// Packs the `m x k` matrix that `fill` makes row by row, for the current [`kernel`].
    pub fn from_rows(m: usize, k: usize, fill: FillRow<'_>) -> Self {
        Self::from_rows_for(kernel(), m, k, fill)
    }

    /// [`PackedA::from_rows`] for `kern` (AVX-512: panel by panel, through a scratch of MR
    /// rows).
    pub fn from_rows_for(kern: Kernel, m: usize, k: usize, fill: FillRow<'_>) -> Self {
        let _p = crate::model::ops::prof::scope("in conv: bf16 pack a (im2col rows)");
        let data = match kern {
            Kernel::Amx => Layout::Rows(RowsA::from_rows(m, k, fill)),
            Kernel::F32 => Layout::Rounded(rounded(Right::Rows {
                rows: m,
                cols: k,
                fill,
            })),
            Kernel::Avx512 => {
                let kp = k.div_ceil(2);
                let mut data = vec![0u32; m.div_ceil(MR) * kp * MR];
                if kp > 0 {
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

    fn pairs(&self) -> usize {
        self.k.div_ceil(2)
    }
}

/// Writes row `l`, columns `j0..j0 + out.len()` of a matrix into `out`.
pub type FillRow<'a> = &'a (dyn Fn(usize, usize, &mut [f32]) + Sync);

/// The right operand of a product: a matrix view, or a matrix made row by row as it is
/// packed (an im2col matrix that is never written out whole).
#[derive(Clone, Copy)]
pub enum Right<'a> {
    /// A view.
    Mat(Mat<'a, f32>),
    /// `rows x cols`, made by `fill`.
    Rows {
        rows: usize,
        cols: usize,
        fill: FillRow<'a>,
    },
}

impl Right<'_> {
    fn rows(&self) -> usize {
        match self {
            Right::Mat(m) => m.rows(),
            Right::Rows { rows, .. } => *rows,
        }
    }

    fn cols(&self) -> usize {
        match self {
            Right::Mat(m) => m.cols(),
            Right::Rows { cols, .. } => *cols,
        }
    }
}

impl<'a> From<Mat<'a, f32>> for Right<'a> {
    fn from(m: Mat<'a, f32>) -> Self {
        Right::Mat(m)
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
                    block(out.ptr(), dst_rs, accumulate, panels, kp, b, rows, cols)
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = panels;
            }
            Layout::Rounded(_) => unreachable!("handled above"),
        }
    });
}

/// `x` rounded to bf16 and back, written without branches so that a loop of it vectorises.
#[inline(always)]
fn round_fast(x: f32) -> f32 {
    f32::from_bits((crate::model::ops::cpu_op::round_bf16(x).to_bits() as u32) << 16)
}

/// A row-major copy of `m` with every element rounded to bf16.
fn rounded(m: Right<'_>) -> Vec<f32> {
    let (k, n) = (m.rows(), m.cols());
    let mut out = vec![0.0f32; k * n];
    if n == 0 {
        return out;
    }
    match m {
        Right::Mat(b) if b.col_stride() == 1 => {
            let (data, rs) = (b.data(), b.row_stride());
            out.par_chunks_mut(n).enumerate().for_each(|(l, row)| {
                for (d, v) in row.iter_mut().zip(&data[l * rs..][..n]) {
                    *d = round_fast(*v);
                }
            });
        }
        Right::Mat(b) => {
            // Strided columns: blocks of 64 rows, gathered column by column.
            let (data, rs, cs) = (b.data(), b.row_stride(), b.col_stride());
            out.par_chunks_mut(64 * n)
                .enumerate()
                .for_each(|(blk, rows)| {
                    let l0 = blk * 64;
                    for j in 0..n {
                        for (r, row) in rows.chunks_exact_mut(n).enumerate() {
                            row[j] = round_fast(data[(l0 + r) * rs + j * cs]);
                        }
                    }
                });
        }
        Right::Rows { fill, .. } => {
            out.par_chunks_mut(n).enumerate().for_each(|(l, row)| {
                fill(l, 0, row);
                row.iter_mut().for_each(|v| *v = round_fast(*v));
            });
        }
    }
    out
}

/// The float32 GEMM on the bf16-rounded operands (`a` packed for any kernel), its columns
/// split over `threads`.
fn rounded_product(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: &PackedA,
    b: Right<'_>,
    threads: usize,
) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let unpacked;
    let ar: &[f32] = match &a.data {
        Layout::Rounded(r) => r,
        Layout::Panels(p) => {
            let kp = a.pairs();
            unpacked = (0..m * k)
                .map(|ij| {
                    let (i, l) = (ij / k, ij % k);
                    let u = p[((i / MR) * kp + l / 2) * MR + i % MR];
                    f32::from_bits(if l % 2 == 0 { u << 16 } else { u & 0xFFFF_0000 })
                })
                .collect::<Vec<f32>>();
            &unpacked
        }
        Layout::Rows(r) => {
            unpacked = (0..m * k)
                .map(|ij| {
                    let (i, l) = (ij / k, ij % k);
                    let u = r.data[i * r.stride + l / 2];
                    f32::from_bits(if l % 2 == 0 { u << 16 } else { u & 0xFFFF_0000 })
                })
                .collect::<Vec<f32>>();
            &unpacked
        }
    };
    let br = rounded(b);
    let par = if threads > 1 {
        ::gemm::Parallelism::Rayon(threads)
    } else {
        ::gemm::Parallelism::None
    };
    let (a, b) = (Mat::rm(ar, m, k), Mat::rm(&br, k, n));
    if dst_rs == n {
        return super::gemm::matmul(&mut dst[..m * n], accumulate, a, b, par);
    }
    let mut y = vec![0.0f32; m * n];
    super::gemm::matmul(&mut y, false, a, b, par);
    for i in 0..m {
        let row = &mut dst[i * dst_rs..][..n];
        for (d, v) in row.iter_mut().zip(&y[i * n..][..n]) {
            *d = if accumulate { *d + v } else { *v };
        }
    }
}

/// One thread's share: rows `r0..r1` (a multiple of MR from 0) and columns `c0..c1` of dst.
///
/// # Safety
/// AVX512_BF16, F and BW must be available; `dst` must be valid for writes of the rows
/// `r0..r1`, columns `c0..c1` (rows `ldc` apart) and no one else may access them meanwhile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    dst: *mut f32,
    ldc: usize,
    accumulate: bool,
    panels: &[u32],
    kp: usize,
    b: Right<'_>,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) {
    let (mut buf, mut rows_buf): (Vec<u32>, Vec<f32>) = (Vec::new(), Vec::new());
    for jc in (c0..c1).step_by(NC) {
        let nc = NC.min(c1 - jc);
        for q0 in (0..kp).step_by(KC) {
            let kc = KC.min(kp - q0);
            let pp = crate::model::ops::prof::scope("in conv: bf16 pack b");
            // SAFETY: the features are enabled (this function's contract).
            unsafe {
                match b {
                    Right::Mat(b) => pack_b(b, (q0, kc, kc), jc, nc, &mut buf),
                    Right::Rows { rows, fill, .. } => {
                        pack_rows(rows, fill, (q0, kc, kc), (jc, nc), &mut rows_buf, &mut buf)
                    }
                }
            };
            drop(pp);
            let _pk = crate::model::ops::prof::scope("in conv: bf16 kernel");
            let load = accumulate || q0 > 0;
            // Row blocks whose packed `a` (MC x KC u32, 384 KB) stays in L2 while the
            // micro-panels of `b` pass through L1.
            for ic in (r0..r1).step_by(MC) {
                for jp in 0..nc.div_ceil(NR) {
                    let cols = NR.min(nc - jp * NR);
                    let bp = &buf[jp * kc * NR..][..kc * NR];
                    for pr in ic / MR..(ic + MC).min(r1).div_ceil(MR) {
                        let rows = MR.min(r1 - pr * MR);
                        let ap = &panels[(pr * kp + q0) * MR..][..kc * MR];
                        // SAFETY: the tile's rows pr*MR.. (< r1) and columns jc + jp*NR..+cols
                        // (<= c1) lie in this thread's share of dst (the contract); ap and bp
                        // hold kc pairs of MR and NR u32.
                        unsafe {
                            let c = dst.add(pr * MR * ldc + jc + jp * NR);
                            micro_tile(kc, ap, bp, c, ldc, rows, cols, load)
                        }
                    }
                }
            }
        }
    }
}

/// The micro-tile: `c[rows x cols] (+)= a-panel . b-panel` over `kc` pairs.
///
/// # Safety
/// AVX512_BF16, F and BW must be available; `a` holds `kc*MR` and `b` `kc*NR` u32; `c` is
/// valid for reads and writes of `rows` (<= MR) rows of `cols` (<= NR) elements, `ldc` apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_tile(
    kc: usize,
    a: &[u32],
    b: &[u32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    load: bool,
) {
    debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    for q in 0..kc {
        // SAFETY: q < kc, so the loads stay inside a and b (checked lengths).
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(q * NR).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(q * NR + 16).cast()));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*ap.add(q * MR + r) as i32));
                acc_r[0] = _mm512_dpbf16_ps(acc_r[0], av, b0);
                acc_r[1] = _mm512_dpbf16_ps(acc_r[1], av, b1);
            }
        }
    }
    let m0: __mmask16 = if cols >= 16 { !0 } else { (1u16 << cols) - 1 };
    let m1: __mmask16 = if cols >= 32 {
        !0
    } else if cols > 16 {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    for (r, acc_r) in acc.iter().enumerate().take(rows) {
        // SAFETY: row r < rows and the masks cover only columns < cols (the contract).
        unsafe {
            let p = c.add(r * ldc);
            let (mut v0, mut v1) = (acc_r[0], acc_r[1]);
            if load {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, p));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, p.add(16)));
            }
            _mm512_mask_storeu_ps(p, m0, v0);
            _mm512_mask_storeu_ps(p.add(16), m1, v1);
        }
    }
}

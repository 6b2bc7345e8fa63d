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
use super::gemm::Mat;
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

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

/// Tests set this to run the portable path on any CPU (both paths give correct results, so
/// tests running meanwhile are unaffected).
#[cfg(test)]
static FORCE_PORTABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this CPU multiplies bf16 natively (AVX512_BF16, with AVX-512 F and BW).
pub fn native() -> bool {
    #[cfg(test)]
    if FORCE_PORTABLE.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
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
fn bits(x: f32) -> u32 {
    half::bf16::from_f32(x).to_bits() as u32
}

/// `x` rounded to bfloat16 and back (exactly representable in float32).
pub fn round(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// The left operand, packed: panels of MR rows, each holding for every pair `q` of the inner
/// dimension MR u32 (`a[i][2q]` in the low half, `a[i][2q+1]` in the high half; zeros past
/// the matrix).
pub struct PackedA {
    data: Vec<u32>,
    m: usize,
    k: usize,
}

impl PackedA {
    /// Packs `a`, rounding to bf16.
    pub fn new(a: Mat<'_, f32>) -> Self {
        let _p = crate::model::prof::scope("bf16 pack a");
        let (m, k) = (a.rows(), a.cols());
        let kp = k.div_ceil(2);
        let mut data = vec![0u32; m.div_ceil(MR) * kp * MR];
        if kp > 0 {
            data.par_chunks_mut(kp * MR)
                .enumerate()
                .for_each(|(pr, panel)| pack_panel(a, pr * MR, panel));
        }
        Self { data, m, k }
    }

    /// Packs the `m x k` matrix that `fill` makes row by row (panel by panel, through a
    /// scratch of MR rows).
    pub fn from_rows(m: usize, k: usize, fill: FillRow<'_>) -> Self {
        let _p = crate::model::prof::scope("bf16 pack a (rows)");
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
        Self { data, m, k }
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

/// Packs rows `i0..i0 + MR` (fewer at the end) of `a` into one panel of [`PackedA`].
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

/// `dst (m x n, row-major, rows dst_rs apart) (+)= a . b`; panics when the shapes disagree.
/// `threads` > 1 splits the product over that many rayon tasks.
pub fn product<'b>(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: &PackedA,
    b: impl Into<Right<'b>>,
    threads: usize,
) {
    let b = b.into();
    let (m, n) = (a.rows(), b.cols());
    assert_eq!(b.rows(), a.cols(), "inner dimensions");
    assert!(dst_rs >= n, "row stride {dst_rs} for {n} columns");
    assert!(
        m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n,
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
    if !native() {
        return fallback(dst, dst_rs, accumulate, a, b);
    }
    // Split the columns (in whole micro-tiles) or, when they are too few, the row panels.
    let threads = threads.max(1);
    let col_tiles = n.div_ceil(NR);
    let out = Out(dst.as_mut_ptr());
    let ranges: Vec<((usize, usize), (usize, usize))> = if threads == 1 {
        vec![((0, m), (0, n))]
    } else if col_tiles >= 2 * threads || col_tiles >= m.div_ceil(MR) {
        let per = col_tiles.div_ceil(threads) * NR;
        (0..n)
            .step_by(per)
            .map(|j| ((0, m), (j, (j + per).min(n))))
            .collect()
    } else {
        let per = m.div_ceil(MR).div_ceil(threads) * MR;
        (0..m)
            .step_by(per)
            .map(|i| ((i, (i + per).min(m)), (0, n)))
            .collect()
    };
    ranges.par_iter().for_each(|&(rows, cols)| {
        // SAFETY: `native()` holds; dst holds (m-1)*dst_rs + n elements (checked above) and
        // each range writes only its own rows x columns of it, the ranges being disjoint; dst
        // is borrowed exclusively for the call.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            block(out.ptr(), dst_rs, accumulate, a, b, rows, cols)
        }
    });
}

/// Without AVX512_BF16: bf16-rounded copies through the float32 kernels.
fn fallback(dst: &mut [f32], dst_rs: usize, accumulate: bool, a: &PackedA, b: Right<'_>) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let kp = a.pairs();
    let ar: Vec<f32> = (0..m * k)
        .map(|ij| {
            let (i, l) = (ij / k, ij % k);
            let u = a.data[((i / MR) * kp + l / 2) * MR + i % MR];
            f32::from_bits(if l % 2 == 0 { u << 16 } else { u & 0xFFFF_0000 })
        })
        .collect();
    let mut br = vec![0.0f32; k * n];
    for (l, row) in br.chunks_exact_mut(n.max(1)).enumerate().take(k) {
        match b {
            Right::Mat(b) => row
                .iter_mut()
                .enumerate()
                .for_each(|(j, v)| *v = b.at(l, j)),
            Right::Rows { fill, .. } => fill(l, 0, row),
        }
        row.iter_mut().for_each(|v| *v = round(*v));
    }
    let mut y = vec![0.0f32; m * n];
    super::gemm::matmul(
        &mut y,
        false,
        Mat::rm(&ar, m, k),
        Mat::rm(&br, k, n),
        ::gemm::Parallelism::None,
    );
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
unsafe fn block(
    dst: *mut f32,
    ldc: usize,
    accumulate: bool,
    a: &PackedA,
    b: Right<'_>,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) {
    let kp = a.pairs();
    let (mut buf, mut rows_buf): (Vec<u32>, Vec<f32>) = (Vec::new(), Vec::new());
    for jc in (c0..c1).step_by(NC) {
        let nc = NC.min(c1 - jc);
        for q0 in (0..kp).step_by(KC) {
            let kc = KC.min(kp - q0);
            let pp = crate::model::prof::scope("bf16 pack b");
            // SAFETY: the features are enabled (this function's contract).
            unsafe {
                match b {
                    Right::Mat(b) => pack_b(b, q0, kc, jc, nc, &mut buf),
                    Right::Rows { rows, fill, .. } => {
                        pack_rows(rows, fill, (q0, kc, jc, nc), &mut rows_buf, &mut buf)
                    }
                }
            };
            drop(pp);
            let _pk = crate::model::prof::scope("bf16 kernel");
            let load = accumulate || q0 > 0;
            // Row blocks whose packed `a` (MC x KC u32, 384 KB) stays in L2 while the
            // micro-panels of `b` pass through L1.
            for ic in (r0..r1).step_by(MC) {
                for jp in 0..nc.div_ceil(NR) {
                    let cols = NR.min(nc - jp * NR);
                    let bp = &buf[jp * kc * NR..][..kc * NR];
                    for pr in ic / MR..(ic + MC).min(r1).div_ceil(MR) {
                        let rows = MR.min(r1 - pr * MR);
                        let ap = &a.data[(pr * kp + q0) * MR..][..kc * MR];
                        // SAFETY: the tile's rows pr*MR.. (< r1) and columns jc + jp*NR..+cols
                        // (<= c1) lie in this thread's share of dst (the contract); ap and bp
                        // hold kc pairs of MR and NR u32.
                        unsafe {
                            let c = dst.add(pr * MR * ldc + jc + jp * NR);
                            kernel(kc, ap, bp, c, ldc, rows, cols, load)
                        }
                    }
                }
            }
        }
    }
}

/// Packs pairs `q0..q0+kc` of `b`'s rows and its columns `jc..jc+nc` into `buf`: panels of
/// NR columns, each `kc` vectors of NR u32 (`b[2q][j]` low, `b[2q+1][j]` high; zeros past
/// the matrix).
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_b(b: Mat<'_, f32>, q0: usize, kc: usize, jc: usize, nc: usize, buf: &mut Vec<u32>) {
    let (k, n) = (b.rows(), b.cols());
    let panels = nc.div_ceil(NR);
    // Every element is written below (zeros past the matrix), so old contents may stay.
    buf.resize(panels * kc * NR, 0);
    if b.row_stride() == 1 && b.col_stride() != 1 {
        // Transposed: column j's pairs are adjacent; convert 16 pairs at a time and scatter
        // them NR apart.
        let (cs, data) = (b.col_stride(), b.data());
        let idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(NR as i32),
        );
        for j in jc..jc + nc {
            let (jp, c) = ((j - jc) / NR, (j - jc) % NR);
            let l0 = 2 * q0;
            let run = &data[j * cs + l0..][..(k - l0).min(2 * kc)];
            for q in (0..kc).step_by(16) {
                let (l, np) = (2 * q, 16.min(kc - q));
                let w = 32.min(run.len().saturating_sub(l));
                let m_lo: __mmask16 = if w >= 16 { !0 } else { (1u16 << w) - 1 };
                let m_hi: __mmask16 = match w {
                    32 => !0,
                    17..=31 => (1u16 << (w - 16)) - 1,
                    _ => 0,
                };
                let m_out: __mmask16 = if np == 16 { !0 } else { (1u16 << np) - 1 };
                let dst = &mut buf[(jp * kc + q) * NR + c..];
                assert!(dst.len() > (np - 1) * NR);
                // SAFETY: the masked loads read elements l..l + w of the run (w <= its
                // length - l); the scatter writes np elements NR apart from dst[0], inside
                // dst (checked).
                unsafe {
                    let lo = _mm512_maskz_loadu_ps(m_lo, run.as_ptr().add(l.min(run.len())));
                    let hi = _mm512_maskz_loadu_ps(
                        m_hi,
                        run.as_ptr().add((l + 16.min(w)).min(run.len())),
                    );
                    let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                    _mm512_mask_i32scatter_epi32(dst.as_mut_ptr().cast(), m_out, idx, v, 4);
                }
            }
        }
        return;
    }
    if b.col_stride() != 1 {
        for jp in 0..panels {
            for q in 0..kc {
                let (l, v) = (2 * (q0 + q), &mut buf[(jp * kc + q) * NR..][..NR]);
                for (c, d) in v.iter_mut().enumerate() {
                    let j = jc + jp * NR + c;
                    if j < jc + nc {
                        let hi = if l + 1 < k { bits(b.at(l + 1, j)) } else { 0 };
                        *d = bits(b.at(l, j)) | hi << 16;
                    }
                }
            }
        }
        return;
    }
    // Row-major: panel by panel, pair by pair, so the packed block is written in order.
    let (data, rs) = (b.data(), b.row_stride());
    assert!(
        jc + nc <= n && 2 * (q0 + kc) <= k + 1,
        "block inside the matrix"
    );
    for jp in 0..panels {
        for h in 0..NR / 16 {
            let j = jc + jp * NR + h * 16;
            let w = if j < jc + nc { 16.min(jc + nc - j) } else { 0 };
            let mask: __mmask16 = if w == 16 { !0 } else { (1u16 << w) - 1 };
            for q in 0..kc {
                let l = 2 * (q0 + q);
                let d = &mut buf[(jp * kc + q) * NR + h * 16..][..16];
                // SAFETY: with w > 0, row l (< k) and, when l + 1 < k, row l + 1 hold
                // columns j..j + w (j + w <= n) inside the view, whose elements lie in data
                // (Mat's invariant); masked loads touch only those w elements. d holds 16.
                unsafe {
                    let lo = data.as_ptr().wrapping_add(l * rs + j);
                    let hi = if l + 1 < k {
                        _mm512_maskz_loadu_ps(mask, lo.wrapping_add(rs))
                    } else {
                        _mm512_setzero_ps()
                    };
                    let v = pairs(_mm512_maskz_loadu_ps(mask, lo), hi);
                    _mm512_storeu_si512(d.as_mut_ptr().cast(), v);
                }
            }
        }
    }
}

/// [`pack_b`] for a matrix made row by row: each pair of rows is filled into `rows_buf`
/// (two rows of `nc`, in L1) and packed from there.
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_rows(
    k: usize,
    fill: FillRow<'_>,
    (q0, kc, jc, nc): (usize, usize, usize, usize),
    rows_buf: &mut Vec<f32>,
    buf: &mut Vec<u32>,
) {
    let panels = nc.div_ceil(NR);
    buf.resize(panels * kc * NR, 0);
    rows_buf.resize(2 * nc, 0.0);
    let (lo, hi) = rows_buf.split_at_mut(nc);
    for q in 0..kc {
        let l = 2 * (q0 + q);
        fill(l, jc, lo);
        if l + 1 < k {
            fill(l + 1, jc, hi);
        } else {
            hi.fill(0.0);
        }
        for jp in 0..panels {
            for h in 0..NR / 16 {
                let j = jp * NR + h * 16;
                let w = if j < nc { 16.min(nc - j) } else { 0 };
                let mask: __mmask16 = if w == 16 { !0 } else { (1u16 << w) - 1 };
                let d = &mut buf[(jp * kc + q) * NR + h * 16..][..16];
                // SAFETY: the masked loads read lo[j..j + w] and hi[j..j + w] (j + w <= nc,
                // their length); d holds 16.
                unsafe {
                    let v = pairs(
                        _mm512_maskz_loadu_ps(mask, lo.as_ptr().wrapping_add(j)),
                        _mm512_maskz_loadu_ps(mask, hi.as_ptr().wrapping_add(j)),
                    );
                    _mm512_storeu_si512(d.as_mut_ptr().cast(), v);
                }
            }
        }
    }
}

/// Sixteen u32 `bf16(lo[t]) | bf16(hi[t]) << 16`.
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pairs(lo: __m512, hi: __m512) -> __m512i {
    // SAFETY: bit casts between vectors of the same size.
    let (l16, h16): (__m256i, __m256i) = unsafe {
        (
            std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(lo)),
            std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(hi)),
        )
    };
    _mm512_or_si512(
        _mm512_cvtepu16_epi32(l16),
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(h16), 16),
    )
}

/// `d[t] = bf16(lo[t]) | bf16(hi[t]) << 16` for the `lo.len()` (<= 16) elements given (zeros
/// for a missing `hi`).
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pairs16(lo: &[f32], hi: Option<&[f32]>, d: &mut [u32]) {
    let w = lo.len();
    assert!(w <= 16 && d.len() >= w && hi.is_none_or(|h| h.len() == w));
    let mask: __mmask16 = if w == 16 { !0 } else { (1u16 << w) - 1 };
    // SAFETY: the masked loads read the w elements of the slices and the masked store
    // writes w elements of d (lengths checked above).
    unsafe {
        let l = _mm512_maskz_loadu_ps(mask, lo.as_ptr());
        let h = match hi {
            Some(h) => _mm512_maskz_loadu_ps(mask, h.as_ptr()),
            None => _mm512_setzero_ps(),
        };
        _mm512_mask_storeu_epi32(d.as_mut_ptr().cast(), mask, pairs(l, h));
    }
}

/// Packs rows `i0..i0 + rows` of `a` into one panel (layout of [`PackedA`]).
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_a_panel(a: Mat<'_, f32>, i0: usize, rows: usize, panel: &mut [u32]) {
    let (k, kp, data) = (a.cols(), a.cols().div_ceil(2), a.data());
    assert!(rows <= MR && i0 + rows <= a.rows() && panel.len() == kp * MR);
    if a.col_stride() == 1 {
        // Row-major: a row's pairs are adjacent; convert 16 pairs at a time and scatter them
        // MR apart.
        let idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(MR as i32),
        );
        for r in 0..rows {
            let row = &data[(i0 + r) * a.row_stride()..][..k];
            for q in (0..kp).step_by(16) {
                let (l, np) = (2 * q, 16.min(kp - q));
                let w = 32.min(k - l);
                let m_lo: __mmask16 = if w >= 16 { !0 } else { (1u16 << w) - 1 };
                let m_hi: __mmask16 = match w {
                    32 => !0,
                    17..=31 => (1u16 << (w - 16)) - 1,
                    _ => 0,
                };
                let m_out: __mmask16 = if np == 16 { !0 } else { (1u16 << np) - 1 };
                let dst = &mut panel[q * MR + r..];
                assert!(dst.len() > (np - 1) * MR);
                // SAFETY: the masked loads read elements l..l + w of the row (w <= k - l);
                // the scatter writes np elements MR apart from dst[0], inside dst (checked).
                unsafe {
                    let lo = _mm512_maskz_loadu_ps(m_lo, row.as_ptr().add(l));
                    let hi = _mm512_maskz_loadu_ps(m_hi, row.as_ptr().add(l + 16.min(w)));
                    let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                    _mm512_mask_i32scatter_epi32(dst.as_mut_ptr().cast(), m_out, idx, v, 4);
                }
            }
        }
    } else if a.row_stride() == 1 {
        // Transposed: element (i, l) at l * cs + i, so one pair of the panel's rows is two
        // runs of `rows` adjacent elements.
        let cs = a.col_stride();
        for q in 0..kp {
            let l = 2 * q;
            let lo = &data[l * cs + i0..][..rows];
            let hi = (l + 1 < k).then(|| &data[(l + 1) * cs + i0..][..rows]);
            // SAFETY: the features are enabled (this function's contract).
            unsafe { pairs16(lo, hi, &mut panel[q * MR..][..MR]) };
        }
    } else {
        for r in 0..rows {
            for q in 0..kp {
                let hi = if 2 * q + 1 < k {
                    bits(a.at(i0 + r, 2 * q + 1))
                } else {
                    0
                };
                panel[q * MR + r] = bits(a.at(i0 + r, 2 * q)) | hi << 16;
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
unsafe fn kernel(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact (f64) products of the bf16-rounded operands, and the sum of |terms| per element.
    fn reference(a: Mat<'_, f32>, b: Mat<'_, f32>) -> (Vec<f64>, Vec<f64>) {
        let (m, k, n) = (a.rows(), a.cols(), b.cols());
        let mut y = vec![0.0; m * n];
        let mut s = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    let t = round(a.at(i, l)) as f64 * round(b.at(l, j)) as f64;
                    y[i * n + j] += t;
                    s[i * n + j] += t.abs();
                }
            }
        }
        (y, s)
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        // A fixed pseudo-random sequence in (-2, 2) with every bit of the mantissa used.
        let mut x = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f64 / u32::MAX as f64 * 4.0 - 2.0) as f32
            })
            .collect()
    }

    /// Bound on |computed - exact| for a float32 sum of k exact products (bf16 x bf16 is
    /// exact in float32): the recursive-summation bound gamma_k * sum|terms|, gamma_k =
    /// k*u / (1 - k*u) with u = 2^-24; +2 for the previous contents when accumulating.
    fn check(got: &[f32], want: &[f64], s: &[f64], k: usize, base: Option<&[f32]>) {
        let u = 2f64.powi(-24);
        let gamma = (k + 2) as f64 * u / (1.0 - (k + 2) as f64 * u);
        for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
            let (w, s) = match base {
                Some(b) => (w + b[idx] as f64, s[idx] + (b[idx] as f64).abs()),
                None => (w, s[idx]),
            };
            assert!(
                (g as f64 - w).abs() <= gamma * s + f64::MIN_POSITIVE,
                "element {idx}: {g} against {w} (bound {})",
                gamma * s
            );
        }
    }

    #[test]
    fn products_are_the_bf16_operands_exact_products_summed_in_f32() {
        // Edges of every blocking: rows not a multiple of MR, columns of NR, an odd inner
        // dimension, more pairs than KC, more columns than NC, transposed views.
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (9, 33, 17),
            (17, 401, 40),
            (8, 64, 800),
            (9, 33, 790),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let (av, bv) = (data(m * k, 1), data(k * n, 2));
                let a = if ta {
                    Mat::tr(&av, k, m)
                } else {
                    Mat::rm(&av, m, k)
                };
                let b = if tb {
                    Mat::tr(&bv, n, k)
                } else {
                    Mat::rm(&bv, k, n)
                };
                let (want, s) = reference(a, b);
                let pa = PackedA::new(a);
                // The same left operand made row by row packs to the same bits.
                let fill_a = |i: usize, l0: usize, out: &mut [f32]| {
                    for (c, v) in out.iter_mut().enumerate() {
                        *v = a.at(i, l0 + c);
                    }
                };
                assert_eq!(PackedA::from_rows(m, k, &fill_a).data, pa.data);
                for threads in [1, 3] {
                    let mut y = vec![f32::NAN; m * n];
                    product(&mut y, n, false, &pa, b, threads);
                    check(&y, &want, &s, k, None);
                    let base = data(m * n, 3);
                    let mut y = base.clone();
                    product(&mut y, n, true, &pa, b, threads);
                    check(&y, &want, &s, k, Some(&base));
                }
                let mut y = vec![f32::NAN; m * n];
                fallback(&mut y, n, false, &pa, b.into());
                check(&y, &want, &s, k, None);
                // The same matrix made row by row.
                let fill = |l: usize, j0: usize, out: &mut [f32]| {
                    for (c, v) in out.iter_mut().enumerate() {
                        *v = b.at(l, j0 + c);
                    }
                };
                let rows = Right::Rows {
                    rows: k,
                    cols: n,
                    fill: &fill,
                };
                for threads in [1, 2] {
                    let mut y = vec![f32::NAN; m * n];
                    product(&mut y, n, false, &pa, rows, threads);
                    check(&y, &want, &s, k, None);
                }
                let mut y = vec![f32::NAN; m * n];
                fallback(&mut y, n, false, &pa, rows);
                check(&y, &want, &s, k, None);
            }
        }
    }

    #[test]
    fn the_portable_path_packs_and_multiplies_the_same() {
        // Both paths on this machine, whatever its CPU: AVX512_BF16 where it has it, then
        // the scalar packing and float32 products.
        let (m, k, n) = (19, 37, 45);
        let (av, bv) = (data(m * k, 8), data(k * n, 9));
        let (a, b) = (Mat::rm(&av, m, k), Mat::tr(&bv, n, k));
        let (want, s) = reference(a, b);
        let native_bits = PackedA::new(a).data;
        FORCE_PORTABLE.store(true, std::sync::atomic::Ordering::Relaxed);
        let pa = PackedA::new(a);
        let mut y = vec![f32::NAN; m * n];
        product(&mut y, n, false, &pa, b, 2);
        FORCE_PORTABLE.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(pa.data, native_bits);
        check(&y, &want, &s, k, None);
    }

    #[test]
    fn a_strided_destination_keeps_the_elements_between_rows() {
        let (m, k, n, ld) = (10, 6, 33, 50);
        let (av, bv) = (data(m * k, 4), data(k * n, 5));
        let (a, b) = (Mat::rm(&av, m, k), Mat::rm(&bv, k, n));
        let mut y = vec![7.0f32; (m - 1) * ld + n];
        product(&mut y, ld, false, &PackedA::new(a), b, 2);
        let (want, s) = reference(a, b);
        for i in 0..m {
            check(
                &y[i * ld..][..n],
                &want[i * n..][..n],
                &s[i * n..][..n],
                k,
                None,
            );
            if i + 1 < m {
                assert!(y[i * ld + n..(i + 1) * ld].iter().all(|&v| v == 7.0));
            }
        }
    }

    #[test]
    fn rounding_is_to_nearest_even_as_pytorch() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even (1.0);
        // 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6.
        assert_eq!(round(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(round(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
        assert!(round(f32::NAN).is_nan());
    }
}

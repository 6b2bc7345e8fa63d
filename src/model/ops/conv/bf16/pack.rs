//! Packing the operands of the bf16 products (layouts in `mod.rs`): float32 rounded to
//! bf16 pairs, in AVX-512 registers, with the transposes in registers too.
use super::{bits, FillRow, FillRow16, Mat, MR, NR};
use half::bf16;
use std::arch::x86_64::*;

/// Packs pairs `q0..q0+kc` of `b`'s rows and its columns `jc..jc+nc` into `buf`: panels of
/// NR columns, each `ps` (>= kc) vectors of NR u32 of which the first `kc` are written
/// (`b[2q][j]` low, `b[2q+1][j]` high; zeros past the matrix).
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_b(
    b: Mat<'_, f32>,
    (q0, kc, ps): (usize, usize, usize),
    jc: usize,
    nc: usize,
    buf: &mut Vec<u32>,
) {
    let (k, n) = (b.rows(), b.cols());
    let panels = nc.div_ceil(NR);
    assert!(ps >= kc);
    // Every element of the first kc rows is written below (zeros past the matrix), so old
    // contents may stay.
    buf.resize(panels * ps * NR, 0);
    if b.row_stride() == 1 && b.col_stride() != 1 {
        // Transposed: column j's pairs are adjacent. Convert 16 pairs of 8 columns (one
        // vector a column), transpose the block in registers and store it in order.
        let (cs, data) = (b.col_stride(), b.data());
        let l0 = 2 * q0;
        let len = (k - l0).min(2 * kc);
        for j8 in (jc..jc + nc).step_by(8) {
            let (jp, c8) = ((j8 - jc) / NR, (j8 - jc) % NR);
            for q in (0..kc).step_by(16) {
                let l = 2 * q;
                let w = 32.min(len.saturating_sub(l));
                let m_lo: __mmask16 = if w >= 16 { !0 } else { (1u16 << w) - 1 };
                let m_hi: __mmask16 = match w {
                    32 => !0,
                    17..=31 => (1u16 << (w - 16)) - 1,
                    _ => 0,
                };
                let mut v = [_mm512_setzero_si512(); 8];
                for (c, vc) in v.iter_mut().enumerate().take((jc + nc - j8).min(8)) {
                    let run = &data[(j8 + c) * cs + l0..][..len];
                    // SAFETY: the masked loads read elements l..l + w of the run (w <= its
                    // length - l; with w = 0 nothing is read).
                    unsafe {
                        let lo = _mm512_maskz_loadu_ps(m_lo, run.as_ptr().wrapping_add(l));
                        let hi =
                            _mm512_maskz_loadu_ps(m_hi, run.as_ptr().wrapping_add(l + 16.min(w)));
                        *vc = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
                    }
                }
                store_transposed(v, buf, (jp, ps, q, kc), c8);
            }
        }
        return;
    }
    if b.col_stride() != 1 {
        for jp in 0..panels {
            for q in 0..kc {
                let (l, v) = (2 * (q0 + q), &mut buf[(jp * ps + q) * NR..][..NR]);
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
        jc.checked_add(nc).is_some_and(|e| e <= n)
            && q0
                .checked_add(kc)
                .and_then(|q| q.checked_mul(2))
                .is_some_and(|e| e <= k.saturating_add(1)),
        "block inside the matrix"
    );
    for jp in 0..panels {
        for h in 0..NR / 16 {
            let j = jc + jp * NR + h * 16;
            let w = if j < jc + nc { 16.min(jc + nc - j) } else { 0 };
            let mask: __mmask16 = if w == 16 { !0 } else { (1u16 << w) - 1 };
            for q in 0..kc {
                let l = 2 * (q0 + q);
                let d = &mut buf[(jp * ps + q) * NR + h * 16..][..16];
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
pub(super) unsafe fn pack_rows(
    k: usize,
    fill: FillRow<'_>,
    (q0, kc, ps): (usize, usize, usize),
    (jc, nc): (usize, usize),
    rows_buf: &mut Vec<f32>,
    buf: &mut Vec<u32>,
) {
    let panels = nc.div_ceil(NR);
    assert!(ps >= kc);
    buf.resize(panels * ps * NR, 0);
    rows_buf.resize(2 * nc, 0.0);
    let (lo, hi) = rows_buf.split_at_mut(nc);
    for q in 0..kc {
        row_pair(fill, k, 2 * (q0 + q), jc, (lo, hi), 0.0);
        for jp in 0..panels {
            for h in 0..NR / 16 {
                let j = jp * NR + h * 16;
                let w = if j < nc { 16.min(nc - j) } else { 0 };
                let mask: __mmask16 = if w == 16 { !0 } else { (1u16 << w) - 1 };
                let d = &mut buf[(jp * ps + q) * NR + h * 16..][..16];
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

/// Rows `l` and `l + 1` (zeros past the matrix's `k` rows), columns `jc..`, of the matrix
/// that `fill` makes, into `lo` and `hi`.
fn row_pair<T: Copy>(
    fill: &(dyn Fn(usize, usize, &mut [T]) + Sync),
    k: usize,
    l: usize,
    jc: usize,
    (lo, hi): (&mut [T], &mut [T]),
    zero: T,
) {
    fill(l, jc, lo);
    if l + 1 < k {
        fill(l + 1, jc, hi);
    } else {
        hi.fill(zero);
    }
}

/// [`pack_rows`] for a matrix of bf16 values made row by row as bf16 (`fill`): each pair
/// of rows is filled into `rows_buf` and its bits interleaved, with no conversion.
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_rows16(
    k: usize,
    fill: FillRow16<'_>,
    (q0, kc, ps): (usize, usize, usize),
    (jc, nc): (usize, usize),
    rows_buf: &mut Vec<bf16>,
    buf: &mut Vec<u32>,
) {
    let panels = nc.div_ceil(NR);
    assert!(ps >= kc);
    buf.resize(panels * ps * NR, 0);
    rows_buf.resize(2 * nc, bf16::ZERO);
    let (lo, hi) = rows_buf.split_at_mut(nc);
    for q in 0..kc {
        row_pair(fill, k, 2 * (q0 + q), jc, (lo, hi), bf16::ZERO);
        for jp in 0..panels {
            let j = jp * NR;
            let w = NR.min(nc - j);
            let mask: __mmask32 = if w == NR { !0 } else { (1u32 << w) - 1 };
            let d = &mut buf[(jp * ps + q) * NR..][..NR];
            // SAFETY: the masked loads read lo[j..j + w] and hi[j..j + w] (j + w <= nc, their
            // length; bf16 is a u16); d holds NR = 32 u32, written as two vectors of 16.
            unsafe {
                let l16 = _mm512_maskz_loadu_epi16(mask, lo.as_ptr().add(j).cast());
                let h16 = _mm512_maskz_loadu_epi16(mask, hi.as_ptr().add(j).cast());
                store_interleaved(l16, h16, d);
            }
        }
    }
}

/// Stores the 32 u32 `lo[t] | hi[t] << 16` of two vectors of 32 bf16 into `d` (32 long).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn store_interleaved(lo: __m512i, hi: __m512i, d: &mut [u32]) {
    assert!(d.len() >= 32);
    let halves = [
        (_mm512_castsi512_si256(lo), _mm512_castsi512_si256(hi)),
        (
            _mm512_extracti64x4_epi64::<1>(lo),
            _mm512_extracti64x4_epi64::<1>(hi),
        ),
    ];
    for (t, (l, h)) in halves.into_iter().enumerate() {
        let v = _mm512_or_si512(
            _mm512_cvtepu16_epi32(l),
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16),
        );
        // SAFETY: writes d[16 t..16 t + 16], inside d (checked above).
        unsafe { _mm512_storeu_si512(d.as_mut_ptr().add(16 * t).cast(), v) };
    }
}

/// [`pack_b`] for a matrix of bf16 values (a gradient stored in bf16): the same layout, from
/// their bits as they are. Transposed, a column's adjacent pair is already the u32 packed;
/// row-major, two rows' values are interleaved.
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_b16(
    b: Mat<'_, bf16>,
    (q0, kc, ps): (usize, usize, usize),
    (jc, nc): (usize, usize),
    buf: &mut Vec<u32>,
) {
    let (k, n) = (b.rows(), b.cols());
    let panels = nc.div_ceil(NR);
    assert!(
        ps >= kc
            && jc.checked_add(nc).is_some_and(|e| e <= n)
            && q0
                .checked_add(kc)
                .and_then(|q| q.checked_mul(2))
                .is_some_and(|e| e <= k.saturating_add(1)),
        "block inside the matrix"
    );
    buf.resize(panels * ps * NR, 0);
    let (data, rs, cs) = (b.data(), b.row_stride(), b.col_stride());
    let l0 = 2 * q0;
    let len = (k - l0).min(2 * kc);
    if rs == 1 && cs != 1 {
        // Transposed: 16 pairs of each of 8 columns (one vector a column), transposed in
        // registers as `pack_b` does.
        for j8 in (jc..jc + nc).step_by(8) {
            let (jp, c8) = ((j8 - jc) / NR, (j8 - jc) % NR);
            for q in (0..kc).step_by(16) {
                let w = 32.min(len.saturating_sub(2 * q));
                let m: __mmask32 = if w == 32 { !0 } else { (1u32 << w) - 1 };
                let mut v = [_mm512_setzero_si512(); 8];
                for (c, vc) in v.iter_mut().enumerate().take((jc + nc - j8).min(8)) {
                    let run = &data[(j8 + c) * cs + l0..][..len];
                    // SAFETY: the masked load reads elements 2q..2q + w of the run (w <= its
                    // length - 2q; with w = 0 nothing is read).
                    *vc = unsafe {
                        _mm512_maskz_loadu_epi16(m, run.as_ptr().wrapping_add(2 * q).cast())
                    };
                }
                store_transposed(v, buf, (jp, ps, q, kc), c8);
            }
        }
        return;
    }
    if cs == 1 {
        // Row-major: rows l and l + 1 interleaved, 32 columns at a time.
        for jp in 0..panels {
            let j = jc + jp * NR;
            let w = NR.min(jc + nc - j);
            let m: __mmask32 = if w == 32 { !0 } else { (1u32 << w) - 1 };
            for q in 0..kc {
                let l = l0 + 2 * q;
                let d = &mut buf[(jp * ps + q) * NR..][..NR];
                let lo = &data[l * rs + j..][..w];
                let hi = (l + 1 < k).then(|| &data[(l + 1) * rs + j..][..w]);
                // SAFETY: the masked loads read the w elements of lo and hi.
                unsafe {
                    let l16 = _mm512_maskz_loadu_epi16(m, lo.as_ptr().cast());
                    let h16 = match hi {
                        Some(h) => _mm512_maskz_loadu_epi16(m, h.as_ptr().cast()),
                        None => _mm512_setzero_si512(),
                    };
                    store_interleaved(l16, h16, d);
                }
            }
        }
        return;
    }
    for jp in 0..panels {
        for q in 0..kc {
            let l = l0 + 2 * q;
            for c in 0..NR.min(nc - jp * NR) {
                let j = jc + jp * NR + c;
                let hi = if l + 1 < k {
                    b.at(l + 1, j).to_bits() as u32
                } else {
                    0
                };
                buf[(jp * ps + q) * NR + c] = b.at(l, j).to_bits() as u32 | hi << 16;
            }
        }
    }
}

/// Transposes 16 pairs of 8 columns (one vector a column) in registers and stores them into
/// panel `jp` (panels `ps` pairs of NR apart) at pairs `q..` (those below `kc`), columns
/// `c8..c8 + 8` of the panel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn store_transposed(
    v: [__m512i; 8],
    buf: &mut [u32],
    (jp, ps, q, kc): (usize, usize, usize, usize),
    c8: usize,
) {
    for (t, o) in transpose_8x16(v).iter().enumerate() {
        for (half, pair) in [(0, q + 2 * t), (1, q + 2 * t + 1)] {
            if pair >= kc {
                return;
            }
            let d = &mut buf[(jp * ps + pair) * NR + c8..][..8];
            let x = if half == 0 {
                _mm512_castsi512_si256(*o)
            } else {
                _mm512_extracti64x4_epi64::<1>(*o)
            };
            // SAFETY: writes 8 u32 into d (8 long).
            unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast(), x) };
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

/// The transpose of 8 rows of 16 u32 into 16 columns of 8, as 8 vectors: vector t holds
/// columns 2t and 2t + 1 (each the 8 rows in order).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose_8x16(v: [__m512i; 8]) -> [__m512i; 8] {
    // Rows 2i, 2i+1 interleaved: 64-bit element c = (v[2i][c], v[2i+1][c]).
    let i32lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let i32hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let mut e = [_mm512_setzero_si512(); 8];
    for i in 0..4 {
        e[2 * i] = _mm512_permutex2var_epi32(v[2 * i], i32lo, v[2 * i + 1]); // columns 0..8
        e[2 * i + 1] = _mm512_permutex2var_epi32(v[2 * i], i32hi, v[2 * i + 1]);
        // 8..16
    }
    // Rows 4j..4j+4: 128-bit element c = the four rows at column c.
    let i64lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    let i64hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    let mut f = [_mm512_setzero_si512(); 8];
    for j in 0..2 {
        for h in 0..2 {
            // e[4j + h] holds rows 4j, 4j+1 and e[4j + 2 + h] rows 4j+2, 4j+3, for the
            // columns 8h..8h+8.
            let (x, y) = (e[4 * j + h], e[4 * j + 2 + h]);
            f[4 * j + 2 * h] = _mm512_permutex2var_epi64(x, i64lo, y); // columns 8h..8h+4
            f[4 * j + 2 * h + 1] = _mm512_permutex2var_epi64(x, i64hi, y); // 8h+4..8h+8
        }
    }
    // All 8 rows: 256-bit element c = rows 0..4 then 4..8 at column c.
    let i128lo = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    let i128hi = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    let mut out = [_mm512_setzero_si512(); 8];
    for g in 0..4 {
        // f[g] holds rows 0..4 and f[4 + g] rows 4..8 for the columns 4g..4g+4.
        out[2 * g] = _mm512_permutex2var_epi64(f[g], i128lo, f[4 + g]); // 4g, 4g+1
        out[2 * g + 1] = _mm512_permutex2var_epi64(f[g], i128hi, f[4 + g]); // 4g+2, 4g+3
    }
    out
}

/// Packs `rows` (<= MR) rows of bf16 values, each `2 kp` long (an odd row's last pair ends
/// in a zero), into one panel (layout of [`PackedA`]): a row's adjacent pair is already the
/// u32 the panel holds, so 16 of each row are transposed in registers and stored.
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_a_panel16(rows16: &[bf16], kp: usize, rows: usize, panel: &mut [u32]) {
    assert!(
        rows <= MR
            && kp.checked_mul(2 * rows).is_some_and(|n| n == rows16.len())
            && kp.checked_mul(MR) == Some(panel.len())
    );
    for q in (0..kp).step_by(16) {
        let np = 16.min(kp - q);
        let m: __mmask16 = if np == 16 { !0 } else { (1u16 << np) - 1 };
        let mut v = [_mm512_setzero_si512(); MR];
        for (r, vr) in v.iter_mut().enumerate().take(rows) {
            let row = &rows16[r * 2 * kp..][..2 * kp];
            // SAFETY: the masked load reads pairs q..q + np of the row, elements
            // 2q..2(q + np) <= 2 kp, its length.
            *vr = unsafe { _mm512_maskz_loadu_epi32(m, row.as_ptr().add(2 * q).cast()) };
        }
        store_pairs(v, &mut panel[q * MR..][..np * MR]);
    }
}

/// Transposes 8 rows of 16 pairs (one vector a row) in registers and stores the first
/// `dst.len()` (<= 128) u32 of the result, pair by pair (MR rows each), into `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn store_pairs(v: [__m512i; MR], dst: &mut [u32]) {
    assert!(dst.len() <= 16 * MR);
    for (t, o) in transpose_8x16(v).iter().enumerate() {
        // Vector t holds pairs 2t and 2t + 1 of the MR rows.
        let have = dst.len().saturating_sub(t * 16).min(16);
        if have == 0 {
            break;
        }
        let m: __mmask16 = if have == 16 { !0 } else { (1u16 << have) - 1 };
        // SAFETY: writes `have` elements from dst[t * 16], inside dst.
        unsafe { _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(t * 16).cast(), m, *o) };
    }
}

/// Packs rows `i0..i0 + rows` of `a` into one panel (layout of [`PackedA`]).
///
/// # Safety
/// AVX512_BF16, F and BW must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(super) unsafe fn pack_a_panel(a: Mat<'_, f32>, i0: usize, rows: usize, panel: &mut [u32]) {
    let (k, kp, data) = (a.cols(), a.cols().div_ceil(2), a.data());
    assert!(
        rows <= MR
            && i0.checked_add(rows).is_some_and(|e| e <= a.rows())
            && kp.checked_mul(MR) == Some(panel.len())
    );
    if a.col_stride() == 1 {
        // Row-major: a row's pairs are adjacent. Convert 16 pairs of each of the MR rows
        // (one vector a row), transpose the 8 x 16 block in registers and store it in order.
        for q in (0..kp).step_by(16) {
            let (l, np) = (2 * q, 16.min(kp - q));
            let w = 32.min(k - l);
            let m_lo: __mmask16 = if w >= 16 { !0 } else { (1u16 << w) - 1 };
            let m_hi: __mmask16 = match w {
                32 => !0,
                17..=31 => (1u16 << (w - 16)) - 1,
                _ => 0,
            };
            let mut v = [_mm512_setzero_si512(); MR];
            for (r, vr) in v.iter_mut().enumerate().take(rows) {
                let row = &data[(i0 + r) * a.row_stride()..][..k];
                // SAFETY: the masked loads read elements l..l + w of the row (w <= k - l).
                unsafe {
                    let lo = _mm512_maskz_loadu_ps(m_lo, row.as_ptr().add(l));
                    let hi = _mm512_maskz_loadu_ps(m_hi, row.as_ptr().add(l + 16.min(w)));
                    *vr = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
                }
            }
            store_pairs(v, &mut panel[q * MR..][..np * MR]);
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

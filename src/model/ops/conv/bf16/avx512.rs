//! The AVX512_BF16 kernel: `vdpbf16ps` on operands packed as bf16 pairs (`pack.rs`), an
//! MR x NR micro-tile in 2*MR registers, BLIS blocking (KC pairs x NC columns of `b` per
//! thread, MC rows of `a` kept in L2).
use super::pack::{pack_b, pack_b16, pack_rows, pack_rows16};
use super::{Right, KC, MC, MR, NC, NR};
use std::arch::x86_64::*;

/// One thread's share: rows `r0..r1` (a multiple of MR from 0) and columns `c0..c1` of dst.
///
/// # Safety
/// AVX512_BF16, F and BW must be available; `dst` must be valid for writes of the rows
/// `r0..r1`, columns `c0..c1` (rows `ldc` apart) and no one else may access them meanwhile.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block(
    dst: *mut f32,
    ldc: usize,
    accumulate: bool,
    panels: &[u32],
    kp: usize,
    b: Right<'_>,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) {
    let (mut buf, mut rows_buf, mut rows16) = (Vec::new(), Vec::new(), Vec::new());
    for jc in (c0..c1).step_by(NC) {
        let nc = NC.min(c1 - jc);
        for q0 in (0..kp).step_by(KC) {
            let kc = KC.min(kp - q0);
            let pp = crate::model::ops::prof::scope("in conv: bf16 pack b");
            // SAFETY: the features are enabled (this function's contract).
            unsafe {
                match b {
                    Right::Mat(b) => pack_b(b, (q0, kc, kc), jc, nc, &mut buf),
                    Right::Mat16(b) => pack_b16(b, (q0, kc, kc), (jc, nc), &mut buf),
                    Right::Rows {
                        rows,
                        fill16: Some(fill16),
                        ..
                    } => pack_rows16(rows, fill16, (q0, kc, kc), (jc, nc), &mut rows16, &mut buf),
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
    // SAFETY: the features are enabled; c's rows as the contract says.
    unsafe { store_tile(&acc, c, ldc, (rows, cols), load) }
}

/// Writes the first `rows` rows and `cols` columns of a micro-tile's accumulators to `c`
/// (rows `ldc` apart), added to what `c` holds when `load`.
///
/// # Safety
/// AVX-512 F must be available; `c` must be valid for reads and writes of `rows` (<= MR)
/// rows of `cols` (<= NR) elements, `ldc` apart.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn store_tile(
    acc: &[[__m512; 2]; MR],
    c: *mut f32,
    ldc: usize,
    (rows, cols): (usize, usize),
    load: bool,
) {
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

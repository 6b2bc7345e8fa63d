//! bf16 products on AMX tiles (safe code over [`Tiles`]; the instructions and the output's
//! raw pointer live in `tiles.rs` and `mod.rs`).
//!
//! Blocking as the AVX-512 path (BLIS): a block of `b` of KC pairs x NC columns packed per
//! thread, then strips of 32 rows of `a` passed over it. The micro-tile is 32 x 32 floats in
//! four result tiles (C0 C1 / C2 C3), fed by two A tiles (rows 0..16 and 16..32) and two B
//! tiles (columns 0..16 and 16..32), 16 pairs of the inner dimension per step:
//!   C0 += A0.B0, C1 += A0.B1, C2 += A1.B0, C3 += A1.B1.
//! `a` is packed once per product as rows of bf16 pairs ([`RowsA`]: rows padded to 32 and
//! pairs to 16 with zeros, so that every tile load is whole); `b` in panels of 32 columns
//! whose pair rows are padded to 16 with zeros. Results pass through a 32 x 32 scratch, so
//! the edges of the output need no special tiles.
use super::tiles::{Tiles, COLS, ROWS};
use super::{bits, FillRow, Mat, Right, Share, NR};

use rayon::prelude::*;

/// Rows of the micro-tile (two A tiles).
pub const MT: usize = 2 * ROWS;
/// Columns of the micro-tile (two B tiles); the packed panels of `b` are this wide.
const NT: usize = 2 * COLS;
/// Pairs of the inner dimension per packed block of `b` (a multiple of 16).
const KC: usize = 192;
/// Columns per packed block of `b`.
const NC: usize = 768;

const _: () = assert!(NT == NR && KC.is_multiple_of(ROWS));

/// The left operand for the tiles: row `i` holds its `stride` u32 pairs
/// (`a[i][2q]` low, `a[i][2q+1]` high), zeros past the matrix; `m` padded to [`MT`] rows
/// and `stride` to a multiple of 16 pairs.
pub struct RowsA {
    pub(super) data: Vec<u32>,
    pub(super) stride: usize,
}

impl RowsA {
    /// Packs the `m x k` matrix whose row `i` `row(i, out)` writes into `out` (`k` long).
    pub fn new(m: usize, k: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> Self {
        let stride = k.div_ceil(2).next_multiple_of(ROWS).max(ROWS);
        let mut data = vec![0u32; m.next_multiple_of(MT).max(MT) * stride];
        data.par_chunks_mut(stride)
            .take(m)
            .enumerate()
            .for_each_init(Vec::new, |scratch: &mut Vec<f32>, (i, d)| {
                scratch.resize(k, 0.0);
                row(i, scratch);
                for (q, p) in scratch.chunks(2).enumerate() {
                    let hi = p.get(1).map_or(0, |&v| bits(v));
                    d[q] = bits(p[0]) | hi << 16;
                }
            });
        Self { data, stride }
    }

    /// [`RowsA::new`] of a view.
    pub fn of(a: Mat<'_, f32>) -> Self {
        Self::new(a.rows(), a.cols(), |i, out| {
            for (l, v) in out.iter_mut().enumerate() {
                *v = a.at(i, l);
            }
        })
    }

    /// [`RowsA::new`] of a matrix made row by row.
    pub fn from_rows(m: usize, k: usize, fill: FillRow<'_>) -> Self {
        Self::new(m, k, |i, out| fill(i, 0, out))
    }
}

/// Packs pairs `q0..q0 + kc` of `b`'s rows, columns `jc..jc + nc`, into `buf`: panels of
/// [`NT`] columns, each `kc16` (>= kc, a multiple of 16) pair rows of NT u32, zeros past the
/// matrix and in the padding rows.
fn pack_b(
    b: Right<'_>,
    (q0, kc, kc16): (usize, usize, usize),
    (jc, nc): (usize, usize),
) -> Vec<u32> {
    let mut buf = vec![0u32; nc.div_ceil(NT) * kc16 * NT];
    // The padding rows stay zero: the buffer is new.
    if super::pack_b_native(b, (q0, kc, kc16), (jc, nc), &mut buf) {
        return buf;
    }
    pack_b_portable(b, (q0, kc, kc16), (jc, nc))
}

/// [`pack_b`] in scalar code, for any CPU.
fn pack_b_portable(
    b: Right<'_>,
    (q0, kc, kc16): (usize, usize, usize),
    (jc, nc): (usize, usize),
) -> Vec<u32> {
    let k = b.rows();
    let mut buf = vec![0u32; nc.div_ceil(NT) * kc16 * NT];
    let (mut lo, mut hi) = (vec![0.0f32; nc], vec![0.0f32; nc]);
    for q in 0..kc {
        let l = 2 * (q0 + q);
        row_of(b, l, jc, &mut lo);
        if l + 1 < k {
            row_of(b, l + 1, jc, &mut hi);
        } else {
            hi.fill(0.0);
        }
        for (c, (x, y)) in lo.iter().zip(&hi).enumerate() {
            buf[((c / NT) * kc16 + q) * NT + c % NT] = bits(*x) | bits(*y) << 16;
        }
    }
    buf
}

/// Row `l`, columns `j0..j0 + out.len()` of `b`.
fn row_of(b: Right<'_>, l: usize, j0: usize, out: &mut [f32]) {
    match b {
        Right::Mat(m) => out
            .iter_mut()
            .enumerate()
            .for_each(|(c, v)| *v = m.at(l, j0 + c)),
        Right::Mat16(m) => out
            .iter_mut()
            .enumerate()
            .for_each(|(c, v)| *v = m.at(l, j0 + c).to_f32()),
        Right::Rows { fill, .. } => fill(l, j0, out),
    }
}

/// One thread's share of `dst (+)= a . b`: the rows and columns of `out` (the rows start at
/// a multiple of [`MT`]), on `tiles`.
pub fn block(
    tiles: &mut impl Tiles,
    out: &mut Share,
    accumulate: bool,
    a: &RowsA,
    b: Right<'_>,
    kp: usize,
) {
    let ((r0, r1), (c0, c1)) = (out.rows(), out.cols());
    assert_eq!(r0 % MT, 0, "a share starts at a multiple of {MT} rows");
    let mut c = vec![0.0f32; MT * NT];
    tiles.start();
    for jc in (c0..c1).step_by(NC) {
        let nc = NC.min(c1 - jc);
        for q0 in (0..kp).step_by(KC) {
            let kc = KC.min(kp - q0);
            let kc16 = kc.next_multiple_of(ROWS);
            let buf = {
                let _p = crate::model::ops::prof::scope("in conv: bf16 pack b");
                pack_b(b, (q0, kc, kc16), (jc, nc))
            };
            let _pk = crate::model::ops::prof::scope("in conv: bf16 kernel");
            let load = accumulate || q0 > 0;
            for i in (r0..r1).step_by(MT) {
                let rows = MT.min(r1 - i);
                let a0 = &a.data[i * a.stride + q0..];
                let a1 = &a.data[(i + ROWS) * a.stride + q0..];
                for jp in 0..nc.div_ceil(NT) {
                    let (j, cols) = (jc + jp * NT, NT.min(nc - jp * NT));
                    if load {
                        out.read((i, j), (rows, cols), &mut c, NT);
                        for (t, off) in [(0, 0), (1, COLS), (2, ROWS * NT), (3, ROWS * NT + COLS)] {
                            tiles.load_f32(t, &c[off..], NT);
                        }
                    } else {
                        (0..4).for_each(|t| tiles.zero(t));
                    }
                    let panel = &buf[jp * kc16 * NT..][..kc16 * NT];
                    for s in (0..kc16).step_by(ROWS) {
                        tiles.load(4, &a0[s..], a.stride);
                        tiles.load(5, &a1[s..], a.stride);
                        tiles.load(6, &panel[s * NT..], NT);
                        tiles.load(7, &panel[s * NT + COLS..], NT);
                        tiles.dot(0, 4, 6);
                        tiles.dot(1, 4, 7);
                        tiles.dot(2, 5, 6);
                        tiles.dot(3, 5, 7);
                    }
                    for (t, off) in [(0, 0), (1, COLS), (2, ROWS * NT), (3, ROWS * NT + COLS)] {
                        tiles.store_f32(t, &mut c[off..], NT);
                    }
                    out.write((i, j), (rows, cols), &c, NT);
                }
            }
        }
    }
    tiles.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_portable_packing_of_b_is_the_avx512_one() {
        if !super::super::native() {
            eprintln!("skipped: the_portable_packing_of_b_is_the_avx512_one (no AVX512_BF16)");
            return;
        }
        let (k, n) = (77, 70);
        let v = super::super::exact::data(k * n, 5);
        let fill = |l: usize, j0: usize, out: &mut [f32]| {
            out.copy_from_slice(&v[l * n + j0..][..out.len()]);
        };
        let rows = Right::Rows {
            rows: k,
            cols: n,
            fill: &fill,
            fill16: None,
        };
        for b in [Mat::rm(&v, k, n).into(), Mat::tr(&v, n, k).into(), rows] {
            // The last pairs (an odd row count), a block inside, columns past a panel.
            for (q0, kc, jc, nc) in [
                (0usize, 39usize, 0usize, 70usize),
                (16, 20, 3, 40),
                (32, 7, 64, 6),
            ] {
                let kc16 = kc.next_multiple_of(ROWS);
                assert_eq!(
                    pack_b(b, (q0, kc, kc16), (jc, nc)),
                    pack_b_portable(b, (q0, kc, kc16), (jc, nc)),
                    "pairs {q0}+{kc}, columns {jc}+{nc}"
                );
            }
        }
    }
}

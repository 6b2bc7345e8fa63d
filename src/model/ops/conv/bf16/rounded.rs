//! The float32-GEMM kernel: bf16-rounded copies of both operands multiplied by the float32
//! GEMM (products of two bf16 are exact in float32), on any CPU. Safe code.
use super::{round, Layout, Mat, PackedA, Right, MR};
use rayon::prelude::*;

/// A row-major copy of `m` with every element rounded to bf16.
pub(super) fn rounded(m: Right<'_>) -> Vec<f32> {
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
                    *d = round(*v);
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
                            row[j] = round(data[(l0 + r) * rs + j * cs]);
                        }
                    }
                });
        }
        Right::Mat16(b) => {
            // Exact in float32: nothing to round.
            out.par_chunks_mut(n).enumerate().for_each(|(l, row)| {
                for (j, d) in row.iter_mut().enumerate() {
                    *d = b.at(l, j).to_f32();
                }
            });
        }
        Right::Rows { fill, .. } => {
            out.par_chunks_mut(n).enumerate().for_each(|(l, row)| {
                fill(l, 0, row);
                row.iter_mut().for_each(|v| *v = round(*v));
            });
        }
    }
    out
}

/// The float32 GEMM on the bf16-rounded operands (`a` packed for any kernel), its columns
/// split over `threads`.
pub(super) fn rounded_product(
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
        return super::super::gemm::matmul(&mut dst[..m * n], accumulate, a, b, par);
    }
    let mut y = vec![0.0f32; m * n];
    super::super::gemm::matmul(&mut y, false, a, b, par);
    for i in 0..m {
        let row = &mut dst[i * dst_rs..][..n];
        for (d, v) in row.iter_mut().zip(&y[i * n..][..n]) {
            *d = if accumulate { *d + v } else { *v };
        }
    }
}

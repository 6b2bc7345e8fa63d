//! The exact value of a bf16 product and the bound a float32 sum keeps to: what the tests
//! and the start-up check of each kernel (`ops::kernels`) compare a kernel's output with.
use super::{round, Mat};

/// Exact (f64) products of the bf16-rounded operands, and the sum of |terms| per element.
pub fn reference(a: Mat<'_, f32>, b: Mat<'_, f32>) -> (Vec<f64>, Vec<f64>) {
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

/// Whether `got` is within the recursive-summation bound of `want` for a float32 sum of `k`
/// exact products (bf16 x bf16 is exact in float32): gamma_k * sum|terms|, gamma_k =
/// k*u / (1 - k*u) with u = 2^-24; +2 for the previous contents `base` when accumulating.
/// The first element outside, if any.
pub fn within_bound(
    got: &[f32],
    want: &[f64],
    s: &[f64],
    k: usize,
    base: Option<&[f32]>,
) -> Result<(), String> {
    let u = 2f64.powi(-24);
    let gamma = (k + 2) as f64 * u / (1.0 - (k + 2) as f64 * u);
    if got.len() != want.len() {
        return Err(format!("{} elements, expected {}", got.len(), want.len()));
    }
    for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (w, s) = match base {
            Some(b) => (w + b[idx] as f64, s[idx] + (b[idx] as f64).abs()),
            None => (w, s[idx]),
        };
        if (g as f64 - w).abs() > gamma * s + f64::MIN_POSITIVE || g.is_nan() {
            return Err(format!(
                "element {idx}: {g} against {w} (bound {})",
                gamma * s
            ));
        }
    }
    Ok(())
}

/// A fixed pseudo-random sequence in (-2, 2) with every bit of the mantissa used.
pub fn data(len: usize, seed: u32) -> Vec<f32> {
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

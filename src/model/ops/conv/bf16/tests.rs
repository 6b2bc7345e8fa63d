//! The bf16 products against exact products of the rounded operands.
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

//! The bf16 products against exact products of the rounded operands.
use super::*;

use super::exact::{data, reference, within_bound};

fn check(got: &[f32], want: &[f64], s: &[f64], k: usize, base: Option<&[f32]>) {
    if let Err(e) = within_bound(got, want, s, k, base) {
        panic!("{e}");
    }
}

/// Every kernel's packed bits (or rounded values), to compare two packings of one matrix.
fn packed_bits(p: &PackedA) -> Vec<u32> {
    match &p.data {
        Layout::Panels(d) => d.clone(),
        Layout::Rows(r) => r.data.clone(),
        Layout::Rounded(d) => d.iter().map(|v| v.to_bits()).collect(),
    }
}

/// How a kernel's products are run: on the CPU, and for AMX also on emulated tiles (both
/// emulated on a CPU without AMX).
fn emulations(kern: Kernel) -> &'static [bool] {
    if kern == Kernel::Amx {
        &[false, true]
    } else {
        &[false]
    }
}

#[test]
fn products_are_the_bf16_operands_exact_products_summed_in_f32() {
    // Edges of every blocking, for every kernel (AVX-512 panels on a CPU without AVX512_BF16
    // through the float32 GEMM; AMX on emulated tiles, and on the CPU's tiles where it has
    // them): rows not a multiple of MR or of 32, columns not of NR, an odd inner dimension,
    // more pairs than KC, more columns than NC, transposed views.
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (9, 33, 17),
        (17, 401, 40),
        (40, 64, 800),
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
            // The same left operand made row by row packs to the same bits.
            let fill_a = |i: usize, l0: usize, out: &mut [f32]| {
                for (c, v) in out.iter_mut().enumerate() {
                    *v = a.at(i, l0 + c);
                }
            };
            // The same right operand made row by row.
            let fill = |l: usize, j0: usize, out: &mut [f32]| {
                for (c, v) in out.iter_mut().enumerate() {
                    *v = b.at(l, j0 + c);
                }
            };
            let rows = Right::Rows {
                rows: k,
                cols: n,
                fill: &fill,
                fill16: None,
            };
            for kern in Kernel::ALL {
                let pa = PackedA::for_kernel(kern, a);
                assert_eq!(pa.kernel(), kern);
                assert_eq!(
                    packed_bits(&PackedA::from_rows_for(kern, m, k, &fill_a, None)),
                    packed_bits(&pa),
                    "{kern:?}"
                );
                for &emulate in emulations(kern) {
                    for threads in [1, 3] {
                        for right in [Right::Mat(b), rows] {
                            let mut y = vec![f32::NAN; m * n];
                            product_on(&mut y, n, false, &pa, right, threads, emulate);
                            check(&y, &want, &s, k, None);
                        }
                        let base = data(m * n, 3);
                        let mut y = base.clone();
                        product_on(&mut y, n, true, &pa, Right::Mat(b), threads, emulate);
                        check(&y, &want, &s, k, Some(&base));
                    }
                }
            }
        }
    }
}

#[test]
fn a_bf16_right_operand_multiplies_as_its_float32_values() {
    // A gradient stored in bf16 (Right::Mat16) against the same values in float32: the same
    // bits packed, so the same result bit for bit, on every kernel and layout, at the edges
    // of the blocking (odd inner dimension, more pairs than KC, more columns than NC).
    for &(m, k, n) in &[(3, 5, 7), (9, 33, 17), (17, 401, 40), (9, 33, 790)] {
        let av = data(m * k, 1);
        let b16: Vec<half::bf16> = data(k * n, 2)
            .into_iter()
            .map(half::bf16::from_f32)
            .collect();
        let b32: Vec<f32> = b16.iter().map(|v| v.to_f32()).collect();
        for tb in [false, true] {
            let view = |tb: bool| {
                if tb {
                    (Mat::tr(&b32, n, k), Mat::tr(&b16, n, k))
                } else {
                    (Mat::rm(&b32, k, n), Mat::rm(&b16, k, n))
                }
            };
            let (b, b16v) = view(tb);
            for kern in Kernel::ALL {
                let pa = PackedA::for_kernel(kern, Mat::rm(&av, m, k));
                for &emulate in emulations(kern) {
                    for threads in [1, 3] {
                        let base = data(m * n, 3);
                        let (mut want, mut got) = (base.clone(), base.clone());
                        product_on(&mut want, n, true, &pa, Right::Mat(b), threads, emulate);
                        product_on(&mut got, n, true, &pa, Right::Mat16(b16v), threads, emulate);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "{kern:?} {m}x{k}x{n} transposed {tb} emulated {emulate}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn emulated_tiles_multiply_pairs_as_tdpbf16ps() {
    // A rows of pairs (1, 2), B pairs (3, 4): each of the 16 pairs adds 1*3 + 2*4 = 11, so
    // every element is 176; onto a result tile holding 0.5 it is 176.5.
    use tiles::{Emulated, Tiles, COLS, ROWS};
    let pair = |lo: f32, hi: f32| bits(lo) | bits(hi) << 16;
    let (a, b) = (
        vec![pair(1.0, 2.0); ROWS * COLS],
        vec![pair(3.0, 4.0); ROWS * COLS],
    );
    let mut t = Emulated::default();
    t.start();
    t.load_f32(0, &vec![0.5; ROWS * COLS], COLS);
    t.load(4, &a, COLS);
    t.load(6, &b, COLS);
    t.dot(0, 4, 6);
    let mut c = vec![0.0; ROWS * COLS];
    t.store_f32(0, &mut c, COLS);
    assert!(c.iter().all(|&v| v == 176.5), "{c:?}");
    // Row i of A times column j of B: A's row i = pairs (i, 0), B's pair row q = (1 if q == j).
    let a: Vec<u32> = (0..ROWS * COLS)
        .map(|e| pair((e / COLS) as f32, 0.0))
        .collect();
    let b: Vec<u32> = (0..ROWS * COLS)
        .map(|e| pair(if e / COLS == e % COLS { 1.0 } else { 0.0 }, 7.0))
        .collect();
    t.zero(1);
    t.load(4, &a, COLS);
    t.load(7, &b, COLS);
    t.dot(1, 4, 7);
    t.store_f32(1, &mut c, COLS);
    for (e, v) in c.iter().enumerate() {
        assert_eq!(*v, (e / COLS) as f32, "element {e}");
    }
    t.end();
}

#[test]
#[should_panic(expected = "a tile of 16 rows of 16")]
fn a_tile_load_past_its_slice_is_refused() {
    use tiles::{Emulated, Tiles};
    Emulated::default().load(4, &[0u32; 15 * 20 + 15], 20);
}

#[test]
fn amx_tiles_of_this_cpu_agree_with_the_emulation() {
    if !tiles::granted() {
        eprintln!(
            "skipped: amx_tiles_of_this_cpu_agree_with_the_emulation (this CPU has no AMX \
             tiles, or Linux did not grant them)"
        );
        return;
    }
    let (m, k, n) = (70, 901, 333);
    let (av, bv) = (data(m * k, 11), data(k * n, 12));
    let (a, b) = (Mat::rm(&av, m, k), Mat::rm(&bv, k, n));
    let (want, s) = reference(a, b);
    let pa = PackedA::for_kernel(Kernel::Amx, a);
    let (mut hw, mut emu) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
    product(&mut hw, n, false, &pa, b, 2);
    product_on(&mut emu, n, false, &pa, b.into(), 2, true);
    check(&hw, &want, &s, k, None);
    check(&emu, &want, &s, k, None);
}

#[test]
fn a_strided_destination_keeps_the_elements_between_rows() {
    let (m, k, n, ld) = (10, 6, 33, 50);
    let (av, bv) = (data(m * k, 4), data(k * n, 5));
    let (a, b) = (Mat::rm(&av, m, k), Mat::rm(&bv, k, n));
    for kern in Kernel::ALL {
        let mut y = vec![7.0f32; (m - 1) * ld + n];
        product(&mut y, ld, false, &PackedA::for_kernel(kern, a), b, 2);
        strided_check(&y, a, b, (m, k, n, ld));
    }
}

fn strided_check(
    y: &[f32],
    a: Mat<'_, f32>,
    b: Mat<'_, f32>,
    (m, k, n, ld): (usize, usize, usize, usize),
) {
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

#[test]
fn bf16_rows_pack_and_multiply_as_their_float32_values() {
    // Rows made as bf16 (stored activations) are packed from their bits as they are; they
    // must give the bits of the same values made as float32 and rounded: odd inner
    // dimensions (a last pair ending in a zero), rows not a multiple of MR, columns not of
    // NR, more pairs than KC, more columns than NC.
    if !native() {
        eprintln!(
            "skipped: bf16_rows_pack_and_multiply_as_their_float32_values (no AVX512_BF16: \
             the bf16 rows are not used)"
        );
        return;
    }
    use half::bf16;
    for &(m, k, n) in &[
        (1, 1, 1),
        (9, 33, 17),
        (17, 401, 40),
        (40, 64, 800),
        (3, 7, 790),
    ] {
        let (av, bv) = (data(m * k, 21), data(k * n, 22));
        let (a16, b16): (Vec<bf16>, Vec<bf16>) = (
            av.iter().map(|&v| bf16::from_f32(v)).collect(),
            bv.iter().map(|&v| bf16::from_f32(v)).collect(),
        );
        let fill_of = |v: &[bf16], cols: usize| {
            let v = v.to_vec();
            move |l: usize, j0: usize, out: &mut [f32]| {
                for (o, s) in out.iter_mut().zip(&v[l * cols + j0..]) {
                    *o = s.to_f32();
                }
            }
        };
        let fill16_of = |v: &[bf16], cols: usize| {
            let v = v.to_vec();
            move |l: usize, j0: usize, out: &mut [bf16]| {
                out.copy_from_slice(&v[l * cols + j0..][..out.len()]);
            }
        };
        let (fa, fa16) = (fill_of(&a16, k), fill16_of(&a16, k));
        let (fb, fb16) = (fill_of(&b16, n), fill16_of(&b16, n));
        let pa = PackedA::from_rows_for(Kernel::Avx512, m, k, &fa, None);
        let pa16 = PackedA::from_rows_for(Kernel::Avx512, m, k, &fa, Some(&fa16));
        assert_eq!(packed_bits(&pa16), packed_bits(&pa), "a of {m}x{k}");
        for threads in [1, 3] {
            let mut want = vec![f32::NAN; m * n];
            let plain = Right::Rows {
                rows: k,
                cols: n,
                fill: &fb,
                fill16: None,
            };
            let stored = Right::Rows {
                rows: k,
                cols: n,
                fill: &fb,
                fill16: Some(&fb16),
            };
            product(&mut want, n, false, &pa, plain, threads);
            let mut got = vec![f32::NAN; m * n];
            product(&mut got, n, false, &pa16, stored, threads);
            let same = got
                .iter()
                .zip(&want)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{m}x{k}x{n} on {threads} threads");
        }
    }
}

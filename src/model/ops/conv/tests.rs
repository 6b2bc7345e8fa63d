//! The convolution against candle's stock ops, finite differences and edge cases.
use super::*;
use crate::model::ops::pass::{Compute, Pass};
use candle_core::{DType, Device, Var, D};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn randn(rng: &mut rand_chacha::ChaCha8Rng, shape: &[usize], dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let scale = b
        .abs()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let d = (a - b).unwrap().abs().unwrap().max(D::Minus1).unwrap();
    d.to_scalar::<f64>().unwrap() / scale.max(1e-30)
}

/// (output, dx, dw) of sum(conv(x, w) * r) with our kernel or candle's.
fn run(
    x: &Tensor,
    w: &Tensor,
    r: &Tensor,
    stride: usize,
    pad: usize,
    stock: bool,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let y = if stock {
        xv.conv2d(&wv, pad, stride, 1, 1).unwrap()
    } else {
        let g = Geom::new(x.dims(), w.dims(), stride, pad);
        xv.apply_op2(
            &wv,
            ConvFwd {
                g,
                inference: false,
                prec: Precision::F32,
                packed: None,
            },
        )
        .unwrap()
    };
    let loss = (&y * r).unwrap().sum_all().unwrap();
    let grads = loss.backward()?;
    let dx = grads.get(xv.as_tensor()).unwrap().clone();
    let dw = grads.get(wv.as_tensor()).unwrap().clone();
    Ok((y, dx, dw))
}

/// (N, C_in, H, W, C_out, k, stride, pad): odd sizes, strides 1 and 2, padding,
/// 1x1 and 7x7 kernels, batch 1, and more images than threads.
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
const CASES: &[Case] = &[
    (1, 3, 13, 11, 5, 7, 2, 3),
    (2, 4, 9, 9, 6, 3, 1, 1),
    (3, 5, 10, 7, 4, 3, 2, 1),
    (1, 6, 8, 8, 7, 1, 1, 0),
    (5, 6, 9, 8, 3, 1, 2, 0),
    (2, 2, 6, 5, 3, 3, 1, 0),
    (1, 3, 5, 5, 2, 5, 1, 2),
    (4, 8, 7, 9, 16, 3, 2, 0),
    // ResNet's own geometries on even sizes: 3x3 stride 2 and the 1x1 stride-2 shortcut.
    (2, 3, 8, 8, 4, 3, 2, 1),
    (3, 4, 8, 8, 5, 1, 2, 0),
    (1, 3, 16, 16, 4, 7, 2, 3),
    // 1x1 with padding.
    (2, 3, 5, 6, 4, 1, 1, 1),
    (2, 3, 6, 5, 4, 1, 2, 1),
    // A deep layer's few positions (several images to a product), more channels than a
    // micro-tile has rows.
    (6, 20, 4, 4, 12, 3, 1, 1),
    // The bf16 training forward's direct convolution: images side by side, more channel
    // pairs than a block of the inner dimension, output channels not a multiple of a
    // micro-tile's rows, rows not a multiple of 16 positions; more columns than a block.
    (3, 45, 9, 13, 11, 3, 1, 1),
    (1, 8, 30, 29, 4, 3, 1, 1),
    // One image: the direct route splits its output channels over the threads.
    (1, 6, 10, 10, 20, 3, 1, 1),
    // The float32 input gradient's direct convolution: more output channels (its words)
    // than a block of the inner dimension holds.
    (2, 10, 7, 6, 30, 3, 1, 1),
    // Enough positions for the float32 inference forward's direct convolution.
    (2, 5, 28, 29, 9, 3, 1, 1),
];

#[test]
fn matches_candle_stock_forward_and_both_gradients() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for &(n, ci, h, w, co, k, s, p) in CASES {
        for dtype in [DType::F64, DType::F32] {
            let x = randn(&mut rng, &[n, ci, h, w], dtype);
            let wt = randn(&mut rng, &[co, ci, k, k], dtype);
            let oh = (h + 2 * p - k) / s + 1;
            let ow = (w + 2 * p - k) / s + 1;
            let r = randn(&mut rng, &[n, co, oh, ow], dtype);
            let ours = run(&x, &wt, &r, s, p, false).unwrap();
            let case = format!("{:?} {dtype:?}", (n, ci, h, w, co, k, s, p));
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            let stock_y = x.conv2d(&wt, p, s, 1, 1).unwrap();
            assert_eq!(ours.0.dims(), stock_y.dims(), "{case}");
            assert!(max_rel(&ours.0, &stock_y) < tol, "forward {case}");
            // candle 0.11's conv2d backward takes the input gradient's output padding from
            // the height alone, so it fails when height and width leave different
            // remainders under the stride (e.g. 10x7, stride 2); those cases are checked
            // against finite differences below.
            let rem = |d: usize| (d + 2 * p - k) % s;
            if rem(h) != rem(w) {
                assert!(run(&x, &wt, &r, s, p, true).is_err(), "{case}");
                continue;
            }
            let stock = run(&x, &wt, &r, s, p, true).unwrap();
            assert!(max_rel(&ours.1, &stock.1) < tol, "input gradient {case}");
            assert!(max_rel(&ours.2, &stock.2) < tol, "weight gradient {case}");
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for &(n, ci, h, w, co, k, s, p) in &CASES[..5] {
        let x = randn(&mut rng, &[n, ci, h, w], DType::F64);
        let wt = randn(&mut rng, &[co, ci, k, k], DType::F64);
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let r = randn(&mut rng, &[n, co, oh, ow], DType::F64);
        let (_, dx, dw) = run(&x, &wt, &r, s, p, false).unwrap();
        let loss = |x: &Tensor, wt: &Tensor| -> f64 {
            let g = Geom::new(x.dims(), wt.dims(), s, p);
            let y = x
                .apply_op2(
                    wt,
                    ConvFwd {
                        g,
                        inference: false,
                        prec: Precision::F32,
                        packed: None,
                    },
                )
                .unwrap();
            (y * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let eps = 1e-6;
        // A few coordinates of each gradient, central differences.
        for (t, grad, is_x) in [(&x, &dx, true), (&wt, &dw, false)] {
            let flat = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let g = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for idx in [0, flat.len() / 3, flat.len() / 2, flat.len() - 1] {
                let bump = |d: f64| {
                    let mut v = flat.clone();
                    v[idx] += d;
                    Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap()
                };
                let (lp, lm) = if is_x {
                    (loss(&bump(eps), &wt), loss(&bump(-eps), &wt))
                } else {
                    (loss(&x, &bump(eps)), loss(&x, &bump(-eps)))
                };
                let fd = (lp - lm) / (2.0 * eps);
                assert!(
                    (fd - g[idx]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{:?} {} [{idx}]: finite difference {fd}, autograd {}",
                    (n, ci, h, w, co, k, s, p),
                    if is_x { "dx" } else { "dw" },
                    g[idx]
                );
            }
        }
    }
}

/// The forward is candle's stock convolution bit for bit, on ResNet's geometries and
/// odd ones, batch 1 included (why: speed.md, design notes).
#[test]
fn forward_is_bit_identical_to_candle_stock() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let resnet = [
        (2, 3, 64, 64, 16, 7, 2, 3),
        (1, 16, 28, 28, 16, 3, 1, 1),
        (1, 64, 14, 14, 64, 3, 1, 1),
        (1, 64, 7, 7, 128, 3, 2, 1),
        (1, 64, 7, 7, 128, 1, 1, 0),
        (2, 32, 28, 28, 32, 3, 2, 1),
        (2, 64, 28, 28, 16, 1, 1, 0),
        (3, 64, 28, 28, 128, 1, 2, 0),
        // ResNet-18's deep layers at 128 px.
        (2, 256, 8, 8, 512, 3, 2, 1),
        (2, 512, 4, 4, 512, 3, 1, 1),
        (2, 64, 32, 32, 64, 3, 1, 1),
    ];
    for &shape in CASES.iter().chain(&resnet) {
        assert_stock_bits(&mut rng, shape);
    }
}

/// Our training forward equals candle's stock convolution bit for bit on a random input
/// and weight of `(n, c_in, h, w, c_out, k, stride, pad)`.
fn assert_stock_bits(
    rng: &mut rand_chacha::ChaCha8Rng,
    shape: (usize, usize, usize, usize, usize, usize, usize, usize),
) {
    let (n, ci, h, w, co, k, s, p) = shape;
    let x = randn(rng, &[n, ci, h, w], DType::F32);
    let wt = randn(rng, &[co, ci, k, k], DType::F32);
    let bits = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let ours = bits(conv2d(&x, &wt, s, p, &autograd()).unwrap());
    let stock = bits(x.conv2d(&wt, p, s, 1, 1).unwrap());
    assert_eq!(ours, stock, "{shape:?}");
}

/// Several images in one product (the deep layers, `forward_grouped`) give candle's bits
/// too, in pools of one and three threads (groups of the whole batch, and of a few images
/// with a shorter last group).
#[test]
fn grouped_forward_is_bit_identical_to_candle_stock() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let shapes = [
        (8, 512, 4, 4, 512, 3, 1, 1),
        (7, 256, 8, 8, 512, 3, 2, 1),
        // At most 64 x 64 outputs an image: grouped only where K <= 512.
        (5, 64, 8, 8, 64, 3, 1, 1),
        (5, 32, 8, 8, 48, 3, 1, 1),
        (4, 32, 16, 16, 48, 5, 1, 2),
        // One output position an image (ResNet-18's layer4 at 32 px: a matrix-vector
        // product), and at most 256 outputs an image (the crate's small-product kernel):
        // never grouped.
        (4, 256, 2, 2, 512, 3, 2, 1),
        (3, 16, 4, 4, 8, 3, 2, 1),
    ];
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for &shape in &shapes {
            pool.install(|| assert_stock_bits(&mut rng, shape));
        }
    }
}

/// The inference forward (other products) equals the training forward to rounding.
#[test]
fn inference_forward_matches_training_forward() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for &(n, ci, h, w, co, k, s, p) in CASES {
        let x = randn(&mut rng, &[n, ci, h, w], DType::F32);
        let wt = randn(&mut rng, &[co, ci, k, k], DType::F32);
        let train = conv2d(&x, &wt, s, p, &autograd()).unwrap();
        let infer = conv2d(&x, &wt, s, p, &Pass::infer(Compute::default())).unwrap();
        let case = (n, ci, h, w, co, k, s, p);
        assert!(max_rel(&infer, &train) < 1e-5, "{case:?}");
    }
}

/// An image's inference output is the same bits alone as in a batch (the viewer and `predict`
/// run one image, `eval` and the test-set review batches): on every route (direct, im2col
/// 3x3, strided, 1x1) each output's sum runs in an order the other images do not change.
#[test]
fn an_images_inference_output_does_not_depend_on_its_batch() {
    use crate::model::test_util::bits;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    for &(ci, h, w, co, k, s, p) in &[
        // The direct route, more input channels than a block of its words holds.
        (30, 28, 29, 9, 3, 1, 1),
        (6, 9, 8, 7, 3, 1, 1),
        (4, 9, 9, 6, 3, 2, 1),
        (8, 7, 7, 16, 1, 1, 0),
    ] {
        let x = randn(&mut rng, &[3, ci, h, w], DType::F32);
        let wt = randn(&mut rng, &[co, ci, k, k], DType::F32);
        let pass = Pass::infer(Compute::default());
        let batch = conv2d(&x, &wt, s, p, &pass).unwrap();
        for i in 0..3 {
            let alone = conv2d(&x.narrow(0, i, 1).unwrap(), &wt, s, p, &pass).unwrap();
            assert_eq!(
                bits(&alone),
                bits(&batch.narrow(0, i, 1).unwrap()),
                "image {i} of {:?}",
                (ci, h, w, co, k, s, p)
            );
        }
    }
}

#[test]
fn an_empty_batch_gives_an_empty_output() {
    let x = Tensor::zeros((0, 3, 5, 5), DType::F32, &Device::Cpu).unwrap();
    let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        conv2d(&x, &w, 1, 1, &autograd()).unwrap().dims(),
        &[0, 4, 5, 5]
    );
}

#[test]
fn an_input_without_gradient_gets_none_and_the_weight_still_learns() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let x = randn(&mut rng, &[2, 3, 9, 9], DType::F32);
    let w = Var::from_tensor(&randn(&mut rng, &[4, 3, 3, 3], DType::F32)).unwrap();
    let y = conv2d(&x, w.as_tensor(), 2, 1, &autograd()).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert_eq!(grads.get(w.as_tensor()).unwrap().dims(), &[4, 3, 3, 3]);
}

/// `t` rounded to bf16 (as f64).
fn round_bf16(t: &Tensor) -> Tensor {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let r: Vec<f64> = v.iter().map(|&x| super::bf16::round(x) as f64).collect();
    Tensor::from_vec(r, t.dims(), &Device::Cpu).unwrap()
}

/// (output, dx, dw) of sum(conv(x, w) * r) by the definition, in f64 loops: y[n,o,i,j] =
/// sum over (c, kh, kw) of x[n,c,i*s+kh-p,j*s+kw-p] w[o,c,kh,kw]; dx and dw collect the same
/// terms with r[n,o,i,j] in place of w or x. With `abs`, the sums of the terms' absolute
/// values instead.
fn by_definition(g: &Geom, x: &[f64], w: &[f64], r: &[f64], abs: bool) -> [Vec<f64>; 3] {
    let f = |v: f64| if abs { v.abs() } else { v };
    let mut y = vec![0.0; g.n * g.out_len()];
    let mut dx = vec![0.0; g.n * g.in_len()];
    let mut dw = vec![0.0; g.c_out * g.kk()];
    for n in 0..g.n {
        for o in 0..g.c_out {
            for (i, j) in (0..g.oh).flat_map(|i| (0..g.ow).map(move |j| (i, j))) {
                let yi = ((n * g.c_out + o) * g.oh + i) * g.ow + j;
                for (c, kh, kw) in (0..g.c_in)
                    .flat_map(|c| (0..g.k).flat_map(move |kh| (0..g.k).map(move |kw| (c, kh, kw))))
                {
                    let (iy, ix) = (
                        (i * g.stride + kh) as isize - g.pad as isize,
                        (j * g.stride + kw) as isize - g.pad as isize,
                    );
                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                        continue;
                    }
                    let xi = ((n * g.c_in + c) * g.h + iy as usize) * g.w + ix as usize;
                    let wi = ((o * g.c_in + c) * g.k + kh) * g.k + kw;
                    y[yi] += f(x[xi] * w[wi]);
                    dx[xi] += f(r[yi] * w[wi]);
                    dw[wi] += f(r[yi] * x[xi]);
                }
            }
        }
    }
    [y, dx, dw]
}

#[test]
fn bf16_is_the_rounded_operands_exact_products_summed_in_f32() {
    // The bf16 convolution rounds x, w (forward), dy (backward) to bf16 and sums their exact
    // products in f32. So against the convolution of the rounded operands by its definition
    // (f64 loops) each element may differ by at most the f32 summation bound gamma_n * sum|terms| (u = 2^-24,
    // gamma_n = n u / (1 - n u), n = terms per element plus the partial sums of the
    // threads), and sum|terms| is the same convolution of the operands' absolute values.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for &(n, c, h, wd, co, k, s, p) in CASES {
        let x = randn(&mut rng, &[n, c, h, wd], DType::F32);
        let w = randn(&mut rng, &[co, c, k, k], DType::F32);
        let g = Geom::new(x.dims(), w.dims(), s, p);
        let r = randn(&mut rng, &[n, co, g.oh, g.ow], DType::F32);
        let xv = Var::from_tensor(&x).unwrap();
        let wv = Var::from_tensor(&w).unwrap();
        let y = conv2d(
            &xv,
            &wv,
            s,
            p,
            &Pass::autograd(Compute::with_precision(Precision::Bf16), true),
        )
        .unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let got = [
            y,
            grads.get(xv.as_tensor()).unwrap().clone(),
            grads.get(wv.as_tensor()).unwrap().clone(),
        ];
        let rounded =
            |t: &Tensor| -> Vec<f64> { round_bf16(t).flatten_all().unwrap().to_vec1().unwrap() };
        let (xr, wr, rr) = (rounded(&x), rounded(&w), rounded(&r));
        let want = by_definition(&g, &xr, &wr, &rr, false);
        let size = by_definition(&g, &xr, &wr, &rr, true);
        let terms = (c * k * k).max(co * k * k).max(n * g.p()) + rayon::current_num_threads();
        let u = 2f64.powi(-24);
        let gamma = terms as f64 * u / (1.0 - terms as f64 * u);
        for (name, ((got, want), size)) in ["y", "dx", "dw"]
            .iter()
            .zip(got.iter().zip(&want).zip(&size))
        {
            let got: Vec<f64> = got
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (i, ((a, b), m)) in got.iter().zip(want.iter()).zip(size.iter()).enumerate() {
                assert!(
                    (a - b).abs() <= gamma * m + 1e-30,
                    "{name}[{i}] of case {:?}: {a} against {b} (bound {})",
                    (n, c, h, wd, co, k, s, p),
                    gamma * m
                );
            }
        }
    }
}

#[test]
fn a_bf16_output_gradient_gives_the_gradients_of_its_values_bit_for_bit() {
    // A bf16 BatchNorm hands its convolution the output gradient rounded to bf16; the bf16
    // products round a float32 one in the same way as they pack it. So both gradients from the
    // bf16 gradient are those from the float32 one, bit for bit, on every route (direct,
    // im2col, 1x1, strided, images side by side), for float32 and stored bf16 inputs.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let bits = |t: &Tensor| -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    };
    for &(n, c, h, wd, co, k, s, p) in CASES {
        let x = randn(&mut rng, &[n, c, h, wd], DType::F32);
        let w = randn(&mut rng, &[co, c, k, k], DType::F32);
        let g = Geom::new(x.dims(), w.dims(), s, p);
        let dy = randn(&mut rng, &[n, co, g.oh, g.ow], DType::F32);
        let dy16 = dy.to_dtype(DType::BF16).unwrap();
        let case = (n, c, h, wd, co, k, s, p);
        let data = ConvBwdData(g, Precision::Bf16);
        let (dx32, dx16) = (
            dy.apply_op2_no_bwd(&w, &data).unwrap(),
            dy16.apply_op2_no_bwd(&w, &data).unwrap(),
        );
        assert_eq!(dx16.dtype(), DType::F32);
        assert_eq!(bits(&dx16), bits(&dx32), "dx of case {case:?}");
        let filter = ConvBwdFilter(g, Precision::Bf16);
        for x in [x.clone(), x.to_dtype(DType::BF16).unwrap()] {
            let (dw32, dw16) = (
                x.apply_op2_no_bwd(&dy, &filter).unwrap(),
                x.apply_op2_no_bwd(&dy16, &filter).unwrap(),
            );
            assert_eq!(
                bits(&dw16),
                bits(&dw32),
                "dw of case {case:?}, x {:?}",
                x.dtype()
            );
        }
    }
}

#[test]
fn partial_weight_gradients_are_summed_and_transposed() {
    // Widths around the 16-column blocks, and more than one part.
    for (rows, cols, parts) in [(5, 37, 3), (3, 16, 1), (7, 1, 2), (4, 33, 2)] {
        let part = |t: usize| -> Vec<f64> {
            (0..rows * cols)
                .map(|e| (e * 7 + t * 1000) as f64)
                .collect()
        };
        let ps: Vec<Vec<f64>> = (0..parts).map(part).collect();
        let got = weight_grad::sum_transposed(&ps, rows, cols);
        for j in 0..cols {
            for i in 0..rows {
                let want: f64 = ps.iter().map(|p| p[i * cols + j]).sum();
                assert_eq!(
                    got[j * rows + i],
                    want,
                    "({rows}, {cols}, {parts}) at ({j}, {i})"
                );
            }
        }
    }
}

#[test]
fn a_nested_scratch_request_gets_its_own_buffer() {
    let g = Geom::new(&[1, 2, 5, 5], &[3, 2, 3, 3], 1, 1);
    let len = g.kk() * g.p();
    with_scratch::<f32, _>(&g, |outer| {
        assert_eq!(outer.len(), len);
        outer.fill(1.0);
        // What a thread that steals another convolution's task meanwhile would ask for.
        with_scratch::<f32, _>(&g, |inner| {
            assert_eq!(inner.len(), len);
            inner.fill(2.0);
        });
        assert!(
            outer.iter().all(|&v| v == 1.0),
            "the lent buffer was not shared"
        );
    });
    // Kept between calls (its old contents are overwritten by every user).
    with_scratch::<f32, _>(&g, |again| assert!(again.iter().all(|&v| v == 1.0)));
}

/// A training pass on autograd with the default kernel, in float32.
fn autograd() -> Pass<'static> {
    Pass::autograd(Compute::default(), true)
}

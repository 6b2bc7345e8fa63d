//! Pooling with working gradients. candle's `max_pool2d` has no correct backward when the
//! kernel differs from the stride, and the ResNet stem needs a 3x3 stride-2 pool.
use crate::Result;
use candle_core::{Tensor, D};

/// Max pooling with a square kernel, stride and padding (padding counts as -inf, as PyTorch).
///
/// Built from strided views of the padded input, stacked and reduced with argmax + gather so
/// that the gradient goes to exactly one input per window (the first maximum), as in PyTorch.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let out_h = (h + 2 * padding - kernel) / stride + 1;
    let out_w = (w + 2 * padding - kernel) / stride + 1;
    // Pad so that every view `start .. start + stride*out` fits.
    let need_h = kernel - 1 + stride * out_h;
    let need_w = kernel - 1 + stride * out_w;
    let x = pad_neg_inf(x, 2, padding, need_h.saturating_sub(h + padding))?;
    let x = pad_neg_inf(&x, 3, padding, need_w.saturating_sub(w + padding))?;
    let mut views = Vec::with_capacity(kernel * kernel);
    for kh in 0..kernel {
        let rows = strided(&x, 2, kh, stride, out_h)?;
        for kw in 0..kernel {
            views.push(strided(&rows, 3, kw, stride, out_w)?);
        }
    }
    let stacked = Tensor::stack(&views, 4)?; // (N, C, OH, OW, K*K)
    let idx = stacked.argmax_keepdim(D::Minus1)?;
    let out = stacked.gather(&idx, D::Minus1)?;
    Ok(out.reshape((n, c, out_h, out_w))?)
}

/// Elements `start, start+stride, ...` (`count` of them) along `dim`.
fn strided(x: &Tensor, dim: usize, start: usize, stride: usize, count: usize) -> Result<Tensor> {
    let x = x.narrow(dim, start, stride * count)?;
    if stride == 1 {
        return Ok(x);
    }
    let mut shape = x.dims().to_vec();
    shape[dim] = count;
    shape.insert(dim + 1, stride);
    Ok(x.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)?)
}

fn pad_neg_inf(x: &Tensor, dim: usize, left: usize, right: usize) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(x.clone());
    }
    let mut parts = Vec::with_capacity(3);
    let side = |len: usize| -> Result<Option<Tensor>> {
        if len == 0 {
            return Ok(None);
        }
        let mut shape = x.dims().to_vec();
        shape[dim] = len;
        Ok(Some(
            Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())?,
        ))
    };
    if let Some(l) = side(left)? {
        parts.push(l);
    }
    parts.push(x.clone());
    if let Some(r) = side(right)? {
        parts.push(r);
    }
    Ok(Tensor::cat(&parts, dim)?)
}

/// fastai's AdaptiveConcatPool2d with output size 1: [global max, global mean] -> (N, 2C).
pub fn concat_pool(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let flat = x.reshape((n, c, h * w))?;
    let mx = flat.max(D::Minus1)?;
    let avg = flat.mean(D::Minus1)?;
    Ok(Tensor::cat(&[mx, avg], 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn naive(x: &[f32], h: usize, w: usize, k: usize, s: usize, p: usize) -> Vec<f32> {
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let mut out = vec![f32::NEG_INFINITY; oh * ow];
        for i in 0..oh {
            for j in 0..ow {
                for a in 0..k {
                    for b in 0..k {
                        let (y, xx) = (
                            (i * s + a) as isize - p as isize,
                            (j * s + b) as isize - p as isize,
                        );
                        if y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w {
                            out[i * ow + j] = out[i * ow + j].max(x[y as usize * w + xx as usize]);
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_naive_on_odd_and_even_sizes() {
        for (h, w) in [(8, 8), (7, 9), (5, 5), (112, 112)] {
            let data: Vec<f32> = (0..h * w)
                .map(|i| ((i * 7919) % 101) as f32 - 50.0)
                .collect();
            let x = Tensor::from_vec(data.clone(), (1, 1, h, w), &Device::Cpu).unwrap();
            let y = max_pool2d(&x, 3, 2, 1).unwrap();
            let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, naive(&data, h, w, 3, 2, 1), "{h}x{w}");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Distinct values so that the max of each window is unique and the function is
        // differentiable; loss = sum(pool(x) * r) with fixed random weights r.
        let (h, w) = (7, 6);
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..2 * h * w)
            .map(|i| ((i * 37) % 97) as f32 * 0.1 - 3.0)
            .collect();
        let x = Var::from_vec(data.clone(), (1, 2, h, w), &dev).unwrap();
        let y = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
        let r: Vec<f32> = (0..y.elem_count())
            .map(|i| ((i * 13) % 7) as f32 - 3.0)
            .collect();
        let r = Tensor::from_vec(r, y.dims(), &dev).unwrap();
        let loss = (y * &r).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let g = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let f = |d: &[f32]| -> f64 {
            let t = Tensor::from_vec(d.to_vec(), (1, 2, h, w), &dev).unwrap();
            let y = max_pool2d(&t, 3, 2, 1).unwrap();
            (y * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let eps = 1e-2f32;
        let mut nonzero = 0;
        for i in 0..data.len() {
            let mut p = data.clone();
            p[i] += eps;
            let mut m = data.clone();
            m[i] -= eps;
            let fd = (f(&p) - f(&m)) / (2.0 * eps as f64);
            assert!(
                (fd - g[i] as f64).abs() < 1e-3,
                "element {i}: fd {fd} vs grad {}",
                g[i]
            );
            if g[i] != 0.0 {
                nonzero += 1;
            }
        }
        assert!(
            nonzero > 10,
            "the gradient should reach many inputs, got {nonzero}"
        );
    }

    #[test]
    fn ties_send_the_gradient_to_one_input() {
        let dev = Device::Cpu;
        let x = Var::from_vec(vec![1f32; 16], (1, 1, 4, 4), &dev).unwrap();
        let y = max_pool2d(x.as_tensor(), 3, 2, 1).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let total = g
            .get(&x)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(total, y.elem_count() as f32);
    }

    #[test]
    fn concat_pool_is_max_then_mean() {
        let x = Tensor::from_vec(
            vec![1f32, 5., 3., 3., 0., 2., 2., 4.],
            (1, 2, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let y = concat_pool(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![5., 4., 3., 2.]]);
    }
}

//! BatchNorm with PyTorch semantics: batch statistics and running-statistic updates
//! (momentum 0.1, unbiased variance) in training, running statistics in evaluation.
use super::params::{value, Builder, Init, ParamKind};
use crate::model::ops::batch_norm::{affine_cpu, batch_norm_relu_train_cpu};
use crate::model::ops::pass::Pass;
use crate::Result;
use candle_core::{Tensor, Var};

/// PyTorch's default BatchNorm momentum.
pub const BN_MOMENTUM: f64 = 0.1;
/// PyTorch's default BatchNorm epsilon.
pub const BN_EPS: f64 = 1e-5;

/// BatchNorm over the channel dimension (dim 1) of a (N, C) or (N, C, H, W) tensor.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
    channels: usize,
}

impl BatchNorm {
    /// A BatchNorm over `channels` (gamma 1, beta 0, running mean 0, running var 1).
    pub fn new(b: &mut Builder, channels: usize) -> Result<Self> {
        Ok(Self {
            weight: b.param("weight", &[channels], Init::Const(1.0), ParamKind::BnWeight)?,
            bias: b.param("bias", &[channels], Init::Const(0.0), ParamKind::BnBias)?,
            running_mean: b.buffer("running_mean", &[channels], 0.0)?,
            running_var: b.buffer("running_var", &[channels], 1.0)?,
            channels,
        })
    }

    /// Normalises `x`; in a training pass also updates the running statistics.
    pub fn forward(&self, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        self.forward_act(x, pass, false)
    }

    /// `relu(self.forward(x, pass))`, fused into one pass on the CPU.
    pub fn forward_relu(&self, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        self.forward_act(x, pass, true)
    }

    fn forward_act(&self, x: &Tensor, pass: &Pass<'_>, relu: bool) -> Result<Tensor> {
        let fused = x.device().is_cpu()
            && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64);
        let act = |y: Tensor| -> Result<Tensor> { Ok(if relu && !fused { y.relu()? } else { y }) };
        // Shape that broadcasts a per-channel vector against x: (1, C) or (1, C, 1, 1).
        let mut bshape = vec![1usize; x.rank()];
        bshape[1] = self.channels;
        let per_channel = |v: &Var| value(v, pass).reshape(bshape.as_slice());
        if pass.train {
            let (y, mean, var_biased, count) = if fused {
                let (y, st) = batch_norm_relu_train_cpu(
                    x,
                    &value(&self.weight, pass),
                    &value(&self.bias, pass),
                    BN_EPS,
                    relu,
                    pass,
                )?;
                let dev = x.device();
                let mean = Tensor::from_vec(st.mean, self.channels, dev)?;
                let var = Tensor::from_vec(st.var, self.channels, dev)?;
                (y, mean, var, st.count)
            } else {
                let (gamma, beta) = (per_channel(&self.weight)?, per_channel(&self.bias)?);
                let (y, mean, var) = train_with_tensor_ops(x, &gamma, &beta)?;
                (y, mean, var, x.elem_count() / self.channels)
            };
            // Running statistics: outside the graph, unbiased variance as PyTorch.
            let m = BN_MOMENTUM;
            let dtype = self.running_mean.dtype();
            let mean = mean.to_dtype(dtype)?;
            let unbiased =
                (var_biased.to_dtype(dtype)? * (count as f64 / (count.max(2) - 1) as f64))?;
            let rm = ((&value(&self.running_mean, pass) * (1.0 - m))? + (mean * m)?)?;
            let rv = ((&value(&self.running_var, pass) * (1.0 - m))? + (unbiased * m)?)?;
            self.running_mean.set(&rm)?;
            self.running_var.set(&rv)?;
            act(y)
        } else {
            let (rm, rv) = (
                per_channel(&self.running_mean)?,
                per_channel(&self.running_var)?,
            );
            let scale = per_channel(&self.weight)?.broadcast_div(&(rv + BN_EPS)?.sqrt()?)?;
            let shift = per_channel(&self.bias)?.broadcast_sub(&rm.broadcast_mul(&scale)?)?;
            if fused {
                let (scale, shift) = (scale.flatten_all()?, shift.flatten_all()?);
                return Ok(affine_cpu(x, &scale, &shift, relu)?);
            }
            act(x.broadcast_mul(&scale)?.broadcast_add(&shift)?)
        }
    }
}

/// Training-mode BatchNorm from candle tensor ops (GPU backends): returns the output and
/// the detached per-channel mean and biased variance. `gamma`/`beta` broadcast against `x`.
fn train_with_tensor_ops(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let reduce: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
    let mean = x.mean_keepdim(reduce.as_slice())?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(reduce.as_slice())?;
    let inv_std = (var.clone() + BN_EPS)?.sqrt()?.recip()?;
    let y = centered
        .broadcast_mul(&inv_std.broadcast_mul(gamma)?)?
        .broadcast_add(beta)?;
    Ok((y, mean.detach().flatten_all()?, var.detach().flatten_all()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::batch_norm::batch_norm_train_cpu;
    use crate::model::ops::pass::Compute;
    use candle_core::{Device, Var};

    fn rel(a: &Tensor, b: &Tensor) -> f64 {
        let d = (a - b)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let n = b
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        (d / n).sqrt()
    }

    /// BatchNorm+ReLU fused (training and evaluation mode) equals BatchNorm then candle's
    /// ReLU, output and gradients, in float64.
    #[test]
    fn fused_relu_matches_separate_relu() {
        let dev = Device::Cpu;
        let shape = [3usize, 4, 5, 6];
        let n: usize = shape.iter().product();
        let xs: Vec<f64> = (0..n)
            .map(|i| (i as f64 * 0.37).sin() * 3.0 + (i % 5) as f64)
            .collect();
        let r: Vec<f64> = (0..n).map(|i| ((i * 11 % 13) as f64 - 6.0) / 5.0).collect();
        let r = Tensor::from_vec(r, &shape, &dev).unwrap();
        for train in [true, false] {
            let run = |fused: bool| {
                let mut store = crate::model::ParamStore::with_dtype(&dev, candle_core::DType::F64);
                let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
                let mut b = Builder::new(&mut store, &mut rng);
                let bn = BatchNorm::new(&mut b, 4).unwrap();
                let x = Var::from_vec(xs.clone(), &shape, &dev).unwrap();
                let pass = Pass::autograd(Compute::default(), train);
                let y = if fused {
                    bn.forward_relu(x.as_tensor(), &pass).unwrap()
                } else {
                    bn.forward(x.as_tensor(), &pass).unwrap().relu().unwrap()
                };
                let loss = (&y * &r).unwrap().sqr().unwrap().sum_all().unwrap();
                let dx = loss.backward().unwrap().get(x.as_tensor()).unwrap().clone();
                (y, dx)
            };
            let ((y1, d1), (y2, d2)) = (run(true), run(false));
            assert!(rel(&y1, &y2) < 1e-12, "train={train} y");
            assert!(rel(&d1, &d2) < 1e-12, "train={train} dx");
        }
    }

    /// The fused CPU op and autograd through candle's tensor ops agree in float64 for the
    /// output and all three gradients, for 4-D (BatchNorm2d) and 2-D (BatchNorm1d) inputs.
    #[test]
    fn fused_op_matches_tensor_op_autograd_in_f64() {
        let dev = Device::Cpu;
        for shape in [vec![3usize, 4, 5, 6], vec![7, 5]] {
            let c = shape[1];
            let n: usize = shape.iter().product();
            let xs: Vec<f64> = (0..n)
                .map(|i| (i as f64 * 0.37).sin() * 3.0 + (i % 5) as f64)
                .collect();
            let r: Vec<f64> = (0..n).map(|i| ((i * 11 % 13) as f64 - 6.0) / 5.0).collect();
            let r = Tensor::from_vec(r, shape.as_slice(), &dev).unwrap();
            let mut bshape = vec![1usize; shape.len()];
            bshape[1] = c;
            let g0: Vec<f64> = (0..c).map(|i| 0.5 + i as f64 * 0.3).collect();
            let b0: Vec<f64> = (0..c).map(|i| i as f64 * 0.1 - 0.2).collect();
            let run = |fused: bool| {
                let x = Var::from_vec(xs.clone(), shape.as_slice(), &dev).unwrap();
                let g = Var::from_vec(g0.clone(), c, &dev).unwrap();
                let b = Var::from_vec(b0.clone(), c, &dev).unwrap();
                let y = if fused {
                    let pass = Pass::autograd(Compute::default(), true);
                    let (x, g, b) = (x.as_tensor(), g.as_tensor(), b.as_tensor());
                    batch_norm_train_cpu(x, g, b, BN_EPS, &pass).unwrap().0
                } else {
                    let gb = g.as_tensor().reshape(bshape.as_slice()).unwrap();
                    let bb = b.as_tensor().reshape(bshape.as_slice()).unwrap();
                    train_with_tensor_ops(x.as_tensor(), &gb, &bb).unwrap().0
                };
                // A loss that is not linear in y, so the backward sees a generic gradient.
                let loss = (&y * &r).unwrap().sqr().unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                let get = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
                (y, get(&x), get(&g), get(&b))
            };
            let (y1, dx1, dg1, db1) = run(true);
            let (y2, dx2, dg2, db2) = run(false);
            for (name, a, b) in [
                ("y", &y1, &y2),
                ("dx", &dx1, &dx2),
                ("dgamma", &dg1, &dg2),
                ("dbeta", &db1, &db2),
            ] {
                let e = rel(a, b);
                assert!(e < 1e-12, "{shape:?} {name}: {e}");
            }
        }
    }
}

//! ReLU and the residual `relu(a + b)` as multi-threaded CPU ops.
//!
//! candle's CPU `relu` runs on one thread, and its backward builds a zero tensor, a
//! comparison mask, a cast and a product (four passes); here each direction is one parallel
//! pass. Other devices and dtypes use candle's ops.
use super::cpu_op::{contiguous, impl_op2, round_bf16, run_float, Widen};
use super::pass::Pass;
use super::tape;
use candle_core::WithDType;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use half::bf16;
use rayon::prelude::*;

const CHUNK: usize = 16384;

fn ours(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// max(x, 0).
pub fn relu(x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
    if !ours(x) {
        if pass.taping() {
            return Err(tape::unsupported("relu"));
        }
        return x.relu();
    }
    let x = x.contiguous()?;
    if !pass.taping() {
        return x.apply_op1(Relu);
    }
    let y = x.apply_op1_no_bwd(&Relu)?;
    let ys = y.clone();
    pass.push([&x], &y, move |dy, want| {
        Ok([Some(mask_grad(&ys, dy)?).filter(|_| want[0])])
    });
    Ok(y)
}

/// max(a + b, 0), the end of a residual block. In a taped pass, bf16 operands (activations
/// stored by the bf16 training forward) give a bf16 output (the float32 sum rounded).
pub fn add_relu(a: &Tensor, b: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
    let stored16 = a.device().is_cpu() && a.dtype() == DType::BF16 && pass.taping();
    if !(ours(a) || stored16) || a.dtype() != b.dtype() || a.dims() != b.dims() {
        if pass.taping() {
            return Err(tape::unsupported("add+relu"));
        }
        return (a + b)?.relu();
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    if !pass.taping() {
        return a.apply_op2(&b, AddRelu);
    }
    let y = a.apply_op2_no_bwd(&b, &AddRelu)?;
    let ys = y.clone();
    pass.push([&a, &b], &y, move |dy, want| {
        let g = mask_grad(&ys, dy)?;
        Ok([
            Some(g.clone()).filter(|_| want[0]),
            Some(g).filter(|_| want[1]),
        ])
    });
    Ok(y)
}

struct Relu;

impl Relu {
    fn run<T: WithDType>(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<T>(s, l, "relu input")?;
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, i)| {
                for (o, v) in o.iter_mut().zip(i) {
                    *o = if *v > T::zero() { *v } else { T::zero() };
                }
            });
        Ok((T::to_cpu_storage_owned(y), l.shape().clone()))
    }
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu-par"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        run_float!(self, "relu", "relu forward"; s, l)
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(mask_grad(res, grad)?))
    }
}

/// `grad` where `y > 0`, else 0.
fn mask_grad(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
    y.contiguous()?
        .apply_op2_no_bwd(&grad.contiguous()?, &MaskGrad)
}

/// `f` of two operands of one length, element by element, run in parallel.
fn zip_map<A: Copy + Sync, B: Copy + Sync, O: Copy + Send>(
    a: &[A],
    b: &[B],
    zero: O,
    f: impl Fn(A, B) -> O + Sync,
) -> Vec<O> {
    let mut out = vec![zero; a.len()];
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| {
            for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                *o = f(*a, *b);
            }
        });
    out
}

/// ReLU's backward, applied to (y, dy): dy where y > 0, else 0 (y may be a bf16 activation,
/// dy float32).
struct MaskGrad;

impl MaskGrad {
    fn run<A: WithDType, T: Widen<A>>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous::<A>(s1, l1, "relu output")?;
        let g = contiguous::<T>(s2, l2, "relu gradient")?;
        let dx = zip_map(y, g, T::zero(), |y, g| {
            if T::widen(y) > T::zero() {
                g
            } else {
                T::zero()
            }
        });
        Ok((T::to_cpu_storage_owned(dx), l2.shape().clone()))
    }
}

impl_op2!(MaskGrad, "relu-par-bwd", "relu backward", saved);

/// max(a + b, 0).
struct AddRelu;

impl AddRelu {
    fn run<T: WithDType>(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = contiguous::<T>(s1, l1, "relu operand")?;
        let b = contiguous::<T>(s2, l2, "relu operand")?;
        let y = zip_map(a, b, T::zero(), |a, b| {
            let s = a + b;
            if s > T::zero() {
                s
            } else {
                T::zero()
            }
        });
        Ok((T::to_cpu_storage_owned(y), l1.shape().clone()))
    }

    /// Of bf16 activations: the float32 sum's ReLU, rounded to bf16.
    fn run16(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = contiguous::<bf16>(s1, l1, "relu operand")?;
        let b = contiguous::<bf16>(s2, l2, "relu operand")?;
        let y = zip_map(a, b, bf16::ZERO, |a, b| {
            let s = a.to_f32() + b.to_f32();
            round_bf16(if s > 0.0 { s } else { 0.0 })
        });
        Ok((CpuStorage::BF16(y), l1.shape().clone()))
    }
}

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu-par"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if let CpuStorage::BF16(_) = s1 {
            let _p = super::prof::scope("add+relu forward");
            return self.run16(s1, l1, s2, l2);
        }
        run_float!(self, "add+relu", "add+relu forward"; s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = mask_grad(res, grad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

#[cfg(test)]
mod tests {
    fn ag() -> super::Pass<'static> {
        super::Pass::autograd(crate::model::ops::pass::Compute::default(), true)
    }
    use super::*;
    use candle_core::{Device, Var};

    /// relu and add_relu give candle's values and gradients for values straddling zero, in
    /// f32 and f64. (At exactly zero candle passes the gradient, PyTorch and we do not: see
    /// `zero_gets_no_gradient_as_in_pytorch`.)
    #[test]
    fn match_candle_ops_forward_and_backward() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            let n = 3 * 5 * 7 * 11;
            let a: Vec<f64> = (0..n).map(|i| ((i * 37) % 19) as f64 - 9.25).collect();
            let b: Vec<f64> = (0..n).map(|i| ((i * 11) % 13) as f64 - 6.5).collect();
            let r: Vec<f64> = (0..n).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
            let t = |v: &Vec<f64>| {
                Tensor::from_vec(v.clone(), (3, 5, 7, 11), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap()
            };
            let run = |ours: bool| {
                let (va, vb) = (
                    Var::from_tensor(&t(&a)).unwrap(),
                    Var::from_tensor(&t(&b)).unwrap(),
                );
                let (y1, y2) = if ours {
                    (
                        relu(va.as_tensor(), &ag()).unwrap(),
                        add_relu(va.as_tensor(), vb.as_tensor(), &ag()).unwrap(),
                    )
                } else {
                    (
                        va.as_tensor().relu().unwrap(),
                        (va.as_tensor() + vb.as_tensor()).unwrap().relu().unwrap(),
                    )
                };
                let loss = ((&y1 * t(&r)).unwrap() + (&y2 * t(&r)).unwrap().sqr().unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap();
                let g = loss.backward().unwrap();
                let flat = |x: &Tensor| {
                    x.to_dtype(DType::F64)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                };
                [
                    flat(&y1),
                    flat(&y2),
                    flat(g.get(va.as_tensor()).unwrap()),
                    flat(g.get(vb.as_tensor()).unwrap()),
                ]
            };
            let (ours, theirs) = (run(true), run(false));
            for (k, (o, t)) in ours.iter().zip(&theirs).enumerate() {
                let diff = o.iter().zip(t).filter(|(x, y)| x != y).count();
                assert_eq!(
                    diff, 0,
                    "{dtype:?} output/gradient {k}: {diff} elements differ"
                );
            }
        }
    }

    /// PyTorch's ReLU backward passes the gradient only where the output is positive.
    #[test]
    fn zero_gets_no_gradient_as_in_pytorch() {
        let dev = Device::Cpu;
        let x = Var::from_vec(vec![-1f32, 0.0, 2.0], 3, &dev).unwrap();
        let z = Var::from_vec(vec![0f32, 0.0, 0.0], 3, &dev).unwrap();
        let y = (relu(x.as_tensor(), &ag()).unwrap()
            + add_relu(x.as_tensor(), z.as_tensor(), &ag()).unwrap())
        .unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(gx, vec![0.0, 0.0, 2.0]);
    }
}

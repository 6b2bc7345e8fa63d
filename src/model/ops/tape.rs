//! The training backward pass of the ResNet body on the CPU, without candle's autograd.
//!
//! candle's `backward` keeps every activation of the graph alive until it returns, and for
//! every node it creates a zero tensor and adds the node's gradient into it (two full passes
//! over each activation). In a taped pass ([`record`], `Pass::taped`), the body's CPU ops (convolution, BatchNorm,
//! max-pool, the residual add+ReLU) compute their forward without a graph and push their
//! backward onto a tape instead; [`Tape::backward`] then runs the tape in reverse with the
//! same backward functions as the ops' autograd (so the gradients are candle's, bit for
//! bit), stores a gradient as it arrives and adds only where a tensor feeds two ops (a
//! residual block's input), and drops each op's saved tensors once its backward has run,
//! so activations are freed as the pass goes, as PyTorch frees them.
//!
//! The head stays on candle's autograd: [`crate::model::Classifier::train_forward`] joins the
//! two at the body's output.
use super::conv::ConvImpl;
use super::pass::Pass;
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, TensorId};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// Which inputs of an op need a gradient, in the op's argument order.
pub(crate) type Wants<const N: usize> = [bool; N];
/// The gradients of an op's inputs (None where not wanted).
pub(crate) type Grads<const N: usize> = [Option<Tensor>; N];

type Backward = Box<dyn FnOnce(&Tensor, &[bool]) -> candle_core::Result<Vec<Option<Tensor>>>>;

struct Node {
    inputs: Vec<TensorId>,
    output: TensorId,
    backward: Backward,
}

/// The recorded ops of one training forward, in forward order.
#[derive(Default)]
pub struct Tape {
    nodes: Vec<Node>,
    /// Tensors whose gradient is needed: trainable parameters and outputs of ops that
    /// depend on one.
    needs_grad: HashSet<TensorId>,
    /// The trainable parameters met (their gradients go to the caller's `GradStore`).
    params: HashSet<TensorId>,
}

/// Whether a forward on `device` with `dtype` can be recorded: every op of the body has a
/// taped CPU version for float32/float64 with our convolution kernel.
pub fn supported(device: &Device, dtype: DType, kernel: ConvImpl) -> bool {
    device.is_cpu() && matches!(dtype, DType::F32 | DType::F64) && kernel == ConvImpl::Gemm
}

/// Runs `f` with a new tape (for a pass made with `Pass::taped`); returns its result and the
/// tape with what the pass recorded.
pub fn record<R>(f: impl FnOnce(&RefCell<Tape>) -> Result<R>) -> Result<(R, Tape)> {
    let tape = RefCell::new(Tape::default());
    let r = f(&tape)?;
    Ok((r, tape.into_inner()))
}

/// The error of an op that met a case it cannot record (on a recording thread, ops must
/// not fall back to candle's autograd: the gradient would be lost).
pub(crate) fn unsupported(op: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "{op}: this case has no taped backward (internal error: training must use autograd)"
    ))
}

impl Tape {
    /// Records an op with inputs `inputs` and output `output`; `backward(dy, wants)` returns
    /// the inputs' gradients. Does nothing when no input needs a gradient. A trainable
    /// parameter is an input that is a candle `Var` (frozen ones are read detached, see
    /// `params::value`).
    pub(crate) fn push<const N: usize>(
        &mut self,
        inputs: [&Tensor; N],
        output: &Tensor,
        backward: impl FnOnce(&Tensor, Wants<N>) -> candle_core::Result<Grads<N>> + 'static,
    ) {
        for x in inputs {
            if x.is_variable() {
                self.needs_grad.insert(x.id());
                self.params.insert(x.id());
            }
        }
        if !inputs.iter().any(|x| self.needs_grad.contains(&x.id())) {
            return;
        }
        self.needs_grad.insert(output.id());
        self.nodes.push(Node {
            inputs: inputs.iter().map(|x| x.id()).collect(),
            output: output.id(),
            backward: Box::new(move |dy, wants| {
                let mut w = [false; N];
                w.copy_from_slice(wants);
                Ok(backward(dy, w)?.into_iter().collect())
            }),
        });
    }

    /// Runs the recorded ops backward from `output`'s gradient `d_output` and adds each
    /// trainable parameter's gradient to `grads`. Saved tensors are freed as their op's
    /// backward is done.
    pub fn backward(self, output: TensorId, d_output: Tensor, grads: &mut GradStore) -> Result<()> {
        let Tape {
            nodes,
            needs_grad,
            params,
        } = self;
        let mut pending: HashMap<TensorId, Tensor> = HashMap::new();
        pending.insert(output, d_output);
        for node in nodes.into_iter().rev() {
            let Some(dy) = pending.remove(&node.output) else {
                // Not on the path to the output.
                continue;
            };
            let wants: Vec<bool> = node.inputs.iter().map(|i| needs_grad.contains(i)).collect();
            let dxs = (node.backward)(&dy, &wants)?;
            drop(dy);
            for ((id, want), dx) in node.inputs.into_iter().zip(wants).zip(dxs) {
                let Some(dx) = dx.filter(|_| want) else {
                    continue;
                };
                match pending.remove(&id) {
                    // The second use of a tensor (a residual block's input): candle adds the
                    // two in the same way (zero + first + second rounds as first + second).
                    Some(prev) => pending.insert(id, (prev + dx)?),
                    None => pending.insert(id, dx),
                };
            }
        }
        for (id, g) in pending {
            if !params.contains(&id) {
                return Err(Error::invalid(
                    "tape",
                    "a gradient reached a tensor no recorded op produced (internal error)",
                ));
            }
            grads.insert_id(id, g);
        }
        Ok(())
    }
}

/// `x` (a bf16 activation of the bf16 training forward) as float32, recorded: its gradient
/// is the output's, unchanged (float32).
pub(crate) fn widen(x: &Tensor, pass: &Pass<'_>) -> candle_core::Result<Tensor> {
    let y = x.to_dtype(DType::F32)?;
    pass.push([x], &y, |dy, want| {
        Ok([Some(dy.clone()).filter(|_| want[0])])
    });
    Ok(y)
}

/// Splits a two-input op's gradients into the tape's form.
pub(crate) fn grads2(g: (Option<Tensor>, Option<Tensor>), w: Wants<2>) -> Grads<2> {
    [g.0.filter(|_| w[0]), g.1.filter(|_| w[1])]
}

#[cfg(test)]
mod tests {
    use crate::model::ops::pass::{Compute, Pass};
    use crate::model::ops::precision::Precision;
    use crate::model::{Backbone, Classifier};
    use candle_core::{DType, Device, Tensor};
    use rand::{Rng, SeedableRng};

    /// A parameter's name, its gradient by autograd and by the tape.
    type Row = (String, Option<Tensor>, Option<Tensor>);

    /// Every trainable parameter's gradient by candle's autograd and by the tape, for one
    /// training forward of `backbone` from the same state (the dropout counter reset).
    fn both(
        backbone: Backbone,
        dtype: DType,
        prec: Precision,
        frozen_groups: &[usize],
    ) -> (Vec<Row>, usize) {
        let dev = Device::Cpu;
        let mut m = Classifier::with_dtype(backbone, 4, 7, &dev, dtype).unwrap();
        m.set_compute(Compute::with_precision(prec));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 3;
        let x: Vec<f64> = (0..n * 3 * 64 * 64)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let x = Tensor::from_vec(x, (n, 3, 64, 64), &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let y = Tensor::new(&[0u32, 3, 1], &dev).unwrap();
        let frozen: std::collections::HashSet<_> = m
            .store()
            .params()
            .iter()
            .filter(|p| frozen_groups.contains(&p.group) && !p.kind.is_bn())
            .map(|p| p.var.as_tensor().id())
            .collect();
        let n_frozen = frozen.len();
        let rows = {
            m.set_train_forwards(0);
            let pass = Pass::autograd(m.compute(), true).with_frozen(&frozen);
            let logits = m.forward(&x, &pass).unwrap();
            let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
            let autograd = loss.backward().unwrap();
            m.set_train_forwards(0);
            let fwd = m.train_forward(&x, &frozen).unwrap();
            let loss2 = candle_nn::loss::cross_entropy(fwd.logits(), &y).unwrap();
            assert_eq!(
                loss.to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
                loss2
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            );
            let taped = fwd.backward(&loss2).unwrap();
            m.store()
                .params()
                .iter()
                .map(|p| {
                    let t = p.var.as_tensor();
                    (
                        p.name.clone(),
                        autograd.get(t).cloned(),
                        taped.get(t).cloned(),
                    )
                })
                .collect()
        };
        (rows, n_frozen)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    /// The same gradients as autograd, element for element (a sign of zero aside: autograd
    /// adds each gradient to a zero tensor), for every parameter that has one, and none
    /// where autograd has none.
    fn assert_same(rows: &[Row]) -> usize {
        let mut with_grad = 0;
        for (name, a, b) in rows {
            match (a, b) {
                (None, None) => {}
                (Some(a), Some(b)) => {
                    let (a, b) = (values(a), values(b));
                    assert_eq!(a.len(), b.len(), "{name}");
                    let diff = a.iter().zip(&b).filter(|(x, y)| x != y).count();
                    assert_eq!(diff, 0, "{name}: {diff} of {} elements differ", a.len());
                    with_grad += 1;
                }
                (a, b) => panic!(
                    "{name}: autograd has a gradient: {}, the tape: {}",
                    a.is_some(),
                    b.is_some()
                ),
            }
        }
        with_grad
    }

    /// (In bf16 the tape stores activations in bf16 where autograd keeps float32, so the two
    /// differ by design: `stored16_tests` checks each op and the torchvision fixture the
    /// whole network.)
    #[test]
    fn resnet18_gradients_are_autograds_in_f32_and_f64() {
        for (dtype, prec) in [(DType::F32, Precision::F32), (DType::F64, Precision::F32)] {
            let (rows, _) = both(Backbone::Resnet18, dtype, prec, &[]);
            assert_eq!(assert_same(&rows), rows.len(), "{dtype:?} {prec:?}");
        }
    }

    #[test]
    fn resnet50_gradients_are_autograds() {
        let (rows, _) = both(Backbone::Resnet50, DType::F32, Precision::F32, &[]);
        assert_eq!(assert_same(&rows), rows.len());
    }

    /// A case without a taped backward fails loudly instead of losing the gradient.
    #[test]
    fn an_op_without_a_taped_backward_is_an_error() {
        let x = candle_core::Var::zeros((1, 1, 5, 5), DType::F32, &Device::Cpu).unwrap();
        // Padding over half the kernel takes the tensor-op max-pool, which has no tape entry.
        let r = super::record(|t| {
            let pass = Pass::taped(Compute::default(), t);
            crate::model::ops::pool::max_pool2d(x.as_tensor(), 3, 1, 2, &pass)
        });
        let e = r.err().expect("an error").to_string();
        assert!(
            e.contains("max pool") && e.contains("no taped backward"),
            "{e}"
        );
    }

    /// A gradient that reaches a tensor no recorded op produced (here a copy made outside
    /// the tape, so the chain back to the parameter is broken) is an error.
    #[test]
    fn a_broken_chain_is_an_error() {
        let v =
            candle_core::Var::new(&[[1f32, -2.0, 3.0], [4.0, 5.0, -6.0]], &Device::Cpu).unwrap();
        let (z, tape) = super::record(|t| {
            let pass = Pass::taped(Compute::default(), t);
            let y = crate::model::ops::relu::relu(v.as_tensor(), &pass)?;
            Ok(crate::model::ops::relu::relu(&y.t()?, &pass)?)
        })
        .unwrap();
        let mut grads = candle_core::backprop::GradStore::default();
        let e = tape
            .backward(z.id(), z.ones_like().unwrap(), &mut grads)
            .expect_err("an error")
            .to_string();
        assert!(e.contains("no recorded op produced"), "{e}");
    }

    /// A frozen body (fastai's `train_bn`): no gradient for its convolution weights, the
    /// BatchNorm parameters' gradients as autograd's.
    #[test]
    fn a_frozen_body_gets_gradients_only_for_batchnorm() {
        let (rows, frozen) = both(Backbone::Resnet18, DType::F32, Precision::F32, &[0, 1]);
        let n = assert_same(&rows);
        assert!(
            frozen >= 20 && n == rows.len() - frozen,
            "{n} of {}",
            rows.len()
        );
    }
}

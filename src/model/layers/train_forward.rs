//! A training forward ready for its backward: the body's ops on a tape (CPU), the head on
//! candle's autograd, joined at the body's output.
use crate::model::ops::pass::{Compute, Pass};
use crate::model::ops::tape::{record, supported, Tape};
use crate::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, TensorId, Var};
use std::collections::HashSet;

/// The result of [`crate::model::Classifier::train_forward`].
pub struct TrainForward {
    logits: Tensor,
    /// The body's output, the head's leaf copy of it and the body's tape (CPU).
    body: Option<(TensorId, Var, Tape)>,
}

impl TrainForward {
    /// The training forward of `x` through `body` and then `head` in `compute`, with the
    /// parameters in `frozen` read detached: on the CPU the body's ops are recorded on a
    /// tape, and the head starts from a copy of the body's output that autograd treats as a
    /// leaf; elsewhere autograd throughout.
    pub(crate) fn new(
        x: &Tensor,
        compute: Compute,
        frozen: &HashSet<TensorId>,
        body: impl FnOnce(&Pass<'_>) -> Result<Tensor>,
        head: impl FnOnce(&Tensor, &Pass<'_>) -> Result<Tensor>,
    ) -> Result<Self> {
        let autograd = Pass::autograd(compute, true).with_frozen(frozen);
        if !supported(x.device(), x.dtype(), compute.kernel) {
            return Ok(Self {
                logits: head(&body(&autograd)?, &autograd)?,
                body: None,
            });
        }
        let (features, tape) = record(|t| body(&Pass::taped(compute, t).with_frozen(frozen)))?;
        let leaf = Var::from_tensor(&features)?;
        let logits = head(leaf.as_tensor(), &autograd)?;
        Ok(Self {
            logits,
            body: Some((features.id(), leaf, tape)),
        })
    }

    /// The logits (N, classes).
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// The gradients of `loss` (computed from [`Self::logits`]) for every trainable
    /// parameter.
    pub fn backward(self, loss: &Tensor) -> Result<GradStore> {
        let mut grads = loss.backward()?;
        if let Some((features, leaf, tape)) = self.body {
            if let Some(d) = grads.remove(leaf.as_tensor()) {
                tape.backward(features, d, &mut grads)?;
            }
        }
        Ok(grads)
    }
}

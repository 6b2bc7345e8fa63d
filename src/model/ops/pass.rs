//! How one forward pass runs: a small value made where the pass starts (a training step, an
//! evaluation, a benchmark) and handed down every layer to every op, as candle-nn hands a
//! `Conv2dConfig` to its convolution. No op reads process-wide or thread-wide settings.
//!
//! - [`Compute`]: the convolution kernel and the precision of its products, which belong to
//!   the model (captured when it is built, changed with `Classifier::set_compute`);
//! - whether the pass trains (batch statistics, dropout) or evaluates;
//! - how gradients are kept ([`Grad`]): not at all (parameters read detached, each
//!   activation freed once used), by candle's autograd, or on a [`Tape`] (the body's CPU
//!   training backward, see `tape`), and which parameters are frozen.
use super::conv::{ConvImpl, PackedWeights};
use super::precision::Precision;
use super::tape::Tape;
use candle_core::{Tensor, TensorId};
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::OnceLock;

/// What a model computes with, whatever the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    /// Which kernel runs CPU convolutions.
    pub kernel: ConvImpl,
    /// Precision of the convolutions' products.
    pub precision: Precision,
}

impl Default for Compute {
    /// The start-up kernel ([`set_startup_kernel`]) in float32.
    fn default() -> Self {
        Self {
            kernel: startup_kernel(),
            precision: Precision::F32,
        }
    }
}

impl Compute {
    /// The default with `precision`.
    pub fn with_precision(precision: Precision) -> Self {
        Self {
            precision,
            ..Self::default()
        }
    }
}

static STARTUP_KERNEL: OnceLock<ConvImpl> = OnceLock::new();

/// Sets the kernel that models built from now on use, once, at start-up (the program reads
/// `COVID_RESNET_CONV` for it); a second call changes nothing. Unset: [`ConvImpl::Gemm`].
pub fn set_startup_kernel(k: ConvImpl) {
    let _ = STARTUP_KERNEL.set(k);
}

/// The kernel models are built with.
pub fn startup_kernel() -> ConvImpl {
    STARTUP_KERNEL.get().copied().unwrap_or(ConvImpl::Gemm)
}

/// The kernel `COVID_RESNET_CONV` names (`gemm` or `stock`), or why it cannot be used.
pub fn kernel_from_env() -> Result<Option<ConvImpl>, String> {
    kernel_named(std::env::var("COVID_RESNET_CONV").ok().as_deref())
}

fn kernel_named(v: Option<&str>) -> Result<Option<ConvImpl>, String> {
    match v {
        None | Some("") => Ok(None),
        Some("gemm") => Ok(Some(ConvImpl::Gemm)),
        Some("stock") => Ok(Some(ConvImpl::Stock)),
        Some(other) => Err(format!(
            "COVID_RESNET_CONV={other:?}: expected \"gemm\" or \"stock\""
        )),
    }
}

/// How a pass keeps gradients.
#[derive(Clone, Copy)]
pub enum Grad<'a> {
    /// None: parameters are read detached and no graph is built (inference: 4.0 -> 0.85 GB
    /// for ResNet-50 at batch 32, 224 px).
    Off,
    /// candle's autograd graph.
    Autograd,
    /// The ops push their backward onto this tape instead of building a graph.
    Tape(&'a RefCell<Tape>),
}

/// One forward pass's settings.
#[derive(Clone, Copy)]
pub struct Pass<'a> {
    /// Kernel and precision.
    pub compute: Compute,
    /// Training mode (batch statistics, dropout), else evaluation.
    pub train: bool,
    /// How gradients are kept.
    pub grad: Grad<'a>,
    /// Parameters read detached although gradients are kept (a frozen body): no gradient is
    /// computed for them.
    pub frozen: Option<&'a HashSet<TensorId>>,
    /// Convolution weights kept packed for bf16 products (a pass without gradients of a
    /// model whose weights no longer change; see [`PackedWeights`]).
    pub packed: Option<&'a PackedWeights>,
}

impl Pass<'static> {
    /// Evaluation without gradients.
    pub fn infer(compute: Compute) -> Self {
        Self {
            compute,
            train: false,
            grad: Grad::Off,
            frozen: None,
            packed: None,
        }
    }

    /// A pass on candle's autograd.
    pub fn autograd(compute: Compute, train: bool) -> Self {
        Self {
            compute,
            train,
            grad: Grad::Autograd,
            frozen: None,
            packed: None,
        }
    }
}

impl<'a> Pass<'a> {
    /// A training pass that records its ops on `tape`.
    pub fn taped(compute: Compute, tape: &'a RefCell<Tape>) -> Self {
        Self {
            compute,
            train: true,
            grad: Grad::Tape(tape),
            frozen: None,
            packed: None,
        }
    }

    /// The same pass with the parameters in `frozen` read detached.
    pub fn with_frozen(self, frozen: &'a HashSet<TensorId>) -> Self {
        Self {
            frozen: Some(frozen),
            ..self
        }
    }

    /// The same pass taking convolution weights packed from `packed` (used by bf16 passes
    /// without gradients only).
    pub fn with_packed(self, packed: &'a PackedWeights) -> Self {
        Self {
            packed: Some(packed),
            ..self
        }
    }

    /// Whether ops record their backward on a tape.
    pub fn taping(&self) -> bool {
        matches!(self.grad, Grad::Tape(_))
    }

    /// Whether any gradient is kept.
    pub fn grad_on(&self) -> bool {
        !matches!(self.grad, Grad::Off)
    }

    /// The precision of the convolutions' products.
    pub fn precision(&self) -> Precision {
        self.compute.precision
    }

    /// Records an op on the tape (nothing when the pass does not tape); see [`Tape::push`].
    pub(crate) fn push<const N: usize>(
        &self,
        inputs: [&Tensor; N],
        output: &Tensor,
        backward: impl FnOnce(&Tensor, super::tape::Wants<N>) -> candle_core::Result<super::tape::Grads<N>>
            + 'static,
    ) {
        if let Grad::Tape(t) = self.grad {
            t.borrow_mut().push(inputs, output, backward);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backbone, Classifier};
    use candle_core::{DType, Device};

    #[test]
    fn the_kernel_variable_names_a_kernel_or_is_refused() {
        assert_eq!(kernel_named(None), Ok(None));
        assert_eq!(kernel_named(Some("stock")), Ok(Some(ConvImpl::Stock)));
        assert_eq!(kernel_named(Some("gemm")), Ok(Some(ConvImpl::Gemm)));
        let e = kernel_named(Some("fast")).unwrap_err();
        assert!(e.contains("\"fast\"") && e.contains("stock"), "{e}");
    }

    /// Each model computes with its own kernel and precision, whatever another model on
    /// the same thread uses (with thread-wide settings, one model's bf16 leaked into any
    /// other model run inside the same scope).
    #[test]
    fn each_model_keeps_its_own_compute_on_one_thread() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 40, 40), &dev).unwrap();
        let plain = Classifier::new(Backbone::Resnet18, 4, 5, &dev).unwrap();
        let want = plain.infer(&x).unwrap();
        let mut half = plain.clone();
        half.set_compute(Compute::with_precision(Precision::Bf16));
        let mut stock = plain.clone();
        stock.set_compute(Compute {
            kernel: ConvImpl::Stock,
            precision: Precision::F32,
        });
        let y_half = half.infer(&x).unwrap();
        let y_stock = stock.infer(&x).unwrap();
        let y_plain = plain.infer(&x).unwrap();
        let diff = |a: &Tensor, b: &Tensor| -> f32 {
            let (a, b) = (a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
            let pairs = a.iter().flatten().zip(b.iter().flatten());
            pairs.map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
        };
        assert_eq!(diff(&y_plain, &want), 0.0, "float32 after a bf16 model ran");
        let d_half = diff(&y_half, &want);
        assert!(
            d_half > 0.0 && d_half < 0.5,
            "bf16 differs by rounding only: {d_half}"
        );
        let d_stock = diff(&y_stock, &want);
        assert!(d_stock < 1e-3, "candle's kernel: {d_stock}");
        // A training forward on the stock kernel cannot be taped: autograd takes it.
        assert!(!crate::model::ops::tape::supported(
            &dev,
            DType::F32,
            stock.compute().kernel
        ));
        assert!(crate::model::ops::tape::supported(
            &dev,
            DType::F32,
            plain.compute().kernel
        ));
    }
}

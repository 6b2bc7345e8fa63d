//! Named parameters and buffers of a model, with their parameter group and kind, and
//! initialisation from our own seeded random number generator (candle's CPU RNG cannot
//! be seeded).
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// What a parameter is; the optimizer treats BatchNorm parameters and biases differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Convolution or linear weight.
    Weight,
    /// Bias of a linear layer.
    Bias,
    /// BatchNorm scale (gamma).
    BnWeight,
    /// BatchNorm shift (beta).
    BnBias,
}

impl ParamKind {
    /// True for BatchNorm parameters (trainable even in frozen groups, fastai `train_bn`).
    pub fn is_bn(self) -> bool {
        matches!(self, Self::BnWeight | Self::BnBias)
    }
}

/// One trainable tensor.
#[derive(Debug, Clone)]
pub struct Param {
    /// Full name, e.g. `body.layer1.0.conv1.weight`.
    pub name: String,
    /// The variable (shared with the layer that uses it).
    pub var: Var,
    /// Parameter group (fastai split: 0 = stem+layer1+layer2, 1 = layer3+layer4, 2 = head).
    pub group: usize,
    /// What it is.
    pub kind: ParamKind,
}

/// All parameters and non-trainable buffers (BatchNorm running statistics) of a model.
#[derive(Debug, Clone)]
pub struct ParamStore {
    params: Vec<Param>,
    buffers: Vec<(String, Var)>,
    device: Device,
    dtype: DType,
}

impl ParamStore {
    /// An empty store whose float32 tensors live on `device`.
    pub fn new(device: &Device) -> Self {
        Self::with_dtype(device, DType::F32)
    }

    /// An empty store with tensors of `dtype` (float64 is used to check numerics).
    pub fn with_dtype(device: &Device, dtype: DType) -> Self {
        Self {
            params: Vec::new(),
            buffers: Vec::new(),
            device: device.clone(),
            dtype,
        }
    }

    /// The element type of the tensors.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trainable parameters, in creation order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The buffers (running statistics), in creation order.
    pub fn buffers(&self) -> &[(String, Var)] {
        &self.buffers
    }

    /// Total number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    /// Every tensor (parameters then buffers) by name, as stored in model files.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .chain(
                self.buffers
                    .iter()
                    .map(|(n, v)| (n.clone(), v.as_tensor().clone())),
            )
            .collect()
    }

    /// Looks a parameter or buffer up by name.
    pub fn var(&self, name: &str) -> Option<&Var> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.var)
            .or_else(|| self.buffers.iter().find(|(n, _)| n == name).map(|(_, v)| v))
    }

    /// Copies values into the variable `name`, checking the shape.
    pub fn set(&self, name: &str, value: &Tensor) -> Result<()> {
        let var = self
            .var(name)
            .ok_or_else(|| Error::invalid("tensor name", format!("{name} is not in the model")))?;
        if var.dims() != value.dims() {
            return Err(Error::invalid(
                "tensor shape",
                format!(
                    "{name}: the model has {:?}, the value has {:?}",
                    var.dims(),
                    value.dims()
                ),
            ));
        }
        let value = value.to_dtype(var.dtype())?.to_device(&self.device)?;
        var.set(&value)?;
        Ok(())
    }

    fn push_param(
        &mut self,
        name: String,
        t: Tensor,
        group: usize,
        kind: ParamKind,
    ) -> Result<Var> {
        let var = Var::from_tensor(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        self.params.push(Param {
            name,
            var: var.clone(),
            group,
            kind,
        });
        Ok(var)
    }

    fn push_buffer(&mut self, name: String, t: Tensor) -> Result<Var> {
        let var = Var::from_tensor(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        self.buffers.push((name, var.clone()));
        Ok(var)
    }
}

/// How a weight tensor is initialised.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// Normal(0, std).
    Normal(f64),
    /// Uniform(-bound, bound).
    Uniform(f64),
    /// A constant.
    Const(f64),
}

/// Creates parameters under a name prefix in a parameter group, drawing initial values
/// from a seeded RNG so that two models built with one seed are identical.
pub struct Builder<'a> {
    store: &'a mut ParamStore,
    rng: &'a mut ChaCha8Rng,
    prefix: String,
    group: usize,
}

impl<'a> Builder<'a> {
    /// A builder at the root of `store`.
    pub fn new(store: &'a mut ParamStore, rng: &'a mut ChaCha8Rng) -> Self {
        Self {
            store,
            rng,
            prefix: String::new(),
            group: 0,
        }
    }

    /// A builder for the sub-module `name` (names joined with '.').
    pub fn pp(&mut self, name: &str) -> Builder<'_> {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Builder {
            store: self.store,
            rng: self.rng,
            prefix,
            group: self.group,
        }
    }

    /// The same builder, putting new parameters in `group`.
    pub fn group(&mut self, group: usize) -> Builder<'_> {
        Builder {
            store: self.store,
            rng: self.rng,
            prefix: self.prefix.clone(),
            group,
        }
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// A trainable parameter.
    pub fn param(
        &mut self,
        name: &str,
        shape: &[usize],
        init: Init,
        kind: ParamKind,
    ) -> Result<Var> {
        let t = sample(self.rng, shape, init)?;
        let full = self.full_name(name);
        self.store.push_param(full, t, self.group, kind)
    }

    /// A non-trainable buffer.
    pub fn buffer(&mut self, name: &str, shape: &[usize], value: f64) -> Result<Var> {
        let t = Tensor::full(value as f32, shape, &Device::Cpu)?;
        let full = self.full_name(name);
        self.store.push_buffer(full, t)
    }
}

fn sample(rng: &mut ChaCha8Rng, shape: &[usize], init: Init) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Normal(std) => {
            let dist = Normal::new(0.0f64, std)
                .map_err(|e| Error::invalid("init std", format!("{std}: {e}")))?;
            (0..n).map(|_| dist.sample(rng) as f32).collect()
        }
        Init::Uniform(bound) => (0..n)
            .map(|_| rng.random_range(-bound..=bound) as f32)
            .collect(),
    };
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?.to_dtype(DType::F32)?)
}

/// The RNG used for initialisation with `seed`.
pub fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

thread_local! {
    static NO_GRAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static FROZEN: std::cell::RefCell<std::collections::HashSet<candle_core::TensorId>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// Runs `f` with the parameters whose tensors are in `frozen` read detached: the backward
/// pass then computes no gradient for them, so a frozen body's convolutions skip their
/// weight-gradient products while their input gradients still reach the BatchNorm layers
/// that train (fastai's `train_bn`). Applies to this thread, and ends with `f` even if it
/// panics.
pub fn with_frozen<R>(
    frozen: std::collections::HashSet<candle_core::TensorId>,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore(std::collections::HashSet<candle_core::TensorId>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = std::mem::take(&mut self.0);
            FROZEN.with(|c| *c.borrow_mut() = old);
        }
    }
    let _restore = Restore(FROZEN.with(|c| c.replace(frozen)));
    f()
}

/// Runs `f` with the layers reading their parameters detached, so that no autograd graph is
/// recorded and each activation is freed as soon as the next layer has used it (inference:
/// 4.0 -> 0.85 GB for ResNet-50 at batch 32, 224 px). Applies to this thread, and ends with
/// `f` even if it panics.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(NO_GRAD.with(|c| c.replace(true)));
    f()
}

/// The tensor of `v` as a layer should use it: detached inside [`no_grad`], and for the
/// parameters [`with_frozen`] names.
pub fn value(v: &Var) -> Tensor {
    if is_no_grad() || FROZEN.with(|c| c.borrow().contains(&v.as_tensor().id())) {
        v.as_tensor().detach()
    } else {
        v.as_tensor().clone()
    }
}

/// Whether this thread is inside [`no_grad`].
pub fn is_no_grad() -> bool {
    NO_GRAD.with(|c| c.get())
}

#[cfg(test)]
mod no_grad_tests {
    use super::*;

    #[test]
    fn no_grad_detaches_and_ends_even_after_a_panic() {
        let v = Var::new(&[1f32, 2.0], &candle_core::Device::Cpu).unwrap();
        assert!(value(&v).is_variable());
        assert!(!no_grad(|| value(&v)).is_variable());
        let r = std::panic::catch_unwind(|| no_grad(|| panic!("inside")));
        assert!(r.is_err());
        assert!(!is_no_grad());
        assert!(value(&v).is_variable());
    }
}

//! Named parameters and buffers of a model, with their parameter group and kind, and
//! initialisation from our own seeded random number generator (candle's CPU RNG cannot
//! be seeded).
use crate::model::ops::pass::Pass;
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

/// The tensor of `v` as a layer of `pass` should use it: detached when the pass keeps no
/// gradient or names `v` frozen (a frozen body's convolutions then skip their weight-gradient
/// products while their input gradients still reach the BatchNorm layers that train, as
/// fastai's `train_bn`).
pub fn value(v: &Var, pass: &Pass<'_>) -> Tensor {
    let frozen = pass.frozen.is_some_and(|f| f.contains(&v.as_tensor().id()));
    if !pass.grad_on() || frozen {
        v.as_tensor().detach()
    } else {
        v.as_tensor().clone()
    }
}

#[cfg(test)]
mod value_tests {
    use super::*;
    use crate::model::ops::pass::Compute;

    #[test]
    fn a_pass_without_gradients_or_a_frozen_parameter_reads_it_detached() {
        let v = Var::new(&[1f32, 2.0], &candle_core::Device::Cpu).unwrap();
        let c = Compute::default();
        assert!(value(&v, &Pass::autograd(c, true)).is_variable());
        assert!(!value(&v, &Pass::infer(c)).is_variable());
        let frozen = std::collections::HashSet::from([v.as_tensor().id()]);
        let pass = Pass::autograd(c, true).with_frozen(&frozen);
        assert!(!value(&v, &pass).is_variable());
        let other = Var::new(&[3f32], &candle_core::Device::Cpu).unwrap();
        assert!(value(&other, &pass).is_variable());
    }
}

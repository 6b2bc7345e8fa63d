//! Adam with parameter groups, as fastai v1 drives PyTorch's Adam: per-group learning
//! rate and beta1 (changed every step by the one-cycle schedule), beta2 0.99, eps 1e-5,
//! decoupled ("true") weight decay applied before the Adam step, no decay on BatchNorm and
//! bias parameters unless asked, frozen groups skipped except their BatchNorm parameters.
use super::adam_step;
use crate::model::{Param, ParamKind};
use crate::{Error, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// Settings shared by all groups.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (multiplied by the group's lr).
    pub weight_decay: f64,
    /// Also decay BatchNorm parameters and biases (fastai v1 `bn_wd=True`).
    pub wd_on_bn_and_bias: bool,
    /// Keep BatchNorm parameters of frozen groups trainable (fastai `train_bn`).
    pub train_bn: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta2: 0.99,
            eps: 1e-5,
            weight_decay: 1e-2,
            wd_on_bn_and_bias: false,
            train_bn: true,
        }
    }
}

/// Per-group hyper-parameters, set before each step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupHyper {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// A frozen group gets no updates (except BatchNorm with `train_bn`).
    pub frozen: bool,
}

#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    group: usize,
    kind: ParamKind,
    m: Option<Tensor>,
    v: Option<Tensor>,
    step: u64,
}

/// Saved optimizer state.
#[derive(Debug, Clone)]
pub struct OptimState {
    /// Moments by parameter name: `<name>.exp_avg`, `<name>.exp_avg_sq`.
    pub tensors: Vec<(String, Tensor)>,
    /// Steps taken per parameter.
    pub steps: Vec<(String, u64)>,
}

/// An in-memory copy of the optimizer's state.
#[derive(Debug, Clone)]
pub struct AdamSnapshot {
    groups: Vec<GroupHyper>,
    #[allow(clippy::type_complexity)]
    slots: Vec<(Option<Tensor>, Option<Tensor>, u64)>,
}

/// The optimizer.
#[derive(Debug)]
pub struct Adam {
    cfg: AdamConfig,
    groups: Vec<GroupHyper>,
    slots: Vec<Slot>,
}

impl Adam {
    /// An optimizer over `params` with `n_groups` groups, each starting at `lr`, beta1 0.9.
    pub fn new(params: &[Param], n_groups: usize, lr: f64, cfg: AdamConfig) -> Result<Self> {
        if let Some(p) = params.iter().find(|p| p.group >= n_groups) {
            return Err(Error::invalid(
                "parameter group",
                format!("{} is in group {} of {n_groups}", p.name, p.group),
            ));
        }
        Ok(Self {
            cfg,
            groups: vec![
                GroupHyper {
                    lr,
                    beta1: 0.9,
                    frozen: false,
                };
                n_groups
            ],
            slots: params
                .iter()
                .map(|p| Slot {
                    name: p.name.clone(),
                    var: p.var.clone(),
                    group: p.group,
                    kind: p.kind,
                    m: None,
                    v: None,
                    step: 0,
                })
                .collect(),
        })
    }

    /// The shared settings.
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }

    /// Current hyper-parameters of every group.
    pub fn groups(&self) -> &[GroupHyper] {
        &self.groups
    }

    /// Sets group `g`'s hyper-parameters.
    pub fn set_group(&mut self, g: usize, h: GroupHyper) -> Result<()> {
        let n = self.groups.len();
        let slot = self
            .groups
            .get_mut(g)
            .ok_or_else(|| Error::invalid("parameter group", format!("{g} of {n}")))?;
        *slot = h;
        Ok(())
    }

    /// True when the parameter is updated under the current freezing.
    fn trainable(&self, s: &Slot) -> bool {
        !self.groups[s.group].frozen || (self.cfg.train_bn && s.kind.is_bn())
    }

    /// The tensors of the parameters the next step would not update: layers read them
    /// detached ([`crate::model::layers::params::with_frozen`]) so that the backward pass computes
    /// no gradient for them (a frozen body's convolution weights: no weight-gradient
    /// products).
    pub fn frozen_ids(&self) -> std::collections::HashSet<candle_core::TensorId> {
        self.slots
            .iter()
            .filter(|s| !self.trainable(s))
            .map(|s| s.var.as_tensor().id())
            .collect()
    }

    /// Names of the parameters the next step would update.
    pub fn trainable_names(&self) -> Vec<&str> {
        self.slots
            .iter()
            .filter(|s| self.trainable(s))
            .map(|s| s.name.as_str())
            .collect()
    }

    /// One optimisation step with the gradients of `grads`. Parameters without a gradient
    /// are left alone (as PyTorch does for `grad is None`).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let cfg = self.cfg;
        for i in 0..self.slots.len() {
            if !self.trainable(&self.slots[i]) {
                continue;
            }
            let s = &mut self.slots[i];
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            // A variable's gradient still references the forward graph through its op:
            // storing anything computed from it would keep every step's activations alive.
            let g = &g.detach();
            let h = self.groups[s.group];
            let decays = cfg.weight_decay != 0.0
                && (cfg.wd_on_bn_and_bias || matches!(s.kind, ParamKind::Weight));
            s.step += 1;
            let st = adam_step::Step {
                decay: decays.then_some(1.0 - h.lr * cfg.weight_decay),
                beta1: h.beta1,
                beta2: cfg.beta2,
                bc2_sqrt: (1.0 - cfg.beta2.powi(s.step as i32)).sqrt(),
                eps: cfg.eps,
                lr_bc1: h.lr / (1.0 - h.beta1.powi(s.step as i32)),
            };
            let (p, m, v) = (s.var.as_tensor(), s.m.as_ref(), s.v.as_ref());
            let (p, m, v) = match adam_step::fused_cpu(p, g, m, v, &st)? {
                Some(new) => new,
                None => adam_step::by_tensor_ops(p, g, m, v, &st)?,
            };
            s.var.set(&p)?;
            s.m = Some(m);
            s.v = Some(v);
        }
        Ok(())
    }

    /// A snapshot of moments, steps and group settings (moments are immutable tensors, so
    /// this shares them instead of copying).
    pub fn snapshot(&self) -> AdamSnapshot {
        AdamSnapshot {
            groups: self.groups.clone(),
            slots: self
                .slots
                .iter()
                .map(|s| (s.m.clone(), s.v.clone(), s.step))
                .collect(),
        }
    }

    /// Returns to a snapshot taken from this optimizer.
    pub fn restore(&mut self, snap: &AdamSnapshot) {
        self.groups = snap.groups.clone();
        for (s, (m, v, step)) in self.slots.iter_mut().zip(&snap.slots) {
            s.m = m.clone();
            s.v = v.clone();
            s.step = *step;
        }
    }

    /// Loads state saved by [`Adam::state`]; every named moment must fit its parameter.
    pub fn load_state(&mut self, st: &OptimState) -> Result<()> {
        let tensors: std::collections::HashMap<&str, &Tensor> =
            st.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let steps: std::collections::HashMap<&str, u64> =
            st.steps.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        for s in &mut self.slots {
            let device = s.var.device();
            let get = |suffix: &str| -> Result<Option<Tensor>> {
                match tensors.get(format!("{}.{suffix}", s.name).as_str()) {
                    None => Ok(None),
                    Some(t) if t.dims() == s.var.dims() => {
                        Ok(Some(t.to_dtype(s.var.dtype())?.to_device(device)?))
                    }
                    Some(t) => Err(Error::invalid(
                        "optimizer state",
                        format!(
                            "{}.{suffix} has shape {:?}, the parameter {:?}",
                            s.name,
                            t.dims(),
                            s.var.dims()
                        ),
                    )),
                }
            };
            s.m = get("exp_avg")?;
            s.v = get("exp_avg_sq")?;
            s.step = steps.get(s.name.as_str()).copied().unwrap_or(0);
            if s.m.is_some() != s.v.is_some() || (s.step > 0 && s.m.is_none()) {
                return Err(Error::invalid(
                    "optimizer state",
                    format!("{} is incomplete", s.name),
                ));
            }
        }
        Ok(())
    }

    /// The optimizer state for checkpoints.
    pub fn state(&self) -> OptimState {
        let mut tensors = Vec::new();
        let mut steps = Vec::new();
        for s in &self.slots {
            if let (Some(m), Some(v)) = (&s.m, &s.v) {
                tensors.push((format!("{}.exp_avg", s.name), m.clone()));
                tensors.push((format!("{}.exp_avg_sq", s.name), v.clone()));
            }
            steps.push((s.name.clone(), s.step));
        }
        OptimState { tensors, steps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backbone, Classifier};
    use candle_core::{Device, Var};

    /// Three steps with per-group learning rates and beta1 changing every step, decoupled
    /// weight decay on weights but not on BatchNorm parameters, against PyTorch. fastai's
    /// `true_wd` (decay, then Adam) is exactly `torch.optim.AdamW`. Expected values from
    /// PyTorch 2.15, float64:
    ///
    /// ```python
    /// w = torch.tensor([[0.5, -1.0], [2.0, 0.3]], requires_grad=True)  # group 0, decayed
    /// b = torch.tensor([0.1, -0.2], requires_grad=True)                # group 0, BatchNorm
    /// h = torch.tensor([1.0, -0.5, 0.25], requires_grad=True)          # group 1, decayed
    /// opt = torch.optim.AdamW([{'params': [w], 'weight_decay': 1e-2},
    ///                          {'params': [b], 'weight_decay': 0.0},
    ///                          {'params': [h], 'weight_decay': 1e-2}],
    ///                         lr=1e-2, betas=(0.9, 0.99), eps=1e-5)
    /// for lr_a, lr_b, beta1 in [(1e-2, 3e-2, 0.95), (2e-2, 1e-2, 0.90), (5e-3, 4e-2, 0.85)]:
    ///     opt.zero_grad()
    ///     loss = 0.5 * (w ** 2).sum() + w[0, 0] * b[0] + (b ** 3).sum() + torch.sin(h).sum()
    ///     loss.backward()
    ///     for i, g in enumerate(opt.param_groups):
    ///         g['lr'] = lr_b if i == 2 else lr_a
    ///         g['betas'] = (beta1, 0.99)
    ///     opt.step()
    /// ```
    #[test]
    fn matches_pytorch_adamw_with_groups_and_changing_hyperparameters() {
        let dev = Device::Cpu;
        let var = |v: &[f64], shape: &[usize]| Var::from_vec(v.to_vec(), shape, &dev).unwrap();
        let w = var(&[0.5, -1.0, 2.0, 0.3], &[2, 2]);
        let b = var(&[0.1, -0.2], &[2]);
        let h = var(&[1.0, -0.5, 0.25], &[3]);
        let p = |name: &str, var: &Var, group, kind| Param {
            name: name.into(),
            var: var.clone(),
            group,
            kind,
        };
        let params = vec![
            p("w", &w, 0, ParamKind::Weight),
            p("b", &b, 0, ParamKind::BnWeight),
            p("h", &h, 1, ParamKind::Weight),
        ];
        let mut opt = Adam::new(&params, 2, 1e-2, AdamConfig::default()).unwrap();
        for (lr_a, lr_b, beta1) in [(1e-2, 3e-2, 0.95), (2e-2, 1e-2, 0.90), (5e-3, 4e-2, 0.85)] {
            let (wt, bt, ht) = (w.as_tensor(), b.as_tensor(), h.as_tensor());
            let w00 = wt.flatten_all().unwrap().narrow(0, 0, 1).unwrap();
            let b0 = bt.narrow(0, 0, 1).unwrap();
            let loss = ((wt.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap()
                + (w00 * b0).unwrap().sum_all().unwrap()
                + bt.powf(3.0).unwrap().sum_all().unwrap()
                + ht.sin().unwrap().sum_all().unwrap())
            .unwrap();
            let grads = loss.backward().unwrap();
            opt.set_group(
                0,
                GroupHyper {
                    lr: lr_a,
                    beta1,
                    frozen: false,
                },
            )
            .unwrap();
            opt.set_group(
                1,
                GroupHyper {
                    lr: lr_b,
                    beta1,
                    frozen: false,
                },
            )
            .unwrap();
            opt.step(&grads).unwrap();
        }
        let check = |v: &Var, want: &[f64]| {
            let got = v
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            for (g, e) in got.iter().zip(want) {
                assert!((g - e).abs() < 1e-12, "{got:?} vs {want:?}");
            }
        };
        check(
            &w,
            &[
                0.47118956644477195,
                -0.9708977796971344,
                1.9705237366610016,
                0.27126011470603484,
            ],
        );
        check(&b, &[0.07134042759261634, -0.22921730652043001]);
        check(
            &h,
            &[0.9328962056241882, -0.5653945499714337, 0.18380312219179498],
        );
    }

    /// Regression: moments computed from a variable's gradient kept the forward graph (and
    /// every activation of every step) alive, ~1.8 GB a step for ResNet-50 at batch 4.
    #[test]
    fn state_holds_no_graph_after_a_step() {
        let dev = Device::Cpu;
        let m = Classifier::new(Backbone::Resnet18, 4, 0, &dev).unwrap();
        let mut opt = Adam::new(m.store().params(), 3, 1e-3, AdamConfig::default()).unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, 32, 32), &dev).unwrap();
        let y = Tensor::new(&[0u32, 3], &dev).unwrap();
        for _ in 0..2 {
            let loss = candle_nn::loss::cross_entropy(&m.forward_t(&x, true).unwrap(), &y).unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        let state = opt.state();
        assert_eq!(state.tensors.len(), 2 * m.store().params().len());
        for (name, t) in &state.tensors {
            assert!(!t.track_op(), "{name} references a computation graph");
        }
        assert!(state.steps.iter().all(|(_, s)| *s == 2));
    }

    /// A head step reads the frozen body's convolution weights detached: they get no
    /// gradient (no weight-gradient products run), and every trainable parameter gets the
    /// gradient it gets without freezing (the input gradients still flow to the BatchNorms).
    #[test]
    fn a_frozen_body_computes_no_weight_gradients_and_the_same_others() {
        use crate::model::ops::pass::Pass;
        let dev = Device::Cpu;
        // Two identical models: each one's first training forward draws the same dropout.
        let (a, b) = (
            Classifier::new(Backbone::Resnet18, 4, 0, &dev).unwrap(),
            Classifier::new(Backbone::Resnet18, 4, 0, &dev).unwrap(),
        );
        let mut opt = Adam::new(b.store().params(), 3, 1e-3, AdamConfig::default()).unwrap();
        for g in 0..2 {
            let h = GroupHyper {
                frozen: true,
                ..opt.groups()[g]
            };
            opt.set_group(g, h).unwrap();
        }
        let x = Tensor::randn(0f32, 1., (2, 3, 32, 32), &dev).unwrap();
        let y = Tensor::new(&[1u32, 2], &dev).unwrap();
        let grads = |m: &Classifier, frozen: std::collections::HashSet<_>| {
            let pass = Pass::autograd(m.compute(), true).with_frozen(&frozen);
            let logits = m.forward(&x, &pass).unwrap();
            candle_nn::loss::cross_entropy(&logits, &y)
                .unwrap()
                .backward()
                .unwrap()
        };
        let full = grads(&a, Default::default());
        let frozen = opt.frozen_ids();
        let part = grads(&b, frozen.clone());
        let trainable = opt.trainable_names();
        let (mut skipped, mut same) = (0, 0);
        for (pa, pb) in a.store().params().iter().zip(b.store().params()) {
            let whole = full
                .get(pa.var.as_tensor())
                .expect("a gradient when unfrozen");
            let t = pb.var.as_tensor();
            if frozen.contains(&t.id()) {
                assert!(part.get(t).is_none(), "{} got a gradient", pb.name);
                assert!(!trainable.contains(&pb.name.as_str()));
                skipped += 1;
            } else {
                let g = part
                    .get(t)
                    .unwrap_or_else(|| panic!("{} has none", pb.name));
                let d = (g - whole).unwrap().abs().unwrap().max_all().unwrap();
                assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{}", pb.name);
                same += 1;
            }
        }
        // ResNet-18: 20 convolution weights in the body; 40 BatchNorm tensors and the head.
        assert_eq!(skipped, 20);
        assert!(same > 40, "{same}");
    }

    #[test]
    fn frozen_groups_skip_all_but_batchnorm() {
        let dev = Device::Cpu;
        let m = Classifier::new(Backbone::Resnet18, 4, 0, &dev).unwrap();
        let mut opt = Adam::new(m.store().params(), 3, 1e-3, AdamConfig::default()).unwrap();
        for g in 0..2 {
            opt.set_group(
                g,
                GroupHyper {
                    lr: 1e-3,
                    beta1: 0.9,
                    frozen: true,
                },
            )
            .unwrap();
        }
        let names = opt.trainable_names();
        assert!(names.contains(&"body.bn1.weight") && names.contains(&"body.layer4.1.bn2.bias"));
        assert!(
            !names.contains(&"body.conv1.weight")
                && !names.contains(&"body.layer4.0.downsample.0.weight")
        );
        assert!(names.contains(&"head.8.weight"));
        let before = m
            .store()
            .var("body.conv1.weight")
            .unwrap()
            .as_tensor()
            .copy()
            .unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, 32, 32), &dev).unwrap();
        let y = Tensor::new(&[1u32, 2], &dev).unwrap();
        let loss = candle_nn::loss::cross_entropy(&m.forward_t(&x, true).unwrap(), &y).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let after = m.store().var("body.conv1.weight").unwrap().as_tensor();
        let diff = (after - &before)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "a frozen convolution moved");
    }
}

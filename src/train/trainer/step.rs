//! One training step: the batch's targets, the run's loss (the labels' loss with its class or
//! finding weights, and a distillation run's teacher term), backward and the update.
use crate::data::loader::HostBatch;
use crate::model::Classifier;
use crate::train::optim::{Adam, GroupHyper};
use crate::Result;
use candle_core::{Device, Tensor};

/// What a run minimises: the labels' loss (with its class or finding weights), and a
/// distillation run's teacher term.
#[derive(Clone, Copy)]
pub(super) struct Objective<'a> {
    pub(super) class_weights: Option<&'a Tensor>,
    pub(super) soft: Option<&'a crate::train::distill::SoftTargets>,
}

/// A batch's targets besides its class labels: findings (targets, mask) and the teacher's
/// probabilities.
struct Targets {
    findings: Option<(Tensor, Tensor)>,
    soft: Option<Tensor>,
}

impl Objective<'_> {
    /// The targets of batch `b` on `device`.
    fn targets(&self, b: &HostBatch, device: &Device) -> Result<Targets> {
        Ok(Targets {
            findings: b.finding_tensors(device)?,
            soft: self.soft.map(|s| s.batch(&b.indices, device)).transpose()?,
        })
    }

    /// The loss of `logits` against labels `y` and the batch's other targets.
    fn loss(&self, logits: &Tensor, y: &Tensor, t: Targets) -> Result<Tensor> {
        let loss = match t.findings {
            Some((f, m)) => crate::train::loss::masked_bce(logits, &f, &m, self.class_weights)?,
            None => crate::train::loss::cross_entropy(logits, y, self.class_weights)?,
        };
        Ok(match (self.soft, t.soft) {
            (Some(s), Some(q)) => {
                let d = &s.config;
                crate::train::distill::loss(logits, loss, &q, d.weight, d.temperature)?
            }
            _ => loss,
        })
    }
}

/// One forward/backward/update on a batch with per-group rates; returns the loss (the
/// update is skipped when the loss is not finite).
pub(super) fn train_step(
    model: &Classifier,
    opt: &mut Adam,
    device: &Device,
    b: HostBatch,
    lrs: &[f64],
    beta1: f64,
    objective: Objective<'_>,
) -> Result<f64> {
    for (g, &lr) in lrs.iter().enumerate() {
        let frozen = opt.groups()[g].frozen;
        opt.set_group(g, GroupHyper { lr, beta1, frozen })?;
    }
    let targets = objective.targets(&b, device)?;
    let (x, y) = b.to_tensors(device)?;
    // Frozen weights are read detached: no gradient is computed for them.
    let fwd = model.train_forward(&x, &opt.frozen_ids())?;
    let loss = objective.loss(fwd.logits(), &y, targets)?;
    let lv = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    if !lv.is_finite() {
        return Ok(lv);
    }
    let grads = fwd.backward(&loss)?;
    opt.step(&grads)?;
    Ok(lv)
}

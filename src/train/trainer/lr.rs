//! The trainer's learning-rate finder: the sweep for `auto` steps, with the weights, BatchNorm
//! statistics, optimizer state and dropout counter put back afterwards.
use super::{train_step, Trainer};
use crate::model::layers::classifier::NUM_GROUPS;
use crate::train::config::SuggestionKind;
use crate::train::events::TrainEvent;
use crate::train::lr_finder::{sweep, LrFinderResult};
use crate::train::schedule::{LrSpec, Step, Trainable};
use crate::{Error, Result};

impl Trainer {
    /// The LR range test for a step training `trainable`, on the current stage size.
    /// Weights, BatchNorm statistics, optimizer state and the dropout counter are restored.
    pub fn lr_find(&mut self, trainable: Trainable) -> Result<LrFinderResult> {
        let model_snap = self.snapshot_model()?;
        let opt_snap = self.opt.snapshot();
        let forwards = self.model.train_forwards();
        self.set_freeze(trainable)?;
        self.sink.send(TrainEvent::LrFinderStarted {
            num_iter: self.cfg.lr_finder.num_iter,
        });
        let result = {
            let (model, opt, device, loader) =
                (&self.model, &mut self.opt, &self.device, &self.loader);
            let (control, sink) = (&self.control, &self.sink);
            // The run's own loss, with its teacher's term where it has one.
            let objective = super::Objective {
                class_weights: self.class_weights.as_ref(),
                soft: self.soft.as_ref(),
            };
            // Epoch numbers far from the training run's, so the sweep sees its own draws.
            let mut epoch = u64::MAX / 2;
            let mut batches = loader.epoch(epoch);
            let mut next = move || {
                batches.next().or_else(|| {
                    epoch += 1;
                    batches = loader.epoch(epoch);
                    batches.next()
                })
            };
            sweep(
                &self.cfg.lr_finder,
                &mut next,
                |b, lr| train_step(model, opt, device, b, &[lr; NUM_GROUPS], 0.9, objective),
                || control.is_stopped(),
                |p| sink.send(TrainEvent::LrFinderPoint(p)),
            )
        };
        self.restore_model(&model_snap)?;
        self.opt.restore(&opt_snap);
        self.model.set_train_forwards(forwards);
        let result = result?;
        self.sink.send(TrainEvent::LrFinderDone(result.clone()));
        Ok(result)
    }

    pub(super) fn step_lrs_for(&mut self, step: Step) -> Result<Vec<f64>> {
        if let Some(l) = self.step_lrs.clone() {
            return Ok(l);
        }
        let suggestion = if step.lr == LrSpec::Auto {
            self.sink.send(TrainEvent::Log(format!(
                "LR finder for stage {}, step {}",
                self.pos.stage + 1,
                self.pos.step + 1
            )));
            let r = self.lr_find(step.train)?;
            self.set_freeze(step.train)?;
            let s = &r.suggestions;
            let pick = match self.cfg.suggestion {
                SuggestionKind::Valley => s.valley,
                SuggestionKind::Steep => s.steep,
                SuggestionKind::Minimum => s.minimum,
            };
            Some(pick.map(|p| p.lr).ok_or_else(|| {
                Error::invalid(
                    "LR finder",
                    "too few points for a suggestion (the loss diverged at once?)",
                )
            })?)
        } else {
            None
        };
        step.lr.group_lrs(NUM_GROUPS, suggestion)
    }
}

//! One epoch of training: the batches with their one-cycle rates, a stop or pause between
//! batches (a checkpoint mid-epoch), the divergence guard, then validation, the epoch's
//! metrics and its checkpoint.
use super::{train_step, Outcome, Trainer};
use crate::train::events::{BatchRecord, EpochMetrics, TrainEvent};
use crate::train::one_cycle::OneCycle;
use crate::{Error, Result};
use std::time::Instant;

impl Trainer {
    /// One epoch from `pos.batch`; Some(outcome) when stopped.
    pub(super) fn run_epoch(
        &mut self,
        cycle: &OneCycle,
        lrs: &[f64],
        size_px: u32,
    ) -> Result<Option<Outcome>> {
        let t0 = Instant::now();
        let mut paused = std::time::Duration::ZERO;
        let bpe = self.batches_per_epoch();
        let last_good = self.snapshot_model()?;
        let last_opt = self.opt.snapshot();
        let last_forwards = self.model.train_forwards();
        let mut images = 0usize;
        let mut train_secs = 0.0;
        let epoch_iter = self
            .loader
            .epoch_from(self.pos.global_epoch as u64, self.pos.batch);
        for b in epoch_iter {
            let b = b?;
            let n = b.labels.len();
            let it = self.pos.epoch * bpe + self.pos.batch;
            let group_lrs: Vec<f64> = lrs.iter().map(|&l| cycle.lr(l, it)).collect();
            let beta1 = cycle.beta1(it);
            let tb = Instant::now();
            let loss = train_step(
                &self.model,
                &mut self.opt,
                &self.device,
                b,
                &group_lrs,
                beta1,
                super::Objective {
                    class_weights: self.class_weights.as_ref(),
                    soft: self.soft.as_ref(),
                },
            )?;
            let secs = tb.elapsed().as_secs_f64();
            if !loss.is_finite() {
                self.restore_model(&last_good)?;
                self.opt.restore(&last_opt);
                self.model.set_train_forwards(last_forwards);
                return Err(Error::Diverged {
                    loss,
                    stage: self.pos.stage + 1,
                    step: self.pos.step + 1,
                    epoch: self.pos.epoch + 1,
                    batch: self.pos.batch + 1,
                    lr: group_lrs.last().copied().unwrap_or(0.0),
                });
            }
            train_secs += secs;
            images += n;
            self.epoch_loss_sum += loss;
            self.epoch_batches += 1;
            self.unsaved_batches.push(BatchRecord {
                iter: self.pos.global_iter,
                loss,
                lrs: group_lrs.clone(),
                beta1,
            });
            self.sink.send(TrainEvent::Batch {
                global_iter: self.pos.global_iter,
                batch: self.pos.batch,
                batches: bpe,
                loss,
                lrs: group_lrs,
                beta1,
                img_per_s: n as f64 / secs.max(1e-9),
            });
            self.pos.batch += 1;
            self.pos.global_iter += 1;
            if self.control.is_paused() && !self.control.is_stopped() {
                self.sink.send(TrainEvent::Paused);
                let tp = Instant::now();
                while self.control.is_paused() && !self.control.is_stopped() {
                    std::thread::sleep(std::time::Duration::from_millis(30));
                }
                paused += tp.elapsed();
                self.sink.send(TrainEvent::Resumed);
            }
            if self.control.batch_done() && self.pos.batch < bpe {
                self.epoch_secs += t0.elapsed().saturating_sub(paused).as_secs_f64();
                let path = self.save_checkpoint()?;
                self.sink.send(TrainEvent::Stopped(path));
                return Ok(Some(Outcome::Stopped));
            }
        }
        // Validation at this stage's size.
        let of_validation = match &self.findings {
            Some(_) => {
                let o = self.finding_outputs(size_px, false)?;
                let rules =
                    vec![crate::eval::findings::ThresholdRule::default(); self.classes.len()];
                let m = crate::eval::findings::evaluate(&self.classes, &o.cases(), &rules, 0, 0);
                EpochMetrics::of_findings(o.loss(), &m)
            }
            None => EpochMetrics::of_validation(&self.validate(size_px, 0, false)?),
        };
        if let Some(e) = self.loader.disk_cache_error() {
            if !self.disk_cache_warned {
                self.disk_cache_warned = true;
                self.sink.send(TrainEvent::Log(format!(
                    "warning: the image cache cannot be written ({e}); images past the \
                     memory budget are decoded again each epoch"
                )));
            }
        }
        let em = EpochMetrics {
            stage: self.pos.stage,
            step: self.pos.step,
            epoch_in_step: self.pos.epoch,
            global_epoch: self.pos.global_epoch,
            global_iter: self.pos.global_iter,
            size_px,
            train_loss: self.epoch_loss_sum / self.epoch_batches.max(1) as f64,
            secs: self.epoch_secs + t0.elapsed().saturating_sub(paused).as_secs_f64(),
            img_per_s: images as f64 / train_secs.max(1e-9),
            ..of_validation
        };
        self.history.push(em.clone());
        self.sink.send(TrainEvent::Epoch(em));
        self.pos.epoch += 1;
        self.pos.batch = 0;
        self.pos.global_epoch += 1;
        self.epoch_loss_sum = 0.0;
        self.epoch_batches = 0;
        self.epoch_secs = 0.0;
        let path = self.save_checkpoint()?;
        self.sink.send(TrainEvent::Checkpoint(path.clone()));
        if self.control.is_stopped() {
            self.sink.send(TrainEvent::Stopped(path));
            return Ok(Some(Outcome::Stopped));
        }
        Ok(None)
    }
}

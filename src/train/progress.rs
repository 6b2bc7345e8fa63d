//! Where a run stands, as both front ends show it: iterations of the plan, the step's
//! epochs, the epoch's batches, the LR finder's sweep, the smoothed loss and an ETA that
//! does not count paused time. The CLI's bars and the GUI's run model both feed it events.
use super::events::TrainEvent;
use super::lr_finder::Smoother;
use std::time::{Duration, Instant};

/// The step in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepProgress {
    /// Stage index (0-based).
    pub stage: usize,
    /// Step index in the stage (0-based).
    pub step: usize,
    /// Input size.
    pub size_px: u32,
    /// Epochs finished in the step.
    pub epochs_done: usize,
    /// Epochs in the step.
    pub epochs: usize,
}

/// Training time that stops while paused.
#[derive(Debug, Clone, Copy, Default)]
struct ActiveClock {
    banked: Duration,
    running_since: Option<Instant>,
}

impl ActiveClock {
    fn start(&mut self, now: Instant) {
        if self.running_since.is_none() {
            self.running_since = Some(now);
        }
    }
    fn stop(&mut self, now: Instant) {
        if let Some(t) = self.running_since.take() {
            self.banked += now.saturating_duration_since(t);
        }
    }
    fn secs(&self, now: Instant) -> f64 {
        let running = self
            .running_since
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        (self.banked + running).as_secs_f64()
    }
}

/// Progress of a run (or of the LR finder), fed with events.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Iterations in the whole plan.
    pub total_iters: usize,
    /// Iterations done.
    pub done_iters: usize,
    /// The step in progress.
    pub step: Option<StepProgress>,
    /// (batches done, batches) of the epoch in progress.
    pub batch: (usize, usize),
    /// Training images per second of the last batch.
    pub img_per_s: f64,
    /// (points, planned points) of an LR-finder sweep in progress.
    pub lr_finder: Option<(usize, usize)>,
    /// fastai's smoothed training loss (NaN before the first batch).
    pub smoothed_loss: f64,
    smoother: Smoother,
    clock: ActiveClock,
    /// Iterations done when this session's clock started.
    iters_at_start: usize,
    /// Iterations timed by the clock (after the first batch of the session).
    timed_from: Option<usize>,
}

impl Progress {
    /// Updates from one event received at `now`.
    pub fn apply(&mut self, e: &TrainEvent, now: Instant) {
        match e {
            TrainEvent::Started {
                total_iters,
                done_iters,
                past,
                ..
            } => {
                *self = Self {
                    total_iters: *total_iters,
                    done_iters: *done_iters,
                    iters_at_start: *done_iters,
                    smoothed_loss: f64::NAN,
                    ..Self::default()
                };
                for r in past {
                    self.smoothed_loss = self.smoother.add(r.loss);
                }
            }
            TrainEvent::StepStarted {
                stage,
                step,
                size_px,
                epochs,
                epochs_done,
                ..
            } => {
                self.step = Some(StepProgress {
                    stage: *stage,
                    step: *step,
                    size_px: *size_px,
                    epochs_done: *epochs_done,
                    epochs: *epochs,
                });
            }
            TrainEvent::LrFinderStarted { num_iter } => {
                self.lr_finder = Some((0, *num_iter));
                self.clock.stop(now);
            }
            TrainEvent::LrFinderPoint(p) => {
                if let Some((d, _)) = self.lr_finder.as_mut() {
                    *d = p.iter + 1;
                }
            }
            TrainEvent::LrFinderDone(_) => {
                self.lr_finder = None;
                // The next batch restarts the clock; the sweep is not training time.
                self.timed_from = None;
            }
            TrainEvent::Batch {
                global_iter,
                batch,
                batches,
                loss,
                img_per_s,
                ..
            } => {
                self.done_iters = global_iter + 1;
                self.batch = (batch + 1, *batches);
                self.img_per_s = *img_per_s;
                self.smoothed_loss = self.smoother.add(*loss);
                // Time from the end of the first batch: it includes the warm-up.
                if self.timed_from.is_none() {
                    self.timed_from = Some(self.done_iters);
                    self.clock = ActiveClock::default();
                }
                self.clock.start(now);
            }
            TrainEvent::Epoch(_) => {
                if let Some(s) = self.step.as_mut() {
                    s.epochs_done = (s.epochs_done + 1).min(s.epochs);
                }
            }
            TrainEvent::Paused => self.clock.stop(now),
            TrainEvent::Resumed => self.clock.start(now),
            TrainEvent::Stopped(_) | TrainEvent::Finished { .. } | TrainEvent::Failed(_) => {
                self.clock.stop(now);
                self.lr_finder = None;
            }
            TrainEvent::Checkpoint(_) | TrainEvent::Log(_) | TrainEvent::Member { .. } => {}
        }
    }

    /// Seconds left at the rate of this session's training so far, excluding pauses and
    /// LR-finder sweeps; None until two batches have been timed.
    pub fn eta_secs(&self, now: Instant) -> Option<f64> {
        let from = self.timed_from?;
        let done = self.done_iters.checked_sub(from)?;
        if done == 0 || self.total_iters <= self.done_iters {
            return None;
        }
        let per = self.clock.secs(now) / done as f64;
        Some(per * (self.total_iters - self.done_iters) as f64)
    }

    /// Iterations done in this session (since the start or the resume).
    pub fn session_iters(&self) -> usize {
        self.done_iters.saturating_sub(self.iters_at_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(i: usize) -> TrainEvent {
        TrainEvent::Batch {
            global_iter: i,
            batch: i % 10,
            batches: 10,
            loss: 1.0,
            lrs: vec![1e-3],
            beta1: 0.9,
            img_per_s: 10.0,
        }
    }

    fn started(total: usize, done: usize) -> TrainEvent {
        TrainEvent::Started {
            total_iters: total,
            done_iters: done,
            device: "CPU".into(),
            run_dir: "run".into(),
            step_starts: vec![0],
            multi_label: false,
            history: vec![],
            past: vec![],
            classes: vec!["a".into(), "b".into()],
            validation: "v".into(),
        }
    }

    #[test]
    fn eta_excludes_paused_time() {
        let t0 = Instant::now();
        let s = |x: u64| t0 + Duration::from_secs(x);
        let mut p = Progress::default();
        p.apply(&started(100, 0), s(0));
        p.apply(&batch(0), s(5)); // warm-up batch: not timed
        p.apply(&batch(1), s(6));
        p.apply(&batch(2), s(7));
        // 2 timed iterations in 2 s: 1 s each, 97 left.
        assert!((p.eta_secs(s(7)).unwrap() - 97.0).abs() < 1e-9);
        p.apply(&TrainEvent::Paused, s(7));
        // An hour of pause changes nothing.
        assert!((p.eta_secs(s(3607)).unwrap() - 97.0).abs() < 1e-9);
        p.apply(&TrainEvent::Resumed, s(3607));
        p.apply(&batch(3), s(3608));
        assert!((p.eta_secs(s(3608)).unwrap() - 96.0).abs() < 1e-9);
        assert_eq!(p.session_iters(), 4);
    }

    #[test]
    fn a_resumed_run_starts_where_it_was_with_its_smoothed_loss() {
        let mut p = Progress::default();
        let now = Instant::now();
        let mut e = started(100, 40);
        if let TrainEvent::Started { past, .. } = &mut e {
            *past = (0..40)
                .map(|i| super::super::events::BatchRecord {
                    iter: i,
                    loss: 2.0,
                    lrs: vec![],
                    beta1: 0.9,
                })
                .collect();
        }
        p.apply(&e, now);
        assert_eq!((p.done_iters, p.session_iters()), (40, 0));
        assert!((p.smoothed_loss - 2.0).abs() < 1e-12);
        assert!(p.eta_secs(now).is_none());
    }
}

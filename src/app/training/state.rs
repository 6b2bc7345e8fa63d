//! The Training tab's model of a run, without egui: what the worker is doing, the curves,
//! the epoch table, the LR finder's points and the log, all changed only by [`RunModel::apply`]
//! (events from the trainer) and by the tab's commands.
use crate::train::events::{BatchRecord, EpochMetrics, TrainEvent};
use crate::train::lr_finder::{LrFinderResult, LrPoint, Smoother};
use crate::train::progress::Progress;
use std::path::PathBuf;
use std::time::Instant;

/// What the training thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Nothing running.
    Idle,
    /// Training.
    Running,
    /// Paused between batches.
    Paused,
    /// Stop requested; the checkpoint follows the current batch.
    Stopping,
    /// Running the LR finder.
    FindingLr,
}

impl RunState {
    /// The state as a user reads it.
    pub fn words(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Running => "Training",
            Self::Paused => "Paused",
            Self::Stopping => "Stopping after this batch (a checkpoint follows)",
            Self::FindingLr => "Finding a learning rate",
        }
    }

    /// True while a job runs.
    pub fn busy(self) -> bool {
        self != Self::Idle
    }
}

/// A message for the user that an event carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Something that went well.
    Info(String),
    /// Something that failed.
    Error(String),
}

/// A run as the tab shows it.
#[derive(Debug)]
pub struct RunModel {
    /// What the worker is doing.
    pub state: RunState,
    /// Iterations, step, epoch, LR-finder sweep, ETA.
    pub progress: Progress,
    /// Batch losses (iteration, loss), the whole run's.
    pub losses: Vec<[f64; 2]>,
    /// fastai's smoothed loss at each batch.
    pub smoothed: Vec<[f64; 2]>,
    /// Learning rate per group per batch (iteration, rate).
    pub lrs: Vec<Vec<[f64; 2]>>,
    /// Adam beta1 per batch.
    pub beta1: Vec<[f64; 2]>,
    /// Metrics per epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Iteration at which each step of the plan starts.
    pub step_starts: Vec<usize>,
    /// LR-finder points so far.
    pub lr_points: Vec<LrPoint>,
    /// The LR finder's result.
    pub lr_result: Option<LrFinderResult>,
    /// Log lines.
    pub log: Vec<String>,
    /// The run folder of the run shown.
    pub run_dir: Option<PathBuf>,
    /// Last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
    /// Model file of the last finished run.
    pub finished_model: Option<PathBuf>,
    /// The device of the last run, as the trainer described it.
    pub device_in_use: Option<String>,
    /// The run's classes, in the order of the epochs' per-class figures.
    pub classes: Vec<String>,
    /// The run trains a multi-label model (its classes are findings).
    pub multi_label: bool,
    /// An ensemble's members trained (or kept) before the one shown: (name, its epochs).
    pub members_done: Vec<(String, Vec<EpochMetrics>)>,
    /// The member being trained: (index from 1, members in all).
    pub member: Option<(usize, usize)>,
    smoother: Smoother,
}

impl Default for RunModel {
    fn default() -> Self {
        Self {
            state: RunState::Idle,
            progress: Progress::default(),
            losses: Vec::new(),
            smoothed: Vec::new(),
            lrs: Vec::new(),
            beta1: Vec::new(),
            classes: Vec::new(),
            multi_label: false,
            epochs: Vec::new(),
            step_starts: Vec::new(),
            lr_points: Vec::new(),
            lr_result: None,
            log: Vec::new(),
            run_dir: None,
            last_checkpoint: None,
            finished_model: None,
            device_in_use: None,
            members_done: Vec::new(),
            member: None,
            smoother: Smoother::default(),
        }
    }
}

impl RunModel {
    /// Whether the run trains a multi-label model (its epochs carry AUCs, not accuracy).
    pub fn is_findings(&self) -> bool {
        self.multi_label || self.epochs.iter().any(|m| !m.label_auc.is_empty())
    }

    /// A training job (new or resumed) is starting. What is on screen stays until the job's
    /// `Started` event: a job refused before it starts (a held run folder) leaves the last
    /// run's curves and table in place.
    pub fn begin_training(&mut self) {
        self.state = RunState::Running;
        self.members_done.clear();
        self.member = None;
    }

    /// Clears the curves, table and progress of the run shown, for a run that has started.
    fn clear_run(&mut self) {
        self.multi_label = false;
        self.losses.clear();
        self.smoothed.clear();
        self.lrs.clear();
        self.beta1.clear();
        self.epochs.clear();
        self.step_starts.clear();
        self.smoother = Smoother::default();
        self.last_checkpoint = None;
        self.run_dir = None;
    }

    /// An LR-finder job is starting: only its own chart is cleared.
    pub fn begin_lr_find(&mut self) {
        self.lr_points.clear();
        self.lr_result = None;
        self.progress = Progress::default();
        self.state = RunState::FindingLr;
    }

    /// The training thread ended (after its last event).
    pub fn job_ended(&mut self) {
        self.state = RunState::Idle;
    }

    fn push_batch(&mut self, r: &BatchRecord) {
        let x = r.iter as f64;
        self.losses.push([x, r.loss]);
        self.smoothed.push([x, self.smoother.add(r.loss)]);
        if self.lrs.len() < r.lrs.len() {
            self.lrs.resize(r.lrs.len(), Vec::new());
        }
        for (g, lr) in r.lrs.iter().enumerate() {
            self.lrs[g].push([x, *lr]);
        }
        if r.beta1.is_finite() {
            self.beta1.push([x, r.beta1]);
        }
    }

    /// Applies one event received at `now`; returns what the user should be told.
    pub fn apply(&mut self, e: TrainEvent, now: Instant) -> Option<Message> {
        if matches!(e, TrainEvent::Started { .. }) {
            self.clear_run();
            self.progress = Progress::default();
        }
        self.progress.apply(&e, now);
        match e {
            TrainEvent::Started {
                device,
                run_dir,
                step_starts,
                history,
                past,
                classes,
                validation,
                multi_label,
                ..
            } => {
                self.multi_label = multi_label;
                self.device_in_use = Some(device.clone());
                self.log.push(format!(
                    "classes: {}; validation on {validation}",
                    classes.join(", ")
                ));
                self.classes = classes;
                if !past.is_empty() || !history.is_empty() {
                    self.log.push(format!(
                        "{} earlier iterations and {} epochs restored from the run folder",
                        past.len(),
                        history.len()
                    ));
                }
                for r in &past {
                    self.push_batch(r);
                }
                self.epochs = history;
                self.step_starts = step_starts;
                self.log.push(format!(
                    "training on {device} in {}",
                    crate::files::shown(&run_dir)
                ));
                self.run_dir = Some(run_dir);
            }
            e @ TrainEvent::StepStarted { .. } => self.log.extend(e.step_summary()),
            TrainEvent::LrFinderStarted { num_iter } => self
                .log
                .push(format!("LR finder: sweeping {num_iter} learning rates")),
            TrainEvent::LrFinderPoint(p) => self.lr_points.push(p),
            TrainEvent::LrFinderDone(r) => {
                self.log.push(r.summary());
                self.lr_points = r.points.clone();
                self.lr_result = Some(r);
            }
            TrainEvent::Batch {
                global_iter,
                loss,
                lrs,
                beta1,
                ..
            } => self.push_batch(&BatchRecord {
                iter: global_iter,
                loss,
                lrs,
                beta1,
            }),
            TrainEvent::Epoch(m) => {
                self.log.push(format!(
                    "epoch {}: valid loss {:.4}, accuracy {}, macro F1 {}",
                    m.global_epoch + 1,
                    m.valid_loss,
                    crate::fmt::pct(m.accuracy, 1),
                    crate::fmt::pct(m.macro_f1, 1)
                ));
                self.epochs.push(m);
            }
            TrainEvent::Checkpoint(p) => {
                self.log
                    .push(format!("checkpoint {}", crate::files::shown(&p)));
                self.last_checkpoint = Some(p);
            }
            TrainEvent::Paused => {
                self.log.push("paused".into());
                if self.state == RunState::Running {
                    self.state = RunState::Paused;
                }
            }
            TrainEvent::Resumed => self.log.push("resumed".into()),
            TrainEvent::Log(s) => self.log.push(s),
            TrainEvent::Member {
                index,
                of,
                seed,
                kept,
            } => {
                // The member shown so far is done: its curve stays, beside the next one's.
                if let Some((i, _)) = self.member.take() {
                    if !self.epochs.is_empty() {
                        let done = std::mem::take(&mut self.epochs);
                        self.members_done.push((format!("member {i}"), done));
                    }
                }
                match kept {
                    Some(h) => {
                        self.log.push(format!(
                            "member {index} of {of} (seed {seed}): finished before, kept"
                        ));
                        self.members_done.push((format!("member {index}"), h));
                    }
                    None => {
                        self.log
                            .push(format!("member {index} of {of}: seed {seed}"));
                        self.member = Some((index, of));
                    }
                }
            }
            TrainEvent::Stopped(p) => {
                self.log
                    .push(format!("stopped; checkpoint {}", crate::files::shown(&p)));
                self.last_checkpoint = Some(p.clone());
                self.state = RunState::Idle;
                return Some(Message::Info(format!(
                    "Checkpoint saved: {}. Resume run continues from it.",
                    crate::files::shown(&p)
                )));
            }
            TrainEvent::Finished { model, report } => {
                self.log
                    .push(format!("finished: {}", crate::files::shown(&model)));
                if let Some(r) = &report {
                    self.log
                        .push(format!("test report {}", crate::files::shown(r)));
                }
                self.finished_model = Some(model.clone());
                self.state = RunState::Idle;
                return Some(Message::Info(format!(
                    "Training finished: {} (open it in the Viewer)",
                    crate::files::shown(&model)
                )));
            }
            TrainEvent::Failed(msg) => {
                self.log.push(format!("error: {msg}"));
                self.state = RunState::Idle;
                return Some(Message::Error(msg));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::events::BatchRecord;

    fn record(i: usize, loss: f64) -> BatchRecord {
        BatchRecord {
            iter: i,
            loss,
            lrs: vec![1e-5, 1e-4, 1e-3],
            beta1: 0.9,
        }
    }

    fn epoch(e: usize, iter: usize) -> EpochMetrics {
        EpochMetrics {
            stage: 0,
            step: 0,
            epoch_in_step: e,
            global_epoch: e,
            global_iter: iter,
            size_px: 64,
            train_loss: 1.0,
            valid_loss: 1.0,
            accuracy: 0.5,
            macro_f1: 0.4,
            recall: vec![0.5; 4],
            ppv: vec![0.5; 4],
            f1: vec![0.5; 4],
            confusion: vec![vec![1; 4]; 4],
            mean_auc: f64::NAN,
            label_auc: Vec::new(),
            secs: 3.0,
            img_per_s: 10.0,
        }
    }

    #[test]
    fn a_resumed_run_shows_its_whole_history_as_one_curve() {
        let mut m = RunModel::default();
        m.begin_training();
        let now = Instant::now();
        m.apply(
            TrainEvent::Started {
                total_iters: 20,
                done_iters: 10,
                device: "CPU".into(),
                run_dir: "run".into(),
                step_starts: vec![0, 5],
                history: vec![epoch(0, 5), epoch(1, 10)],
                past: (0..10).map(|i| record(i, 2.0 - i as f64 * 0.1)).collect(),
                classes: vec!["a".into(), "b".into()],
                validation: "v".into(),
                multi_label: false,
            },
            now,
        );
        m.apply(
            TrainEvent::StepStarted {
                stage: 0,
                step: 1,
                size_px: 64,
                trainable: crate::train::schedule::Trainable::All,
                lrs: vec![1e-3; 3],
                epochs: 3,
                epochs_done: 1,
            },
            now,
        );
        m.apply(
            TrainEvent::Batch {
                global_iter: 10,
                batch: 0,
                batches: 5,
                loss: 1.0,
                lrs: vec![1e-5, 1e-4, 1e-3],
                beta1: 0.9,
                img_per_s: 5.0,
            },
            now,
        );
        let xs: Vec<f64> = m.losses.iter().map(|p| p[0]).collect();
        assert_eq!(xs, (0..=10).map(|i| i as f64).collect::<Vec<_>>());
        assert_eq!(m.smoothed.len(), 11);
        assert_eq!(m.lrs.len(), 3);
        assert_eq!(m.lrs[2].len(), 11);
        assert_eq!(m.epochs.len(), 2);
        assert_eq!(m.step_starts, vec![0, 5]);
        let s = m.progress.step.unwrap();
        assert_eq!((s.step, s.epochs_done, s.epochs), (1, 1, 3));
        assert_eq!(m.progress.done_iters, 11);
        // The smoothed curve continues the earlier one: fastai's smoother over all 11.
        let mut sm = Smoother::default();
        let want = (0..10)
            .map(|i| 2.0 - i as f64 * 0.1)
            .chain([1.0])
            .map(|l| sm.add(l))
            .last()
            .unwrap();
        assert!((m.smoothed[10][1] - want).abs() < 1e-12);
    }

    #[test]
    fn stop_and_failure_are_said_and_end_the_job() {
        let mut m = RunModel::default();
        m.begin_training();
        let now = Instant::now();
        let said = m.apply(
            TrainEvent::Stopped("run/checkpoint.safetensors".into()),
            now,
        );
        assert_eq!(m.state, RunState::Idle);
        assert!(matches!(said, Some(Message::Info(t)) if t.starts_with("Checkpoint saved: run/")));
        m.begin_lr_find();
        assert_eq!(m.state.words(), "Finding a learning rate");
        let said = m.apply(TrainEvent::Failed("boom".into()), now);
        assert_eq!(said, Some(Message::Error("boom".into())));
        assert!(!m.state.busy());
    }
}

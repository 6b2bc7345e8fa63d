//! What a training run reports, and how it is controlled: the training thread sends events
//! through an `EventSink` (the CLI draws bars, the GUI feeds its run model, tests collect
//! them); pause and stop flags go the other way, read between batches.
use super::lr_finder::{LrFinderResult, LrPoint};
use super::schedule::Trainable;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Figures of one finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Stage index (0-based).
    pub stage: usize,
    /// Step index within the stage.
    pub step: usize,
    /// Epoch within the step.
    pub epoch_in_step: usize,
    /// Epoch counted over the whole plan.
    pub global_epoch: usize,
    /// Iterations done over the whole plan at the end of this epoch.
    pub global_iter: usize,
    /// Input size.
    pub size_px: u32,
    /// Mean training loss of the epoch's batches.
    #[serde(with = "crate::eval::metrics::nullable")]
    pub train_loss: f64,
    /// Validation loss.
    #[serde(with = "crate::eval::metrics::nullable")]
    pub valid_loss: f64,
    /// Validation accuracy.
    #[serde(with = "crate::eval::metrics::nullable")]
    pub accuracy: f64,
    /// Validation macro F1.
    #[serde(with = "crate::eval::metrics::nullable")]
    pub macro_f1: f64,
    /// Recall per class.
    #[serde(with = "crate::eval::metrics::nullable_vec")]
    pub recall: Vec<f64>,
    /// PPV per class.
    #[serde(with = "crate::eval::metrics::nullable_vec")]
    pub ppv: Vec<f64>,
    /// F1 per class.
    #[serde(with = "crate::eval::metrics::nullable_vec")]
    pub f1: Vec<f64>,
    /// Confusion matrix (rows actual).
    pub confusion: Vec<Vec<usize>>,
    /// Multi-label models: validation mean AUC over the findings (NaN otherwise).
    #[serde(default = "nan", with = "crate::eval::metrics::nullable")]
    pub mean_auc: f64,
    /// Multi-label models: validation AUC per finding (empty otherwise).
    #[serde(default, with = "crate::eval::metrics::nullable_vec")]
    pub label_auc: Vec<f64>,
    /// Wall time of the epoch (training and validation).
    pub secs: f64,
    /// Training images per second.
    pub img_per_s: f64,
}

impl EpochMetrics {
    /// The validation figures of `report`; the position, training loss and timings are
    /// zero for the caller to fill in.
    pub fn of_validation(report: &crate::eval::report::EvalReport) -> Self {
        let m = &report.metrics;
        Self {
            valid_loss: report.loss,
            accuracy: m.accuracy.value,
            macro_f1: m.macro_f1.value,
            recall: m.per_class.iter().map(|c| c.recall.value).collect(),
            ppv: m.per_class.iter().map(|c| c.ppv.value).collect(),
            f1: m.per_class.iter().map(|c| c.f1.value).collect(),
            confusion: m.confusion.m.clone(),
            ..Self::blank()
        }
    }

    /// The validation figures of a multi-label model (`loss`, `m`); the single-label figures
    /// are NaN and empty.
    pub fn of_findings(loss: f64, m: &crate::eval::findings::FindingsMetrics) -> Self {
        Self {
            valid_loss: loss,
            mean_auc: m.mean_auc.value,
            label_auc: m.labels.iter().map(|l| l.auc.value).collect(),
            ..Self::blank()
        }
    }

    /// Zero position, losses and timings; NaN and empty figures.
    fn blank() -> Self {
        Self {
            stage: 0,
            step: 0,
            epoch_in_step: 0,
            global_epoch: 0,
            global_iter: 0,
            size_px: 0,
            train_loss: 0.0,
            valid_loss: 0.0,
            accuracy: f64::NAN,
            macro_f1: f64::NAN,
            recall: Vec::new(),
            ppv: Vec::new(),
            f1: Vec::new(),
            confusion: Vec::new(),
            mean_auc: f64::NAN,
            label_auc: Vec::new(),
            secs: 0.0,
            img_per_s: 0.0,
        }
    }
}

fn nan() -> f64 {
    f64::NAN
}

/// What one training batch left behind (`losses.csv` keeps these across resumes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// Iteration over the whole plan (0-based).
    pub iter: usize,
    /// Loss of the batch.
    pub loss: f64,
    /// Learning rate per parameter group.
    pub lrs: Vec<f64>,
    /// Adam beta1 (NaN when an old log did not record it).
    pub beta1: f64,
}

/// An event of a training run.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// The run (or its resumption) started.
    Started {
        /// Iterations in the whole plan.
        total_iters: usize,
        /// Iterations already done (resume).
        done_iters: usize,
        /// The device, described.
        device: String,
        /// The run folder.
        run_dir: PathBuf,
        /// Iteration at which each step of the plan starts.
        step_starts: Vec<usize>,
        /// Metrics of the epochs done before (resume).
        history: Vec<EpochMetrics>,
        /// Batches done before (resume), from the run folder's `losses.csv`.
        past: Vec<BatchRecord>,
        /// The classes, in output order (the order of `EpochMetrics::recall`).
        classes: Vec<String>,
        /// Where the validation images come from, in words.
        validation: String,
        /// A multi-label model (findings): the epochs carry AUCs, not accuracy.
        multi_label: bool,
    },
    /// A plan step began.
    StepStarted {
        /// Stage index.
        stage: usize,
        /// Step index.
        step: usize,
        /// Input size.
        size_px: u32,
        /// What is trained.
        trainable: Trainable,
        /// Maximum learning rate per parameter group.
        lrs: Vec<f64>,
        /// Epochs.
        epochs: usize,
        /// Epochs of the step already done (a resumed run starts inside a step).
        epochs_done: usize,
    },
    /// The LR finder began a sweep of this many iterations.
    LrFinderStarted {
        /// Iterations planned (fewer when the loss diverges).
        num_iter: usize,
    },
    /// One LR-finder iteration.
    LrFinderPoint(LrPoint),
    /// The LR finder finished (weights restored).
    LrFinderDone(LrFinderResult),
    /// One training batch.
    Batch {
        /// Iteration over the whole plan (0-based).
        global_iter: usize,
        /// Batch in the epoch.
        batch: usize,
        /// Batches in the epoch.
        batches: usize,
        /// Loss of the batch.
        loss: f64,
        /// Learning rate per group.
        lrs: Vec<f64>,
        /// Adam beta1.
        beta1: f64,
        /// Training images per second (this batch).
        img_per_s: f64,
    },
    /// An epoch finished and was validated.
    Epoch(EpochMetrics),
    /// A checkpoint was written.
    Checkpoint(PathBuf),
    /// Paused between batches.
    Paused,
    /// Resumed.
    Resumed,
    /// A line for the log.
    Log(String),
    /// Member `index` (1-based) of an ensemble of `of` begins (its run's events follow), or
    /// was finished before and is kept (`kept`: its epochs, from its run folder).
    Member {
        /// Which member, from 1.
        index: usize,
        /// Members in all.
        of: usize,
        /// Its seed.
        seed: u64,
        /// A member finished earlier: its per-epoch metrics.
        kept: Option<Vec<EpochMetrics>>,
    },
    /// Stopped on request after a checkpoint.
    Stopped(PathBuf),
    /// The plan finished; the model file and the test report.
    Finished {
        /// Model file.
        model: PathBuf,
        /// Test-set report (JSON).
        report: Option<PathBuf>,
    },
    /// The run failed; training can be resumed from the last checkpoint.
    Failed(String),
}

impl TrainEvent {
    /// One line describing a `StepStarted` event (CLI and GUI logs); None for other events.
    pub fn step_summary(&self) -> Option<String> {
        let TrainEvent::StepStarted {
            stage,
            step,
            size_px,
            trainable,
            lrs,
            epochs,
            epochs_done,
        } = self
        else {
            return None;
        };
        let lrs: Vec<String> = lrs.iter().map(|l| crate::fmt::lr(*l)).collect();
        let what = match trainable {
            Trainable::Head => "the head",
            Trainable::All => "the whole network",
        };
        Some(format!(
            "stage {} step {}: {size_px} px, training {what}, lr [{}], {epochs} epoch(s){}",
            stage + 1,
            step + 1,
            lrs.join(", "),
            if *epochs_done > 0 {
                format!(" ({epochs_done} done)")
            } else {
                String::new()
            }
        ))
    }
}

/// Receives events; implementations must not block for long.
pub trait EventSink: Send + Sync {
    /// Delivers one event.
    fn send(&self, e: TrainEvent);
}

/// Collects events in memory (tests).
#[derive(Debug, Default)]
pub struct VecSink(pub Mutex<Vec<TrainEvent>>);

impl EventSink for VecSink {
    fn send(&self, e: TrainEvent) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e);
        }
    }
}

impl VecSink {
    /// A copy of the events so far.
    pub fn events(&self) -> Vec<TrainEvent> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Flags the UI or the CLI sets and the trainer reads between batches.
#[derive(Debug, Default)]
pub struct Control {
    pause: AtomicBool,
    stop: AtomicBool,
    /// Stop after this many more batches (tests and "kill after N").
    stop_after: Mutex<Option<usize>>,
}

impl Control {
    /// Asks for a pause.
    pub fn pause(&self) {
        self.pause.store(true, Ordering::SeqCst)
    }
    /// Lifts a pause.
    pub fn resume(&self) {
        self.pause.store(false, Ordering::SeqCst)
    }
    /// Asks the run to stop after the current batch (with a checkpoint).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst)
    }
    /// Stop after `n` more batches.
    pub fn stop_after_batches(&self, n: usize) {
        if let Ok(mut s) = self.stop_after.lock() {
            *s = Some(n);
        }
    }
    /// True when paused.
    pub fn is_paused(&self) -> bool {
        self.pause.load(Ordering::SeqCst)
    }
    /// True when a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    /// Clears pause, stop and stop-after, for the next job.
    pub fn reset(&self) {
        self.pause.store(false, Ordering::SeqCst);
        self.stop.store(false, Ordering::SeqCst);
        if let Ok(mut s) = self.stop_after.lock() {
            *s = None;
        }
    }

    /// Called by the trainer after each batch; true when it must stop now.
    pub fn batch_done(&self) -> bool {
        if let Ok(mut s) = self.stop_after.lock() {
            if let Some(n) = s.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.stop();
                }
            }
        }
        self.is_stopped()
    }
}

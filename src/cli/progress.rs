//! Terminal progress for training: bars for the plan and the epoch with smoothed loss, lr,
//! img/s and ETA; epoch metrics and log lines printed above them.
use crate::train::events::{EventSink, TrainEvent};
use crate::train::progress::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;

/// An `EventSink` drawing indicatif bars (hidden when stderr is not a terminal).
pub struct CliSink {
    mp: MultiProgress,
    plan: ProgressBar,
    epoch: ProgressBar,
    progress: Mutex<Progress>,
    classes: Mutex<Vec<String>>,
}

impl Default for CliSink {
    fn default() -> Self {
        Self::new()
    }
}

impl CliSink {
    /// Bars on stderr.
    pub fn new() -> Self {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let style = |t: &str| {
            ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar())
        };
        let plan = mp.add(ProgressBar::new(0));
        plan.set_style(style(
            "plan  {bar:30.cyan/blue} {pos}/{len} it  {elapsed_precise} ETA {eta_precise}",
        ));
        let epoch = mp.add(ProgressBar::new(0));
        epoch.set_style(style("epoch {bar:30.green/white} {pos}/{len}  {msg}"));
        Self {
            mp,
            plan,
            epoch,
            progress: Mutex::new(Progress::default()),
            classes: Mutex::new(Vec::new()),
        }
    }

    fn line(&self, s: String) {
        if self.mp.println(&s).is_err() || self.plan.is_hidden() {
            eprintln!("{s}");
        }
    }
}

impl EventSink for CliSink {
    fn send(&self, e: TrainEvent) {
        let smoothed = self
            .progress
            .lock()
            .map(|mut p| {
                p.apply(&e, std::time::Instant::now());
                p.smoothed_loss
            })
            .unwrap_or(f64::NAN);
        match e {
            TrainEvent::Started {
                total_iters,
                done_iters,
                device,
                run_dir,
                classes,
                validation,
                ..
            } => {
                self.plan.set_length(total_iters as u64);
                self.plan.set_position(done_iters as u64);
                self.line(format!(
                    "training on {device}; run folder {}",
                    crate::files::shown(&run_dir)
                ));
                self.line(format!(
                    "classes: {}; validation on {validation}",
                    classes.join(", ")
                ));
                if let Ok(mut c) = self.classes.lock() {
                    *c = classes;
                }
            }
            e @ TrainEvent::StepStarted { .. } => {
                if let Some(line) = e.step_summary() {
                    self.line(line);
                }
            }
            TrainEvent::LrFinderStarted { num_iter } => {
                self.epoch.set_length(num_iter as u64);
                self.epoch.set_position(0);
            }
            TrainEvent::LrFinderPoint(p) => {
                self.epoch.set_position(p.iter as u64 + 1);
                self.epoch.set_message(format!(
                    "LR finder: lr {}  loss {:.4}",
                    crate::fmt::lr(p.lr),
                    p.smoothed
                ));
            }
            TrainEvent::LrFinderDone(r) => self.line(r.summary()),
            TrainEvent::Batch {
                batch,
                batches,
                lrs,
                img_per_s,
                ..
            } => {
                self.plan.inc(1);
                self.epoch.set_length(batches as u64);
                self.epoch.set_position(batch as u64 + 1);
                self.epoch.set_message(format!(
                    "loss {smoothed:.4}  lr {}  {img_per_s:.1} img/s",
                    crate::fmt::lr(lrs.last().copied().unwrap_or(0.0))
                ));
            }
            TrainEvent::Epoch(m) if !m.label_auc.is_empty() => {
                let labels = self.classes.lock().map(|c| c.clone()).unwrap_or_default();
                // Findings without positives or negatives in the validation split have no AUC.
                let per: Vec<String> = labels
                    .iter()
                    .zip(&m.label_auc)
                    .filter(|(_, a)| a.is_finite())
                    .map(|(c, a)| format!("{c} {}", crate::fmt::pct(*a, 1)))
                    .collect();
                self.line(format!(
                    "epoch {:>2} ({} px): train loss {:.4}  valid loss {:.4}  mean AUC {}  AUC: {}  [{}, {:.1} img/s]",
                    m.global_epoch + 1,
                    m.size_px,
                    m.train_loss,
                    m.valid_loss,
                    crate::fmt::pct(m.mean_auc, 1),
                    per.join(", "),
                    crate::fmt::duration(m.secs),
                    m.img_per_s
                ));
            }
            TrainEvent::Epoch(m) => {
                let classes = self.classes.lock().map(|c| c.clone()).unwrap_or_default();
                let per: Vec<String> = classes
                    .iter()
                    .zip(&m.recall)
                    .map(|(c, r)| format!("{c} {}", crate::fmt::pct(*r, 1)))
                    .collect();
                self.line(format!(
                    "epoch {:>2} ({} px): train loss {:.4}  valid loss {:.4}  accuracy {}  macro F1 {}  recall: {}  [{}, {:.1} img/s]",
                    m.global_epoch + 1,
                    m.size_px,
                    m.train_loss,
                    m.valid_loss,
                    crate::fmt::pct(m.accuracy, 1),
                    crate::fmt::pct(m.macro_f1, 1),
                    per.join(", "),
                    crate::fmt::duration(m.secs),
                    m.img_per_s
                ));
            }
            TrainEvent::Checkpoint(_) | TrainEvent::Paused | TrainEvent::Resumed => {}
            TrainEvent::Log(s) => self.line(s),
            TrainEvent::Member {
                index,
                of,
                seed,
                kept,
            } => self.line(match kept {
                Some(h) => format!(
                    "member {index} of {of} (seed {seed}): finished before, kept ({} epochs)",
                    h.len()
                ),
                None => format!("member {index} of {of}: seed {seed}"),
            }),
            TrainEvent::Stopped(p) => {
                self.epoch.finish_and_clear();
                self.plan.abandon();
                self.line(format!(
                    "stopped; checkpoint {} (continue with --resume {})",
                    crate::files::shown(&p),
                    p.parent()
                        .map(|d| crate::files::shown(d).to_string())
                        .unwrap_or_default()
                ));
            }
            TrainEvent::Finished { model, report } => {
                self.epoch.finish_and_clear();
                self.plan.finish();
                self.line(format!("finished: model {}", crate::files::shown(&model)));
                if let Some(r) = report {
                    self.line(format!("test report {}", crate::files::shown(&r)));
                }
            }
            TrainEvent::Failed(msg) => {
                self.epoch.abandon();
                self.plan.abandon();
                self.line(format!("error: {msg}"));
            }
        }
    }
}

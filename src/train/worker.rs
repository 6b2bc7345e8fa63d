//! The jobs a front end runs on a training thread: a new run, a resumed run, or an LR
//! finder sweep alone. Each reports through an `EventSink`; errors also arrive as
//! `TrainEvent::Failed`.
use super::config::TrainConfig;
use super::events::{Control, EventSink, TrainEvent};
use super::lr_finder::LrFinderResult;
use super::schedule::Trainable;
use super::trainer::{Outcome, Trainer};
use crate::device::DeviceChoice;
use crate::Result;
use std::path::PathBuf;
use std::sync::Arc;

/// What the training thread should do.
#[derive(Debug, Clone)]
pub enum Job {
    /// A new run.
    Train(Box<TrainConfig>),
    /// Continue the run in this folder.
    Resume(PathBuf),
    /// Several runs as one ensemble (`train::members`): the config and the member count.
    Members(Box<TrainConfig>, usize),
    /// Only the LR finder, for the plan's first whole-network step at the first stage's size
    /// (its `out_dir` is ignored: the sweep writes nothing).
    LrFind(Box<TrainConfig>),
}

/// Runs `job` to its end on the calling thread. An error is also sent as
/// `TrainEvent::Failed`.
pub fn run(
    job: Job,
    device: DeviceChoice,
    sink: Arc<dyn EventSink>,
    control: Arc<Control>,
) -> Result<Option<Outcome>> {
    let r = match job {
        Job::Train(cfg) => Trainer::new(*cfg, device, sink.clone(), control)
            .and_then(|mut t| t.run())
            .map(Some),
        Job::Resume(dir) => Trainer::resume(&dir, device, sink.clone(), control)
            .and_then(|mut t| t.run())
            .map(Some),
        Job::Members(cfg, n) => {
            super::members::train_members(&cfg, n, device, sink.clone(), control).map(Some)
        }
        Job::LrFind(cfg) => {
            let train = if cfg
                .plan
                .stages
                .first()
                .is_some_and(|s| s.steps.iter().any(|st| st.train == Trainable::All))
            {
                Trainable::All
            } else {
                cfg.plan
                    .stages
                    .first()
                    .and_then(|s| s.steps.first())
                    .map(|s| s.train)
                    .unwrap_or(Trainable::All)
            };
            lr_find(*cfg, train, device, sink.clone(), control).map(|_| None)
        }
    };
    if let Err(e) = &r {
        sink.send(TrainEvent::Failed(e.to_string()));
    }
    r
}

/// The LR range test alone, at the plan's first stage size, training `trainable`. The
/// trainer needs a run folder: a private temporary one is made and removed.
pub fn lr_find(
    mut cfg: TrainConfig,
    trainable: Trainable,
    device: DeviceChoice,
    sink: Arc<dyn EventSink>,
    control: Arc<Control>,
) -> Result<LrFinderResult> {
    let tmp = tempfile::Builder::new()
        .prefix("covid-resnet-lr-find-")
        .tempdir()
        .map_err(|e| crate::Error::io(std::env::temp_dir(), e))?;
    cfg.out_dir = tmp.path().to_path_buf();
    let r = Trainer::new(cfg, device, sink, control).and_then(|mut t| t.lr_find(trainable));
    // Removed here, even when the sweep failed (the TempDir guard also covers a panic).
    let _ = tmp.close();
    r
}

//! The training run on its own named thread, reporting through an `EventSink`.
use super::events::{Control, EventSink, TrainEvent};
use super::trainer::{Outcome, TrainConfig, Trainer};
use crate::device::DeviceChoice;
use crate::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

/// What the worker should do.
#[derive(Debug, Clone)]
pub enum Job {
    /// A new run.
    Train(Box<TrainConfig>),
    /// Continue the run in this folder.
    Resume(PathBuf),
    /// Only the LR finder, for the first `auto`/whole-network step, at the first stage's size.
    LrFind(Box<TrainConfig>),
}

/// Starts `job` on a thread named "trainer". Errors are also sent as `TrainEvent::Failed`.
pub fn spawn(
    job: Job,
    device: DeviceChoice,
    sink: Arc<dyn EventSink>,
    control: Arc<Control>,
) -> std::io::Result<JoinHandle<Result<Option<Outcome>>>> {
    std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            let r = run_job(job, device, sink.clone(), control);
            if let Err(e) = &r {
                sink.send(TrainEvent::Failed(e.to_string()));
            }
            r
        })
}

fn run_job(
    job: Job,
    device: DeviceChoice,
    sink: Arc<dyn EventSink>,
    control: Arc<Control>,
) -> Result<Option<Outcome>> {
    match job {
        Job::Train(cfg) => Trainer::new(*cfg, device, sink, control)?.run().map(Some),
        Job::Resume(dir) => Trainer::resume(&dir, device, sink, control)?
            .run()
            .map(Some),
        Job::LrFind(cfg) => {
            let train = cfg
                .plan
                .stages
                .first()
                .and_then(|s| {
                    s.steps
                        .iter()
                        .find(|st| st.train == super::schedule::Trainable::All)
                })
                .map(|s| s.train)
                .unwrap_or(super::schedule::Trainable::All);
            let mut t = Trainer::new(*cfg, device, sink, control)?;
            t.lr_find(train)?;
            Ok(None)
        }
    }
}

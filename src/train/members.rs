//! Training several networks as one ensemble (`train --members N`).
//!
//! Member i (1-based) is a run of its own in `OUT/member-i`, seeded `seed + i - 1`
//! (initialisation, order, augmentation and dropout differ), all drawing **one validation
//! split** (seeded by the split seed, `--split-seed` or else `--seed`): the ensemble is then
//! judged, and its temperature fitted, on images none of its members trained on. With a
//! split per member every validation image would be some other member's training image.
//! Members leave the test split alone; when all have finished, `OUT/ensemble.safetensors`
//! joins them and the ensemble, the candidate the run produces, is evaluated on the test
//! split once (`OUT/report.*`).
//!
//! Running the same command again continues member by member: a finished member is kept,
//! a stopped or crashed one resumes from its checkpoint, a missing one starts.
use super::checkpoint::{CHECKPOINT_FILE, HISTORY_FILE, MODEL_FILE};
use super::config::TrainConfig;
use super::events::{Control, EventSink, TrainEvent};
use super::resume::ResumeOptions;
use super::trainer::{Outcome, Trainer};

use crate::device::DeviceChoice;
use crate::eval::run::evaluate_test_split;
use crate::eval::EvalOptions;
use crate::infer::Predictor;
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The ensemble file a members run writes in its folder.
pub const ENSEMBLE_FILE: &str = "ensemble.safetensors";

/// The folder of member `i` (1-based).
pub fn member_dir(out: &Path, i: usize) -> PathBuf {
    out.join(format!("member-{i}"))
}

/// Member `i`'s (1-based) run settings: its own folder and seed, the shared split seed, the
/// test split left alone.
pub fn member_config(cfg: &TrainConfig, i: usize) -> TrainConfig {
    let mut c = cfg.clone();
    c.out_dir = member_dir(&cfg.out_dir, i);
    c.seed = cfg.seed.wrapping_add(i as u64 - 1);
    c.split_seed = Some(cfg.split_seed());
    c.skip_test = true;
    c
}

/// Trains `n` members as `cfg` says (continuing those already begun), joins them and
/// evaluates the ensemble on the test split once (unless `cfg.skip_test`).
pub fn train_members(
    cfg: &TrainConfig,
    n: usize,
    device: DeviceChoice,
    sink: Arc<dyn EventSink>,
    control: Arc<Control>,
) -> Result<Outcome> {
    if !crate::model::io::model_file::ENSEMBLE_MEMBERS.contains(&n) {
        return Err(Error::invalid(
            "--members",
            format!(
                "{n}: an ensemble has {} to {} members",
                crate::model::io::model_file::ENSEMBLE_MEMBERS.start(),
                crate::model::io::model_file::ENSEMBLE_MEMBERS.end()
            ),
        ));
    }
    let mut models = Vec::with_capacity(n);
    for i in 1..=n {
        let mc = member_config(cfg, i);
        let dir = mc.out_dir.clone();
        let done = dir.join(MODEL_FILE);
        if done.is_file() && !cfg.overwrite {
            let history = std::fs::read(dir.join(HISTORY_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            sink.send(TrainEvent::Member {
                index: i,
                of: n,
                seed: mc.seed,
                kept: Some(history),
            });
            models.push(done);
            continue;
        }
        sink.send(TrainEvent::Member {
            index: i,
            of: n,
            seed: mc.seed,
            kept: None,
        });
        sink.send(TrainEvent::Log(format!(
            "validation split seed {}, run folder {}",
            mc.split_seed(),
            crate::files::shown(&dir)
        )));
        // A member's end is not the run's: its `Finished` reaches the front end as a line.
        let sink: Arc<dyn EventSink> = Arc::new(MemberSink {
            inner: sink.clone(),
            index: i,
        });
        let mut t = if dir.join(CHECKPOINT_FILE).is_file() && !cfg.overwrite {
            let opts = ResumeOptions {
                data: Some(cfg.data.clone()),
                ..ResumeOptions::default()
            };
            Trainer::resume_with(&dir, &opts, device, sink.clone(), control.clone())?
        } else {
            Trainer::new(mc, device, sink.clone(), control.clone())?
        };
        match t.run()? {
            Outcome::Finished { model } => models.push(model),
            Outcome::Stopped => return Ok(Outcome::Stopped),
        }
    }
    let out = cfg.out_dir.join(ENSEMBLE_FILE);
    let inputs: Vec<&Path> = models.iter().map(PathBuf::as_path).collect();
    crate::model::io::ensemble::write_ensemble(&inputs, &out)?;
    sink.send(TrainEvent::Log(format!(
        "ensemble of {n}: {}",
        crate::files::shown(&out)
    )));
    let report = if cfg.skip_test {
        None
    } else {
        Some(test_once(cfg, &out, device)?)
    };
    sink.send(TrainEvent::Finished {
        model: out.clone(),
        report,
    });
    Ok(Outcome::Finished { model: out })
}

/// Passes a member's events on, its `Finished` as a log line.
struct MemberSink {
    inner: Arc<dyn EventSink>,
    index: usize,
}

impl EventSink for MemberSink {
    fn send(&self, e: TrainEvent) {
        match e {
            TrainEvent::Finished { model, .. } => self.inner.send(TrainEvent::Log(format!(
                "member {} finished: {}",
                self.index,
                crate::files::shown(&model)
            ))),
            e => self.inner.send(e),
        }
    }
}

/// The ensemble's one evaluation on the test split; its report in the run folder.
fn test_once(cfg: &TrainConfig, model: &Path, device: DeviceChoice) -> Result<PathBuf> {
    let predictor = Predictor::load(model, &device.open()?)?.in_precision(cfg.precision);
    let opts = EvalOptions {
        batch_size: cfg.batch_size,
        bootstrap: cfg.bootstrap,
        ..EvalOptions::default()
    };
    let data_opts = cfg.data_options();
    let mut r = evaluate_test_split(&predictor, model, &cfg.data, &data_opts, &opts, |_, _| {})?;
    r.info.insert(
        "selection".into(),
        "the members were trained and chosen without the test split; this is its one \
         evaluation there"
            .into(),
    );
    let paths = r.write_all(&cfg.out_dir, "report")?;
    Ok(paths[0].clone())
}

//! The training loop: the plan's stages and steps, one-cycle per step, the LR finder for
//! `auto` steps, validation and an atomic checkpoint after every epoch, pause/stop between
//! batches, exact resume, and divergence handling.
//!
//! Everything random is a function of the seed and a counter (the loader's epoch, the
//! model's count of training forwards), so the checkpoint's counters are the RNG state and a
//! resumed run on the CPU ends with the same weights as an uninterrupted one.
use super::checkpoint::{read_batch_log, read_checkpoint, Position, CHECKPOINT_FILE};
use super::config::TrainConfig;
use super::events::{BatchRecord, Control, EpochMetrics, EventSink, TrainEvent};
use super::one_cycle::OneCycle;
use super::optim::{Adam, OptimState};
use super::resume::{settle, ResumeOptions};
use super::run_dir::{claim_new, claim_resume, RunLock};
use super::schedule::Trainable;
use crate::data::fingerprint::{fingerprint, DataFingerprint};
use crate::data::loader::{DataLoader, LoaderConfig};
use crate::data::sampler::seeded_subset;
use crate::data::split::{Dataset, ValidSource};
use crate::device::{describe, DeviceChoice};
use crate::eval::report::EvalReport;
use crate::eval::{EvalOptions, EvalSet};
use crate::infer::Predictor;
use crate::model::io::model_file::ModelMeta;
use crate::model::io::pretrained::import_pretrained_body;
use crate::model::layers::classifier::NUM_GROUPS;
use crate::model::Classifier;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod epoch;
mod findings;
mod lr;
mod output;
mod step;

use step::{train_step, Objective};

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All of the plan ran.
    Finished {
        /// Model file.
        model: PathBuf,
    },
    /// Stopped on request (checkpoint written).
    Stopped,
}

/// A training run.
pub struct Trainer {
    cfg: TrainConfig,
    device: Device,
    model: Classifier,
    opt: Adam,
    loader: DataLoader,
    /// Validated after every epoch.
    valid: EvalSet,
    /// Evaluated once at the end (None: the validation set is the whole test split).
    test: Option<EvalSet>,
    /// The data set's classes, in output order.
    classes: Vec<String>,
    /// Where the validation images came from.
    valid_source: ValidSource,
    /// Per-class weights of the loss (a multi-label run: per-finding positive weights), if
    /// the run weights it.
    class_weights: Option<Tensor>,
    /// A multi-label run: the uncertain-label policies of its data set.
    findings: Option<crate::data::findings::Policies>,
    /// A distillation run: the teacher's probabilities of the training images.
    soft: Option<super::distill::SoftTargets>,
    /// The disk cache's failure was said.
    disk_cache_warned: bool,
    sink: Arc<dyn EventSink>,
    control: Arc<Control>,
    pos: Position,
    step_lrs: Option<Vec<f64>>,
    history: Vec<EpochMetrics>,
    epoch_loss_sum: f64,
    epoch_batches: usize,
    /// Seconds of the epoch in progress spent before the current call of `run_epoch` (in an
    /// earlier process, for a resumed run).
    epoch_secs: f64,
    /// Batches trained since the last checkpoint (appended to `losses.csv` with it).
    unsaved_batches: Vec<BatchRecord>,
    /// The data set as the run started on it.
    fingerprint: DataFingerprint,
    /// This process's hold on the run folder, for the run's life.
    _lock: RunLock,
}

/// Refuses a data set that cannot be trained on (naming why) and logs its warnings.
fn check_ready(cfg: &TrainConfig, ds: &Dataset, sink: &dyn EventSink) -> Result<()> {
    let ready = crate::data::check::readiness(ds);
    if !ready.errors.is_empty() {
        return Err(Error::invalid(
            "dataset",
            format!(
                "{}: {}",
                crate::files::shown(&cfg.data),
                ready.errors.join("; ")
            ),
        ));
    }
    for w in ready.warnings {
        sink.send(TrainEvent::Log(format!("warning: {w}")));
    }
    Ok(())
}

impl Trainer {
    /// Prepares a new run: takes the run folder, reads the dataset, builds the model
    /// (imports pretrained weights).
    pub fn new(
        mut cfg: TrainConfig,
        device: DeviceChoice,
        sink: Arc<dyn EventSink>,
        control: Arc<Control>,
    ) -> Result<Self> {
        cfg.plan.validate()?;
        if cfg.batch_size < 2 {
            return Err(Error::invalid(
                "batch size",
                format!("{}: BatchNorm needs at least 2", cfg.batch_size),
            ));
        }
        // Absolute paths: the run can be resumed from any working directory.
        cfg.data = std::path::absolute(&cfg.data).unwrap_or(cfg.data);
        cfg.out_dir = std::path::absolute(&cfg.out_dir).unwrap_or(cfg.out_dir);
        // A student holds out the validation images its teacher held out, unless told.
        let teacher = match cfg.distill.as_mut() {
            Some(d) => Some(super::distill::begin(
                d,
                &mut cfg.split_seed,
                cfg.seed,
                sink.as_ref(),
            )?),
            None => None,
        };
        let ds = crate::data::findings::dataset::open_any(&cfg.data, &cfg.data_options())?;
        // Refuse an unusable data set, or teacher, before the run folder is touched.
        check_ready(&cfg, &ds, sink.as_ref())?;
        if let (Some(meta), Some(d)) = (&teacher, &cfg.distill) {
            let multi_label = ds.uncertain.is_some();
            super::distill::check_teacher(meta, &d.teacher, &ds.classes, multi_label)?;
        }
        if cfg.skip_test && ds.valid_source == ValidSource::Test {
            return Err(Error::invalid(
                "validation split",
                "the run is to leave the test split alone, but its validation images are the \
                 test split's (--valid test): choose another validation split",
            ));
        }
        let lock = claim_new(&cfg.out_dir, cfg.overwrite)?;
        let device = device.open()?;
        let model = Classifier::new(cfg.backbone, ds.classes.len(), cfg.seed, &device)?;
        if let Some(w) = &cfg.weights {
            let rep = import_pretrained_body(&model, w)?;
            sink.send(TrainEvent::Log(format!(
                "imported {} tensors from {} (skipped {})",
                rep.loaded,
                crate::files::shown(w),
                rep.skipped.len()
            )));
        } else {
            sink.send(TrainEvent::Log(
                "no pretrained weights: training starts from random initialisation".into(),
            ));
        }
        Self::assemble(cfg, ds, lock, device, model, sink, control)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        mut cfg: TrainConfig,
        ds: Dataset,
        lock: RunLock,
        device: Device,
        mut model: Classifier,
        sink: Arc<dyn EventSink>,
        control: Arc<Control>,
    ) -> Result<Self> {
        // The run's precision for every pass: training, validation, the LR finder.
        model.set_compute(crate::model::ops::pass::Compute::with_precision(
            cfg.precision,
        ));
        let fingerprint = fingerprint(&ds);
        let train = seeded_subset(ds.train.samples, cfg.max_train_images, cfg.seed);
        let valid_is_test = ds.valid_source == ValidSource::Test && cfg.max_valid_images.is_none();
        let valid = seeded_subset(ds.valid.samples, cfg.max_valid_images, cfg.split_seed());
        let place = cfg.cache.open();
        let test = (!valid_is_test && !cfg.skip_test)
            .then(|| EvalSet::with_cache(ds.test.samples, place.clone()));
        let class_weights = match &ds.uncertain {
            // Findings: `auto` weighs each finding's positives by negatives / positives.
            Some(_) => (cfg.class_weights == super::loss::ClassWeights::Auto).then(|| {
                let (t, m): (Vec<Vec<f32>>, Vec<Vec<f32>>) = train
                    .iter()
                    .map(|s| {
                        s.findings
                            .as_deref()
                            .unwrap_or_default()
                            .iter()
                            .map(|&c| crate::data::findings::target_of(c))
                            .unzip()
                    })
                    .unzip();
                super::loss::auto_pos_weights(&t, &m, ds.classes.len())
            }),
            None => {
                let mut counts = vec![0usize; ds.classes.len()];
                for s in &train {
                    counts[s.label] += 1;
                }
                cfg.class_weights.weights(&counts)
            }
        }
        .map(|w| super::loss::weight_tensor(&w, &device))
        .transpose()?;
        if train.len() < cfg.batch_size {
            return Err(Error::invalid(
                "dataset",
                format!(
                    "{} training images, fewer than one batch of {}",
                    train.len(),
                    cfg.batch_size
                ),
            ));
        }
        // A resumed run's teacher is the file its new run checked (its SHA-256 is compared).
        let soft = cfg
            .distill
            .as_mut()
            .map(|d| super::distill::soft_targets(d, &train, ds.classes.len(), sink.as_ref()))
            .transpose()?;
        let first_size = cfg.plan.stages.first().map(|s| s.size_px).unwrap_or(224);
        let mut lc = LoaderConfig::train(cfg.batch_size, first_size, cfg.seed);
        lc.threads = cfg.loader_threads.max(1);
        lc.augment = cfg.augment;
        lc.sampling = cfg.sampling;
        lc.norm = cfg.norm;
        lc.cache = place.clone();
        // As fastai: a last batch of one image would break BatchNorm's batch statistics.
        lc.drop_last = true;
        let loader = DataLoader::new(train, lc)?;
        let opt = Adam::new(model.store().params(), NUM_GROUPS, 1e-3, cfg.adam)?;
        Ok(Self {
            cfg,
            device,
            model,
            opt,
            loader,
            valid: EvalSet::with_cache(valid, place),
            test,
            classes: ds.classes,
            valid_source: ds.valid_source,
            class_weights,
            findings: ds.uncertain,
            soft,
            disk_cache_warned: false,
            sink,
            control,
            pos: Position::default(),
            step_lrs: None,
            history: Vec::new(),
            epoch_loss_sum: 0.0,
            epoch_batches: 0,
            epoch_secs: 0.0,
            unsaved_batches: Vec::new(),
            fingerprint,
            _lock: lock,
        })
    }

    /// Reopens a run from its folder's checkpoint, as it was; see [`Trainer::resume_with`].
    pub fn resume(
        run_dir: &Path,
        device: DeviceChoice,
        sink: Arc<dyn EventSink>,
        control: Arc<Control>,
    ) -> Result<Self> {
        Self::resume_with(run_dir, &ResumeOptions::default(), device, sink, control)
    }

    /// Reopens a run from its folder's checkpoint: takes the folder's lock, checks what the
    /// user gave against the run (`opts`) and the data set against its record.
    pub fn resume_with(
        run_dir: &Path,
        opts: &ResumeOptions,
        device: DeviceChoice,
        sink: Arc<dyn EventSink>,
        control: Arc<Control>,
    ) -> Result<Self> {
        let run_dir = &std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
        let path = run_dir.join(CHECKPOINT_FILE);
        let (lock, removed) = claim_resume(run_dir)?;
        let (meta, all) = read_checkpoint(run_dir)?;
        for p in removed {
            sink.send(TrainEvent::Log(format!(
                "removed {} (a write cut short by a crash)",
                crate::files::shown(&p)
            )));
        }
        let settled = settle(&meta, run_dir, opts)?;
        for n in &settled.notes {
            sink.send(TrainEvent::Log(n.clone()));
        }
        let cfg = settled.config;
        check_ready(&cfg, &settled.dataset, sink.as_ref())?;
        let device = device.open()?;
        let classes = settled.dataset.classes.len();
        let model = Classifier::new(cfg.backbone, classes, cfg.seed, &device)?;
        let model_t: BTreeMap<String, Tensor> = all
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("model.").map(|n| (n.to_string(), v.clone())))
            .collect();
        crate::model::io::pretrained::import_into(model.store(), "", &model_t, &path)?;
        model.set_train_forwards(meta.train_forwards);
        let mut t = Self::assemble(cfg, settled.dataset, lock, device, model, sink, control)?;
        // The record the run started with stays the reference (a forced resume keeps it).
        if let Some(f) = meta.data_fingerprint.clone() {
            t.fingerprint = f;
        }
        let st = OptimState {
            tensors: all
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("optim.").map(|n| (n.to_string(), v.clone())))
                .collect(),
            steps: meta.optim_steps.into_iter().collect(),
        };
        t.opt.load_state(&st)?;
        t.pos = meta.position;
        t.step_lrs = meta.step_lrs;
        t.history = meta.history;
        t.epoch_loss_sum = meta.epoch_loss_sum;
        t.epoch_batches = meta.epoch_batches;
        t.epoch_secs = meta.epoch_secs;
        t.sink.send(TrainEvent::Log(format!(
            "resumed {} at stage {}, step {}, epoch {}, batch {}",
            crate::files::shown(&path),
            t.pos.stage + 1,
            t.pos.step + 1,
            t.pos.epoch + 1,
            t.pos.batch
        )));
        Ok(t)
    }

    /// The model being trained.
    pub fn model(&self) -> &Classifier {
        &self.model
    }

    /// The device and, in bf16, the precision, for the front ends.
    fn device_text(&self) -> String {
        match self.cfg.precision {
            crate::model::ops::precision::Precision::F32 => describe(&self.device),
            p => format!("{}, {p} mixed precision", describe(&self.device)),
        }
    }

    /// The run's settings.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Where the run is.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// Metrics of the epochs done.
    pub fn history(&self) -> &[EpochMetrics] {
        &self.history
    }

    fn batches_per_epoch(&self) -> usize {
        self.loader.num_batches()
    }

    fn total_iters(&self) -> usize {
        self.cfg.plan.total_epochs() * self.batches_per_epoch()
    }

    /// Iteration at which each step of the plan starts.
    fn step_starts(&self) -> Vec<usize> {
        let bpe = self.batches_per_epoch();
        let mut at = 0;
        let mut out = Vec::new();
        for st in &self.cfg.plan.stages {
            for s in &st.steps {
                out.push(at);
                at += s.epochs * bpe;
            }
        }
        out
    }

    fn set_freeze(&mut self, trainable: Trainable) -> Result<()> {
        for g in 0..NUM_GROUPS {
            let mut h = self.opt.groups()[g];
            h.frozen = trainable == Trainable::Head && g + 1 < NUM_GROUPS;
            self.opt.set_group(g, h)?;
        }
        Ok(())
    }

    fn snapshot_model(&self) -> Result<Vec<Tensor>> {
        self.model
            .store()
            .named_tensors()
            .iter()
            .map(|(_, t)| Ok(t.copy()?))
            .collect()
    }

    fn restore_model(&self, snap: &[Tensor]) -> Result<()> {
        for ((name, _), t) in self.model.store().named_tensors().iter().zip(snap) {
            self.model.store().set(name, t)?;
        }
        Ok(())
    }

    /// Runs (the rest of) the plan.
    pub fn run(&mut self) -> Result<Outcome> {
        let past = read_batch_log(&self.cfg.out_dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.iter < self.pos.global_iter)
            .collect();
        self.sink.send(TrainEvent::Started {
            total_iters: self.total_iters(),
            done_iters: self.pos.global_iter,
            device: self.device_text(),
            run_dir: self.cfg.out_dir.clone(),
            step_starts: self.step_starts(),
            history: self.history.clone(),
            past,
            classes: self.classes.clone(),
            validation: self.valid_source.describe(),
            multi_label: self.findings.is_some(),
        });
        // The plan as a file for the user; an existing one is the run's own (checked on resume).
        let plan_file = self.cfg.out_dir.join("plan.toml");
        if !plan_file.exists() {
            self.cfg.plan.save(&plan_file)?;
        }
        let plan = self.cfg.plan.clone();
        while self.pos.stage < plan.stages.len() {
            let stage = &plan.stages[self.pos.stage];
            self.loader.set_size(stage.size_px);
            while self.pos.step < stage.steps.len() {
                let step = stage.steps[self.pos.step];
                self.set_freeze(step.train)?;
                let lrs = self.step_lrs_for(step)?;
                self.step_lrs = Some(lrs.clone());
                self.sink.send(TrainEvent::StepStarted {
                    stage: self.pos.stage,
                    step: self.pos.step,
                    size_px: stage.size_px,
                    trainable: step.train,
                    lrs: lrs.clone(),
                    epochs: step.epochs,
                    epochs_done: self.pos.epoch,
                });
                let bpe = self.batches_per_epoch();
                let cycle = OneCycle::new(self.cfg.one_cycle, step.epochs * bpe);
                while self.pos.epoch < step.epochs {
                    if let Some(o) = self.run_epoch(&cycle, &lrs, stage.size_px)? {
                        return Ok(o);
                    }
                }
                self.pos.step += 1;
                self.pos.epoch = 0;
                self.step_lrs = None;
            }
            self.pos.stage += 1;
            self.pos.step = 0;
        }
        self.finish()
    }

    /// Metadata of the model as it stands, for input size `size_px` (a multi-label model's
    /// thresholds at 0.5 until the end of the run sets them).
    fn model_meta(&self, size_px: u32) -> ModelMeta {
        let mut meta = ModelMeta::new(self.cfg.backbone, size_px, self.classes.clone());
        meta.mean = self.cfg.norm.mean;
        meta.std = self.cfg.norm.std;
        meta.findings =
            self.findings
                .as_ref()
                .map(|p| crate::model::io::model_file::FindingsMeta {
                    uncertain: p.to_string(),
                    thresholds: vec![0.5; self.classes.len()],
                    thresholds_from: "0.5 (not chosen yet)".into(),
                });
        meta
    }

    /// A multi-label model's outputs on the validation images (or, `test`, the test
    /// images) at `size_px`.
    fn finding_outputs(&self, size_px: u32, test: bool) -> Result<crate::eval::findings::Outputs> {
        let p = Predictor::new(self.model.clone(), self.model_meta(size_px));
        let opts = EvalOptions {
            batch_size: self.cfg.batch_size,
            bootstrap: 0,
            ..EvalOptions::default()
        };
        let set = match (&self.test, test) {
            (Some(t), true) => t,
            _ => &self.valid,
        };
        crate::eval::findings::Outputs::of(&p, set, &opts)
    }

    /// Runs the model over the validation images (or, `test`, the test images) at `size_px`.
    fn validate(&self, size_px: u32, bootstrap: usize, test: bool) -> Result<EvalReport> {
        let p = Predictor::new(self.model.clone(), self.model_meta(size_px));
        // The bootstrap's seed is eval's and the review's, not the run's: the same model on
        // the same images gets the same intervals wherever they are computed.
        let opts = EvalOptions {
            batch_size: self.cfg.batch_size,
            bootstrap,
            ..EvalOptions::default()
        };
        let set = match (&self.test, test) {
            (Some(t), true) => t,
            _ => &self.valid,
        };
        set.evaluate(&p, &opts, |_, _| {})
    }
}

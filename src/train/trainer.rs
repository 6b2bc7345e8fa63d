//! The training loop: the plan's stages and steps, one-cycle per step, the LR finder for
//! `auto` steps, validation and an atomic checkpoint after every epoch, pause/stop between
//! batches, exact resume, and divergence handling.
//!
//! Everything random is a function of the seed and a counter (the loader's epoch, the
//! model's count of training forwards), so the checkpoint's counters are the RNG state and a
//! resumed run on the CPU ends with the same weights as an uninterrupted one.
use super::events::{Control, EpochMetrics, EventSink, TrainEvent};
use super::lr_finder::{suggest, LrFinderConfig, LrFinderResult, LrPoint, Smoother};
use super::one_cycle::{OneCycle, OneCycleConfig};
use super::optim::{Adam, AdamConfig, GroupHyper, OptimState};
use super::schedule::{LrSpec, Plan, Trainable};
use crate::build_info::BuildInfo;
use crate::data::augment::AugmentConfig;
use crate::data::loader::{DataLoader, HostBatch, LoaderConfig};
use crate::data::sampler::Sampling;
use crate::data::split::{Dataset, Sample};
use crate::device::{describe, DeviceChoice};
use crate::eval::report::{predict_cases, EvalReport};
use crate::files::write_atomic;
use crate::model::checkpoint::{save_model, ModelMeta};
use crate::model::classifier::NUM_GROUPS;
use crate::model::weights::import_pretrained_body;
use crate::model::{Backbone, Classifier};
use crate::{Error, Result, CLASS_NAMES};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Which LR-finder suggestion `auto` steps use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SuggestionKind {
    /// fastai v2's default.
    #[default]
    Valley,
    /// fastai v1's steepest descent.
    Steep,
    /// Minimum / 10.
    Minimum,
}

/// Everything a run needs; saved in every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Dataset folder.
    pub data: PathBuf,
    /// Run folder (checkpoints, model, reports).
    pub out_dir: PathBuf,
    /// Body.
    pub backbone: Backbone,
    /// Pretrained body weights (torchvision/timm), if any.
    pub weights: Option<PathBuf>,
    /// The plan.
    pub plan: Plan,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of initialisation, order, augmentation and dropout.
    pub seed: u64,
    /// Augmentation.
    pub augment: AugmentConfig,
    /// Epoch order.
    pub sampling: Sampling,
    /// Loader threads.
    pub loader_threads: usize,
    /// Optimizer settings.
    pub adam: AdamConfig,
    /// One-cycle settings.
    pub one_cycle: OneCycleConfig,
    /// LR finder settings.
    pub lr_finder: LrFinderConfig,
    /// Suggestion used by `auto`.
    pub suggestion: SuggestionKind,
    /// Bootstrap resamples of the final test report.
    pub bootstrap: usize,
    /// Use at most this many training images (a seeded subset; demos and tests).
    pub max_train_images: Option<usize>,
    /// Use at most this many validation images (a seeded subset).
    pub max_valid_images: Option<usize>,
}

impl TrainConfig {
    /// Defaults for a dataset and a run folder: the paper plan, ResNet-50, batch 32.
    pub fn new(data: PathBuf, out_dir: PathBuf) -> Self {
        Self {
            data,
            out_dir,
            backbone: Backbone::Resnet50,
            weights: None,
            plan: Plan::paper(),
            batch_size: 32,
            seed: 42,
            augment: AugmentConfig::paper(),
            sampling: Sampling::Shuffle,
            loader_threads: 2,
            adam: AdamConfig::default(),
            one_cycle: OneCycleConfig::default(),
            lr_finder: LrFinderConfig::default(),
            suggestion: SuggestionKind::Valley,
            bootstrap: 1000,
            max_train_images: None,
            max_valid_images: None,
        }
    }
}

/// Where a run is: the next batch to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Position {
    /// Stage index.
    pub stage: usize,
    /// Step index in the stage.
    pub step: usize,
    /// Epoch in the step.
    pub epoch: usize,
    /// Batch in the epoch.
    pub batch: usize,
    /// Epochs begun before this one over the whole run (the loader's epoch number).
    pub global_epoch: usize,
    /// Iterations done over the whole plan.
    pub global_iter: usize,
}

/// Parses a checkpoint's bytes: its metadata (validated) and every tensor on the CPU.
/// `path` only names the file in errors.
pub fn parse_checkpoint(
    bytes: &[u8],
    path: &Path,
) -> Result<(CheckpointMeta, BTreeMap<String, Tensor>)> {
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::weights(path, format!("corrupt or truncated checkpoint: {e}")))?;
    let json = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get("checkpoint"))
        .ok_or_else(|| Error::weights(path, "not a covid-resnet checkpoint"))?;
    let meta: CheckpointMeta = serde_json::from_str(json)
        .map_err(|e| Error::weights(path, format!("bad checkpoint metadata: {e}")))?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(Error::weights(
            path,
            format!("unknown format {:?}", meta.format),
        ));
    }
    let problems = meta.config.plan.problems();
    if !problems.is_empty() || meta.config.batch_size < 2 {
        return Err(Error::weights(
            path,
            format!(
                "checkpoint settings are invalid: {}",
                if problems.is_empty() {
                    format!("batch size {}", meta.config.batch_size)
                } else {
                    problems.join("; ")
                }
            ),
        ));
    }
    let all: BTreeMap<String, Tensor> = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| Error::weights(path, format!("corrupt or truncated checkpoint: {e}")))?
        .into_iter()
        .collect();
    Ok((meta, all))
}

/// What the checkpoint's metadata holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    format: String,
    version: u32,
    config: TrainConfig,
    position: Position,
    step_lrs: Option<Vec<f64>>,
    train_forwards: u64,
    optim_steps: BTreeMap<String, u64>,
    history: Vec<EpochMetrics>,
    epoch_loss_sum: f64,
    epoch_batches: usize,
    build: BuildInfo,
}

const CHECKPOINT_FORMAT: &str = "covid-resnet-checkpoint";
/// File name of the checkpoint in a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// File name of the final model in a run folder.
pub const MODEL_FILE: &str = "model.safetensors";

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
    valid: Vec<Sample>,
    sink: Arc<dyn EventSink>,
    control: Arc<Control>,
    pos: Position,
    step_lrs: Option<Vec<f64>>,
    history: Vec<EpochMetrics>,
    epoch_loss_sum: f64,
    epoch_batches: usize,
    /// (global iteration, loss, last group's lr) of every batch since the start or resume.
    batch_log: Vec<(usize, f64, f64)>,
}

fn subset(mut v: Vec<Sample>, max: Option<usize>, seed: u64) -> Vec<Sample> {
    if let Some(m) = max {
        if m < v.len() {
            let labels = vec![0; v.len()];
            let order =
                crate::data::sampler::epoch_order(&labels, Sampling::Shuffle, seed, u64::MAX - 1);
            let mut keep: Vec<usize> = order[..m].to_vec();
            keep.sort_unstable();
            v = keep.into_iter().map(|i| v[i].clone()).collect();
        }
    }
    v
}

impl Trainer {
    /// Prepares a new run: reads the dataset, builds the model (imports pretrained weights).
    pub fn new(
        cfg: TrainConfig,
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
        let device = device.open()?;
        let model = Classifier::new(cfg.backbone, CLASS_NAMES.len(), cfg.seed, &device)?;
        if let Some(w) = &cfg.weights {
            let rep = import_pretrained_body(&model, w)?;
            sink.send(TrainEvent::Log(format!(
                "imported {} tensors from {} (skipped {})",
                rep.loaded,
                w.display(),
                rep.skipped.len()
            )));
        } else {
            sink.send(TrainEvent::Log(
                "no pretrained weights: training starts from random initialisation".into(),
            ));
        }
        Self::assemble(cfg, device, model, sink, control)
    }

    fn assemble(
        cfg: TrainConfig,
        device: Device,
        model: Classifier,
        sink: Arc<dyn EventSink>,
        control: Arc<Control>,
    ) -> Result<Self> {
        let ds = Dataset::open(&cfg.data)?;
        ds.train.check_complete("train")?;
        ds.test.check_complete("test")?;
        let leaked = ds.leaked_patients();
        if !leaked.is_empty() {
            sink.send(TrainEvent::Log(format!(
                "warning: {} patient(s) are in both train and test",
                leaked.len()
            )));
        }
        let train = subset(ds.train.samples, cfg.max_train_images, cfg.seed);
        let valid = subset(ds.test.samples, cfg.max_valid_images, cfg.seed);
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
        let first_size = cfg.plan.stages.first().map(|s| s.size_px).unwrap_or(224);
        let mut lc = LoaderConfig::train(cfg.batch_size, first_size, cfg.seed);
        lc.threads = cfg.loader_threads.max(1);
        lc.augment = cfg.augment;
        lc.sampling = cfg.sampling;
        // As fastai: a last batch of one image would break BatchNorm's batch statistics.
        lc.drop_last = true;
        let loader = DataLoader::new(train, lc)?;
        let opt = Adam::new(model.store().params(), NUM_GROUPS, 1e-3, cfg.adam)?;
        std::fs::create_dir_all(&cfg.out_dir).map_err(|e| Error::io(&cfg.out_dir, e))?;
        Ok(Self {
            cfg,
            device,
            model,
            opt,
            loader,
            valid,
            sink,
            control,
            pos: Position::default(),
            step_lrs: None,
            history: Vec::new(),
            epoch_loss_sum: 0.0,
            epoch_batches: 0,
            batch_log: Vec::new(),
        })
    }

    /// Reopens a run from its folder's checkpoint.
    pub fn resume(
        run_dir: &Path,
        device: DeviceChoice,
        sink: Arc<dyn EventSink>,
        control: Arc<Control>,
    ) -> Result<Self> {
        let path = run_dir.join(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let (meta, all) = parse_checkpoint(&bytes, &path)?;
        for p in crate::files::remove_stale_temps(run_dir) {
            sink.send(TrainEvent::Log(format!(
                "removed {} (a write cut short by a crash)",
                p.display()
            )));
        }
        let device = device.open()?;
        let mut cfg = meta.config.clone();
        cfg.out_dir = run_dir.to_path_buf();
        let model = Classifier::new(cfg.backbone, CLASS_NAMES.len(), cfg.seed, &device)?;
        let model_t: BTreeMap<String, Tensor> = all
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("model.").map(|n| (n.to_string(), v.clone())))
            .collect();
        crate::model::weights::import_into(model.store(), "", &model_t, &path)?;
        model.set_train_forwards(meta.train_forwards);
        let mut t = Self::assemble(cfg, device, model, sink, control)?;
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
        t.sink.send(TrainEvent::Log(format!(
            "resumed {} at stage {}, step {}, epoch {}, batch {}",
            path.display(),
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

    fn set_freeze(&mut self, trainable: Trainable) -> Result<()> {
        for g in 0..NUM_GROUPS {
            let mut h = self.opt.groups()[g];
            h.frozen = trainable == Trainable::Head && g + 1 < NUM_GROUPS;
            self.opt.set_group(g, h)?;
        }
        Ok(())
    }

    /// One forward/backward/update on a batch with per-group rates; returns the loss.
    fn train_batch(&mut self, b: HostBatch, lrs: &[f64], beta1: f64) -> Result<f64> {
        for (g, &lr) in lrs.iter().enumerate() {
            let frozen = self.opt.groups()[g].frozen;
            self.opt.set_group(g, GroupHyper { lr, beta1, frozen })?;
        }
        let (x, y) = b.to_tensors(&self.device)?;
        let logits = self.model.forward_t(&x, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let lv = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        if !lv.is_finite() {
            return Ok(lv);
        }
        let grads = loss.backward()?;
        self.opt.step(&grads)?;
        Ok(lv)
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

    /// The LR range test for a step training `trainable`, on the current stage size.
    /// Weights, BatchNorm statistics, optimizer state and the dropout counter are restored.
    pub fn lr_find(&mut self, trainable: Trainable) -> Result<LrFinderResult> {
        let model_snap = self.snapshot_model()?;
        let opt_snap = self.opt.snapshot();
        let forwards = self.model.train_forwards();
        let result = self.lr_sweep(trainable);
        self.restore_model(&model_snap)?;
        self.opt.restore(&opt_snap);
        self.model.set_train_forwards(forwards);
        let result = result?;
        self.sink.send(TrainEvent::LrFinderDone(result.clone()));
        Ok(result)
    }

    fn lr_sweep(&mut self, trainable: Trainable) -> Result<LrFinderResult> {
        self.set_freeze(trainable)?;
        let fc = self.cfg.lr_finder;
        let mut points = Vec::with_capacity(fc.num_iter);
        let mut smoother = Smoother::default();
        let mut best = f64::INFINITY;
        let mut stopped_early = false;
        let mut t = 0;
        // Epoch numbers far from the training run's, so the sweep sees its own draws.
        let mut epoch = u64::MAX / 2;
        'outer: while t < fc.num_iter {
            for b in self.loader.epoch(epoch) {
                if t >= fc.num_iter || self.control.is_stopped() {
                    break 'outer;
                }
                let lr = fc.lr_at(t);
                let loss = self.train_batch(b?, &[lr; NUM_GROUPS], 0.9)?;
                let smoothed = smoother.add(loss);
                let p = LrPoint {
                    iter: t,
                    lr,
                    loss,
                    smoothed,
                };
                points.push(p);
                self.sink.send(TrainEvent::LrFinderPoint(p));
                t += 1;
                if !smoothed.is_nan() && smoothed < best {
                    best = smoothed;
                }
                if fc.stop_div && (smoothed.is_nan() || smoothed > 4.0 * best) {
                    stopped_early = true;
                    break 'outer;
                }
            }
            epoch += 1;
        }
        Ok(LrFinderResult {
            suggestions: suggest(&points),
            points,
            stopped_early,
        })
    }

    /// Runs (the rest of) the plan.
    pub fn run(&mut self) -> Result<Outcome> {
        self.sink.send(TrainEvent::Started {
            total_iters: self.total_iters(),
            done_iters: self.pos.global_iter,
            device: describe(&self.device),
            run_dir: self.cfg.out_dir.clone(),
        });
        self.cfg.plan.save(&self.cfg.out_dir.join("plan.toml"))?;
        let plan = self.cfg.plan.clone();
        while self.pos.stage < plan.stages.len() {
            let stage = &plan.stages[self.pos.stage];
            self.loader.set_size(stage.size_px);
            while self.pos.step < stage.steps.len() {
                let step = stage.steps[self.pos.step];
                self.set_freeze(step.train)?;
                let lrs = match self.step_lrs.clone() {
                    Some(l) => l,
                    None => {
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
                        step.lr.group_lrs(NUM_GROUPS, suggestion)?
                    }
                };
                self.step_lrs = Some(lrs.clone());
                if self.pos.epoch == 0 && self.pos.batch == 0 {
                    self.sink.send(TrainEvent::StepStarted {
                        stage: self.pos.stage,
                        step: self.pos.step,
                        size_px: stage.size_px,
                        trainable: step.train,
                        lrs: lrs.clone(),
                        epochs: step.epochs,
                    });
                }
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

    /// One epoch from `pos.batch`; Some(outcome) when stopped.
    fn run_epoch(
        &mut self,
        cycle: &OneCycle,
        lrs: &[f64],
        size_px: u32,
    ) -> Result<Option<Outcome>> {
        let t0 = Instant::now();
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
            let loss = self.train_batch(b, &group_lrs, beta1)?;
            let secs = tb.elapsed().as_secs_f64();
            if !loss.is_finite() {
                self.restore_model(&last_good)?;
                self.opt.restore(&last_opt);
                self.model.set_train_forwards(last_forwards);
                let msg = format!(
                    "loss became {loss} at stage {}, step {}, epoch {}, batch {} (learning rate {:.3e}): weights restored to the start of this epoch; lower the learning rate and resume",
                    self.pos.stage + 1, self.pos.step + 1, self.pos.epoch + 1, self.pos.batch + 1, group_lrs.last().copied().unwrap_or(0.0)
                );
                return Err(Error::invalid("training", msg));
            }
            train_secs += secs;
            images += n;
            self.epoch_loss_sum += loss;
            self.epoch_batches += 1;
            self.batch_log.push((
                self.pos.global_iter,
                loss,
                group_lrs.last().copied().unwrap_or(0.0),
            ));
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
                while self.control.is_paused() && !self.control.is_stopped() {
                    std::thread::sleep(std::time::Duration::from_millis(30));
                }
                self.sink.send(TrainEvent::Resumed);
            }
            if self.control.batch_done() && self.pos.batch < bpe {
                let path = self.save_checkpoint()?;
                self.sink.send(TrainEvent::Stopped(path));
                return Ok(Some(Outcome::Stopped));
            }
        }
        // Validation at this stage's size.
        let cases = predict_cases(
            &self.model,
            &self.valid,
            size_px,
            self.cfg.batch_size,
            self.cfg.loader_threads,
            |_, _| {},
        )?;
        let report = EvalReport::from_cases(
            CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
            cases,
            0,
            0,
        );
        let m = &report.metrics;
        let em = EpochMetrics {
            stage: self.pos.stage,
            step: self.pos.step,
            epoch_in_step: self.pos.epoch,
            global_epoch: self.pos.global_epoch,
            global_iter: self.pos.global_iter,
            size_px,
            train_loss: self.epoch_loss_sum / self.epoch_batches.max(1) as f64,
            valid_loss: report.loss,
            accuracy: m.accuracy.value,
            macro_f1: m.macro_f1.value,
            recall: m.per_class.iter().map(|c| c.recall.value).collect(),
            ppv: m.per_class.iter().map(|c| c.ppv.value).collect(),
            f1: m.per_class.iter().map(|c| c.f1.value).collect(),
            confusion: m.confusion.m.clone(),
            secs: t0.elapsed().as_secs_f64(),
            img_per_s: images as f64 / train_secs.max(1e-9),
        };
        self.history.push(em.clone());
        self.sink.send(TrainEvent::Epoch(em));
        self.pos.epoch += 1;
        self.pos.batch = 0;
        self.pos.global_epoch += 1;
        self.epoch_loss_sum = 0.0;
        self.epoch_batches = 0;
        let path = self.save_checkpoint()?;
        self.sink.send(TrainEvent::Checkpoint(path.clone()));
        if self.control.is_stopped() {
            self.sink.send(TrainEvent::Stopped(path));
            return Ok(Some(Outcome::Stopped));
        }
        Ok(None)
    }

    /// Writes the checkpoint atomically and returns its path.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let path = self.cfg.out_dir.join(CHECKPOINT_FILE);
        let st = self.opt.state();
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (n, t) in self.model.store().named_tensors() {
            tensors.push((format!("model.{n}"), t.to_device(&Device::Cpu)?));
        }
        for (n, t) in st.tensors {
            tensors.push((format!("optim.{n}"), t.to_device(&Device::Cpu)?));
        }
        let meta = CheckpointMeta {
            format: CHECKPOINT_FORMAT.into(),
            version: 1,
            config: self.cfg.clone(),
            position: self.pos,
            step_lrs: self.step_lrs.clone(),
            train_forwards: self.model.train_forwards(),
            optim_steps: st.steps.into_iter().collect(),
            history: self.history.clone(),
            epoch_loss_sum: self.epoch_loss_sum,
            epoch_batches: self.epoch_batches,
            build: BuildInfo::current(),
        };
        let json = serde_json::to_string(&meta)
            .map_err(|e| Error::invalid("checkpoint", e.to_string()))?;
        let info = HashMap::from([("checkpoint".to_string(), json)]);
        let bytes =
            safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(info))
                .map_err(|e| Error::weights(&path, format!("cannot serialise: {e}")))?;
        write_atomic(&path, &bytes)?;
        let hist = serde_json::to_string_pretty(&self.history)
            .map_err(|e| Error::invalid("history", e.to_string()))?;
        write_atomic(&self.cfg.out_dir.join("history.json"), hist.as_bytes())?;
        self.write_batch_log()?;
        Ok(path)
    }

    /// Appends this session's batch losses to `losses.csv` (kept across resumes: rows of
    /// iterations not yet in the file are added).
    fn write_batch_log(&self) -> Result<()> {
        let path = self.cfg.out_dir.join("losses.csv");
        let mut text =
            std::fs::read_to_string(&path).unwrap_or_else(|_| "iteration,loss,lr\n".into());
        let last_written: Option<usize> = text
            .lines()
            .last()
            .and_then(|l| l.split(',').next())
            .and_then(|v| v.parse().ok());
        for &(it, loss, lr) in &self.batch_log {
            if last_written.is_none_or(|w| it > w) {
                text.push_str(&format!("{it},{loss},{lr:e}\n"));
            }
        }
        write_atomic(&path, text.as_bytes())
    }

    fn finish(&mut self) -> Result<Outcome> {
        let size = self
            .cfg
            .plan
            .stages
            .last()
            .map(|s| s.size_px)
            .unwrap_or(224);
        let mut meta = ModelMeta::new(self.cfg.backbone, size);
        meta.training = Some(serde_json::json!({
            "plan": self.cfg.plan,
            "epochs": self.history.len(),
            "seed": self.cfg.seed,
            "batch_size": self.cfg.batch_size,
            "augment": self.cfg.augment,
            "weights": self.cfg.weights,
            "data": self.cfg.data,
            "final_epoch": self.history.last(),
        }));
        let model_path = self.cfg.out_dir.join(MODEL_FILE);
        // The last epoch's checkpoint already holds these weights; resuming from it
        // trains nothing and finishes again.
        save_model(&model_path, &self.model, &meta)?;
        let cases = predict_cases(
            &self.model,
            &self.valid,
            size,
            self.cfg.batch_size,
            self.cfg.loader_threads,
            |_, _| {},
        )?;
        let mut report = EvalReport::from_cases(
            CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
            cases,
            self.cfg.bootstrap,
            self.cfg.seed,
        );
        report
            .info
            .insert("model".into(), model_path.display().to_string());
        report
            .info
            .insert("data".into(), self.cfg.data.display().to_string());
        report.info.insert("split".into(), "test".into());
        report.info.insert("size_px".into(), size.to_string());
        let rp = report.write(&self.cfg.out_dir, "report")?;
        self.sink.send(TrainEvent::Finished {
            model: model_path.clone(),
            report: Some(rp),
        });
        Ok(Outcome::Finished { model: model_path })
    }
}

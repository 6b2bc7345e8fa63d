//! `covid-resnet train` and `lr-find`.
use super::args::{CacheArgs, DataSetArgs};
use super::progress::CliSink;
use crate::data::augment::AugmentConfig;
use crate::data::sampler::Sampling;
use crate::device::DeviceChoice;
use crate::model::Backbone;
use crate::train::config::{SuggestionKind, TrainConfig};
use crate::train::events::{Control, EventSink};
use crate::train::loss::ClassWeights;
use crate::train::resume::ResumeOptions;
use crate::train::schedule::{LrSpec, Plan, Stage, Step, Trainable};
use crate::train::trainer::{Outcome, Trainer};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Options shared by `train` and `lr-find`. With `--resume`, a value given must agree with
/// the run's (a resumed run keeps its settings); the defaults apply to new runs.
#[derive(Debug, clap::Args)]
pub struct CommonTrain {
    /// Dataset folder (default: $COVID_RESNET_DATA). With --resume: where the run's data set
    /// is now, if it moved.
    #[arg(long, env = "COVID_RESNET_DATA")]
    pub data: Option<PathBuf>,
    /// resnet18, resnet34 or resnet50 [default: resnet50].
    #[arg(long)]
    pub backbone: Option<Backbone>,
    /// Pretrained ImageNet body: a torchvision/timm .pth or .safetensors file, or the name
    /// of weights fetched with `weights fetch` (resnet18, resnet34, resnet50, resnet50-v2).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of initialisation, order, augmentation and dropout [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seed of a drawn validation split [default: --seed]. Runs meant to be compared or
    /// averaged share one, so that each is judged on images none of them trained on.
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// Leave the test split alone: the final report and the model's summary are of the
    /// validation split (candidates still to be chosen; evaluate the chosen one once with
    /// `eval`).
    #[arg(long)]
    pub skip_test: bool,
    /// Images per batch [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Loader threads [default: 2].
    #[arg(long)]
    pub loader_threads: Option<usize>,
    /// Train without augmentation.
    #[arg(long)]
    pub no_augment: bool,
    /// Which flips augmentation draws [default: vertical, as in the paper].
    #[arg(long, value_enum)]
    pub flip: Option<crate::data::augment::Flip>,
    /// Class-balanced sampling (off in the paper; a plan file's `sampling` key also sets it).
    #[arg(long)]
    pub balanced: bool,
    /// Weights of the loss per class [default: the plan file's `class_weights`, else none].
    #[arg(long, value_enum)]
    pub class_weights: Option<ClassWeights>,
    /// Use a seeded subset of this many training images.
    #[arg(long)]
    pub max_train_images: Option<usize>,
    /// Use a seeded subset of this many validation images per epoch.
    #[arg(long)]
    pub max_valid_images: Option<usize>,
    /// Precision of the convolutions: f32, or bf16 mixed precision (f32 weights, optimizer
    /// and sums; 1.04-1.55x faster training measured on a CPU with AVX512_BF16, see
    /// assets/docs/speed.md for its accuracy) [default: f32].
    #[arg(long, value_enum)]
    pub precision: Option<crate::model::ops::precision::Precision>,
    /// How the data set is read.
    #[command(flatten)]
    pub dataset: DataSetArgs,
    /// Where resized images are kept.
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl CommonTrain {
    fn config(&self, out: PathBuf, plan: Plan) -> anyhow::Result<TrainConfig> {
        let data = self
            .data
            .clone()
            .context("--data DIR (or COVID_RESNET_DATA) is required")?;
        let mut c = TrainConfig::new(data, out);
        c.backbone = self.backbone.unwrap_or(Backbone::Resnet50);
        c.weights = self
            .weights
            .as_deref()
            .map(crate::model::io::zoo::resolve_weights)
            .transpose()?;
        c.sampling = if self.balanced {
            Sampling::Balanced
        } else {
            plan.sampling.unwrap_or(Sampling::Shuffle)
        };
        c.class_weights = self
            .class_weights
            .or(plan.class_weights)
            .unwrap_or_default();
        c.plan = plan;
        c.seed = self.seed.unwrap_or(c.seed);
        c.split_seed = self.split_seed;
        c.skip_test = self.skip_test;
        c.batch_size = self.batch_size.unwrap_or(c.batch_size);
        c.loader_threads = self.loader_threads.unwrap_or(c.loader_threads);
        if let Some(f) = self.flip {
            c.augment.flip = f;
        }
        if self.no_augment {
            c.augment = AugmentConfig::off();
        }
        c.max_train_images = self.max_train_images;
        c.max_valid_images = self.max_valid_images;
        c.precision = self.precision.unwrap_or_default();
        let d = &self.dataset;
        c.allow_outside_links = d.allow_outside_links;
        c.classes = d.classes.clone();
        c.valid = d.valid_choice()?;
        c.split_pneumonia = d.split_pneumonia.then_some(true);
        c.csv_file = d.data_csv.clone();
        c.uncertain = d.uncertain.clone();
        c.views = d.views.clone();
        c.cache = self.cache.settings();
        Ok(c)
    }

    /// What was given, for a resume to check against the run.
    fn resume_options(&self, suggestion: Option<SuggestionKind>, force: bool) -> ResumeOptions {
        ResumeOptions {
            data: self.data.clone(),
            backbone: self.backbone,
            weights: self.weights.as_deref().map(|w| {
                crate::model::io::zoo::resolve_weights(w).unwrap_or_else(|_| w.to_path_buf())
            }),
            batch_size: self.batch_size,
            seed: self.seed,
            suggestion,
            augment: self.no_augment.then_some(false),
            flip: self.flip,
            balanced: self.balanced.then_some(true),
            max_train_images: self.max_train_images,
            max_valid_images: self.max_valid_images,
            classes: self.dataset.classes.clone(),
            valid: self.dataset.valid_choice().ok().flatten(),
            class_weights: self.class_weights,
            precision: self.precision,
            force,
        }
    }
}

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonTrain,
    /// paper, quick, or a plan TOML file.
    #[arg(long, default_value = "paper")]
    pub plan: String,
    /// Run folder (default: runs/<date-time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder from its checkpoint.
    #[arg(long, conflicts_with_all = ["out", "plan"])]
    pub resume: Option<PathBuf>,
    /// LR-finder suggestion used by `auto` steps [default: valley].
    #[arg(long, value_enum)]
    pub suggestion: Option<SuggestionKind>,
    /// Train this many networks as one ensemble (2 to 16): member i in OUT/member-i with
    /// seed --seed + i - 1, all on one validation split; then OUT/ensemble.safetensors,
    /// evaluated on the test split once. The same command again continues member by member.
    #[arg(long, conflicts_with = "resume")]
    pub members: Option<usize>,
    /// Distil from this model (one network or an ensemble with the run's classes): the loss
    /// becomes (1 - w) x cross-entropy with the labels + w x T^2 x cross-entropy with the
    /// teacher's probabilities at temperature T (Hinton et al. 2015), the teacher's
    /// probabilities computed once per training image when the run starts.
    #[arg(long, conflicts_with = "resume")]
    pub teacher: Option<PathBuf>,
    /// The weight w of the teacher's term, 0 to 1 [default: 0.5].
    #[arg(long, requires = "teacher")]
    pub distill_weight: Option<f64>,
    /// The temperature T of the teacher's and the student's probabilities [default: 2].
    #[arg(long, requires = "teacher")]
    pub distill_temperature: Option<f64>,
    /// Overwrite a finished or stopped run in --out; with --resume, go on although the data
    /// set changed or plan.toml was edited.
    #[arg(long)]
    pub force: bool,
}

fn stop_on_ctrl_c(control: &Arc<Control>) {
    let c = control.clone();
    // A second handler cannot be installed in one process; tests call run() directly.
    let _ = ctrlc::set_handler(move || {
        eprintln!("\nstopping after this batch (checkpoint follows)...");
        c.stop();
    });
}

fn default_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("run-{secs}"))
}

/// Runs `train`.
pub fn train(a: &TrainArgs, device: DeviceChoice) -> anyhow::Result<ExitCode> {
    let sink: Arc<dyn EventSink> = Arc::new(CliSink::new());
    let control = Arc::new(Control::default());
    stop_on_ctrl_c(&control);
    let new_config = || -> anyhow::Result<crate::train::config::TrainConfig> {
        let plan = Plan::resolve(&a.plan)?;
        let mut cfg = a
            .common
            .config(a.out.clone().unwrap_or_else(default_run_dir), plan)?;
        cfg.suggestion = a.suggestion.unwrap_or_default();
        cfg.overwrite = a.force;
        cfg.distill = a
            .teacher
            .as_ref()
            .map(|t| {
                use crate::train::distill::{DistillConfig, DEFAULT_TEMPERATURE, DEFAULT_WEIGHT};
                DistillConfig::new(
                    t.clone(),
                    a.distill_weight.unwrap_or(DEFAULT_WEIGHT),
                    a.distill_temperature.unwrap_or(DEFAULT_TEMPERATURE),
                )
            })
            .transpose()?;
        Ok(cfg)
    };
    // A run that cannot start is an error here; one that fails on the way is said by the sink.
    let outcome = match (&a.resume, a.members) {
        (Some(dir), _) => {
            let opts = a.common.resume_options(a.suggestion, a.force);
            Trainer::resume_with(dir, &opts, device, sink.clone(), control)?.run()
        }
        (None, Some(n)) => {
            crate::train::members::train_members(&new_config()?, n, device, sink.clone(), control)
        }
        (None, None) => Trainer::new(new_config()?, device, sink.clone(), control)?.run(),
    };
    match outcome {
        Ok(Outcome::Finished { .. }) | Ok(Outcome::Stopped) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            sink.send(crate::train::events::TrainEvent::Failed(e.to_string()));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Arguments of `lr-find`.
#[derive(Debug, clap::Args)]
pub struct LrFindArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: CommonTrain,
    /// Input size.
    #[arg(long, default_value_t = 128)]
    pub size: u32,
    /// What the sweep trains.
    #[arg(long, value_enum, default_value_t = Trainable::All)]
    pub train: Trainable,
    /// Iterations.
    #[arg(long, default_value_t = 100)]
    pub iters: usize,
    /// Where to write the curve (CSV).
    #[arg(long, default_value = "lr_find.csv")]
    pub csv: PathBuf,
}

/// Runs `lr-find`.
pub fn lr_find(a: &LrFindArgs, device: DeviceChoice) -> anyhow::Result<ExitCode> {
    let trainable = a.train;
    let plan = Plan {
        name: "lr-find".into(),
        sampling: None,
        class_weights: None,
        stages: vec![Stage {
            size_px: a.size,
            steps: vec![Step {
                train: trainable,
                lr: LrSpec::Auto,
                epochs: 1,
            }],
        }],
    };
    let mut cfg = a.common.config(PathBuf::new(), plan)?;
    cfg.lr_finder.num_iter = a.iters;
    let sink: Arc<dyn EventSink> = Arc::new(CliSink::new());
    let control = Arc::new(Control::default());
    stop_on_ctrl_c(&control);
    let r = crate::train::worker::lr_find(cfg, trainable, device, sink, control)?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["iter", "lr", "loss", "smoothed_loss"])?;
    for p in &r.points {
        csv.write_record([
            p.iter.to_string(),
            format!("{:e}", p.lr),
            p.loss.to_string(),
            p.smoothed.to_string(),
        ])?;
    }
    crate::files::write_atomic(&a.csv, &csv.into_inner()?)?;
    let s = r.suggestions;
    for (name, v) in [
        ("valley", s.valley),
        ("steep", s.steep),
        ("minimum/10", s.minimum),
    ] {
        match v {
            Some(v) => println!("{name:<11} {}", crate::fmt::lr(v.lr)),
            None => println!("{name:<11} - (too few points)"),
        }
    }
    println!("curve: {}", crate::files::shown(&a.csv));
    Ok(ExitCode::SUCCESS)
}

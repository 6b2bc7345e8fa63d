//! `covid-resnet model info | f16 | ensemble | calibrate | threshold`: what a model file
//! says, a half-size copy, several models as one, a temperature fitted on held-out images,
//! an operating point.
use super::args::DataSetArgs;
use crate::data::split::SplitKind;
use crate::eval::calibration::{ece, fit_temperature, reliability, scaled, top_label};
use crate::eval::{evaluate, EvalOptions};
use crate::files::shown;
use crate::infer::decision::OperatingPoint;
use crate::infer::Predictor;
use crate::model::io::ensemble::write_ensemble;
use crate::model::io::model_file::{
    load_networks, read_meta, rewrite_meta, rewrite_tensors_as, SavedOperatingPoint, Temperature,
};
use crate::model::io::shipped::describe;
use candle_core::{DType, Device};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// `model` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// The model's body, input, classes, training and test figures (default: the shipped one).
    Info {
        /// A model file.
        file: Option<PathBuf>,
    },
    /// Writes a copy with 16-bit tensors (half the size; loading converts them back).
    F16 {
        /// The model file to copy.
        input: PathBuf,
        /// Where to write the copy.
        output: PathBuf,
    },
    /// Joins model files into one ensemble file: its probabilities are the mean of the
    /// members' (same classes and input handling; backbones may differ).
    Ensemble {
        /// The members' model files (2 to 16).
        #[arg(required = true, num_args = 2..)]
        members: Vec<PathBuf>,
        /// Where to write the ensemble.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fits temperature scaling on held-out images (never the test split) and writes a copy
    /// of the model that applies it: its probabilities become softmax(logits / T).
    Calibrate(CalibrateArgs),
    /// Writes a copy of the model whose predictions follow an operating point: CLASS when
    /// its probability ≥ T, else the most probable other class (`predict`, the Viewer).
    Threshold {
        /// The model file (default: the shipped one).
        #[arg(long)]
        model: Option<PathBuf>,
        /// CLASS=T, e.g. COVID-19=0.3; `none` removes the operating point.
        point: String,
        /// Where to write the copy (may be the model file itself).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Arguments of `model calibrate`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// The model file (default: the shipped one).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Dataset folder (default: $COVID_RESNET_DATA).
    #[arg(long, env = "COVID_RESNET_DATA")]
    pub data: PathBuf,
    /// The held-out split to fit on (the test split is refused: it is where the model is
    /// measured).
    #[arg(long, value_enum, default_value_t = SplitKind::Valid)]
    pub split: SplitKind,
    /// Seed of a drawn validation split (default: the model's training seed, so the draw is
    /// the one its run held out).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to write the calibrated copy (may be the model file itself).
    #[arg(long)]
    pub out: PathBuf,
    /// How the data set is read.
    #[command(flatten)]
    pub dataset: DataSetArgs,
}

fn calibrate(a: &CalibrateArgs) -> anyhow::Result<ExitCode> {
    let model = super::model_or_shipped(a.model.as_deref())?;
    let (nets, mut meta) = load_networks(&model, &Device::Cpu)?;
    // Fitted on the raw probabilities, whatever the file applied before.
    meta.temperature = None;
    let seed = super::args::held_out_seed(a.seed, &meta);
    let predictor = Predictor::from_networks(nets, meta)?;
    let samples =
        a.dataset
            .held_out_samples(&a.data, seed, &predictor.meta().class_names, a.split)?;
    let opts = EvalOptions {
        bootstrap: 0,
        ..EvalOptions::default()
    };
    let r = evaluate(&predictor, &samples, &opts, |_, _| {})?;
    let actual: Vec<usize> = r.cases.iter().map(|c| c.actual).collect();
    let probs: Vec<&[f32]> = r.cases.iter().map(|c| &c.probs[..]).collect();
    let t = fit_temperature(&actual, &probs).expect("cases are not empty");
    let after: Vec<Vec<f32>> = probs.iter().map(|p| scaled(p, t)).collect();
    let after_refs: Vec<&[f32]> = after.iter().map(|p| &p[..]).collect();
    let e = |p: &[&[f32]]| {
        let (c, o) = top_label(&actual, p);
        ece(&reliability(&c, &o))
    };
    let fitted_on = format!(
        "{} split of {} ({} images, seed {seed})",
        a.split.name(),
        shown(&a.data),
        actual.len()
    );
    println!(
        "temperature {t:.4} fitted on the {fitted_on}; ECE there {} -> {}",
        crate::fmt::pct(e(&probs), 2),
        crate::fmt::pct(e(&after_refs), 2)
    );
    rewrite_meta(&model, &a.out, |m| {
        m.temperature = Some(Temperature {
            value: t,
            fitted_on,
        })
    })?;
    println!("written: {}", shown(&a.out));
    Ok(ExitCode::SUCCESS)
}

fn threshold(
    model: Option<&std::path::Path>,
    point: &str,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let model = super::model_or_shipped(model)?;
    let meta = read_meta(&model)?;
    let saved = if point.eq_ignore_ascii_case("none") {
        None
    } else {
        let op =
            OperatingPoint::parse(point, &meta.class_names).map_err(|e| anyhow::anyhow!("{e}"))?;
        Some(SavedOperatingPoint {
            class: meta.class_names[op.class].clone(),
            threshold: op.threshold,
        })
    };
    rewrite_meta(&model, out, |m| m.operating_point = saved.clone())?;
    match &saved {
        Some(s) => println!(
            "{}: predicts {} when p ≥ {}",
            shown(out),
            s.class,
            s.threshold
        ),
        None => println!("{}: predicts at argmax", shown(out)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `model`.
pub fn run(a: &ModelArgs) -> anyhow::Result<ExitCode> {
    match &a.command {
        ModelCommand::Info { file } => {
            let p = super::model_or_shipped(file.as_deref())?;
            let meta = read_meta(&p)?;
            println!("{}", shown(&p));
            println!("{}", describe(&meta));
            for (i, m) in meta.members.iter().enumerate() {
                println!(
                    "member {}: {} from {} (sha256 {})",
                    i + 1,
                    m.backbone.name(),
                    m.source,
                    m.sha256
                );
            }
            if let Some(t) = &meta.training {
                println!("{}", serde_json::to_string_pretty(t)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Ensemble { members, out } => {
            let inputs: Vec<&std::path::Path> = members.iter().map(PathBuf::as_path).collect();
            let meta = write_ensemble(&inputs, out)?;
            println!(
                "{}: an ensemble of {} ({}); its probabilities are the mean of theirs",
                shown(out),
                meta.members.len(),
                meta.members
                    .iter()
                    .map(|m| format!("{} from {}", m.backbone.name(), m.source))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            eprintln!(
                "the members' temperatures and operating points are not kept: fit the \
                 ensemble's with `model calibrate` and `model threshold` on held-out images"
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::F16 { input, output } => {
            rewrite_tensors_as(input, output, DType::F16)?;
            let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "{} ({:.1} MB) -> {} ({:.1} MB)",
                shown(input),
                size(input) as f64 / 1e6,
                shown(output),
                size(output) as f64 / 1e6
            );
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Calibrate(c) => calibrate(c),
        ModelCommand::Threshold { model, point, out } => threshold(model.as_deref(), point, out),
    }
}

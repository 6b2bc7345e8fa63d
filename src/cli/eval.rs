//! `covid-resnet eval`: a model on a split, with its metrics, an operating point and the
//! charts; `--compare A B`: two models on the same images.
use super::args::{CacheArgs, DataSetArgs};
use crate::data::split::SplitKind;
use crate::device::DeviceChoice;
use crate::eval::compare::compare;
use crate::eval::operating::{parse_class_value, OperatingPoint};
use crate::eval::report::EvalReport;
use crate::eval::{EvalOptions, EvalSet};
use crate::files::shown;
use crate::infer::Predictor;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A model file written by covid-resnet; default: the shipped model.
    #[arg(long, conflicts_with = "compare")]
    pub model: Option<PathBuf>,
    /// Dataset folder (default: $COVID_RESNET_DATA).
    #[arg(long, env = "COVID_RESNET_DATA")]
    pub data: PathBuf,
    /// The split to evaluate.
    #[arg(long, value_enum, default_value_t = SplitKind::Test)]
    pub split: SplitKind,
    /// Folder for eval-<split>.json/.csv/.md and the PNGs (default: beside the model).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Bootstrap resamples for the confidence intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of a drawn validation split [default: the model's, as its file records it, so
    /// that the validation images are those its run held out; 42 for a file without one].
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// An operating point: predict CLASS when its probability ≥ T (e.g. COVID-19=0.3);
    /// default: the model file's, else argmax.
    #[arg(long, value_name = "CLASS=T", conflicts_with = "target_sensitivity")]
    pub threshold: Option<String>,
    /// The operating point whose sensitivity for CLASS reaches S on these images (e.g.
    /// COVID-19=0.95): the highest such threshold.
    #[arg(long, value_name = "CLASS=S")]
    pub target_sensitivity: Option<String>,
    /// Compare two model files on the same images: paired bootstrap of the differences in
    /// accuracy and macro AUC, McNemar's test.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Option<Vec<PathBuf>>,
    /// Precision of the convolutions: f32, or bf16 mixed precision.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: crate::model::ops::precision::Precision,
    /// How the data set is read.
    #[command(flatten)]
    pub dataset: DataSetArgs,
    /// Where resized images are kept.
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// Whether the run that made the model validated on the test split of the data set at
/// `data` (its training summary says so and names this folder).
fn validated_here(predictor: &Predictor, data: &Path) -> bool {
    let Some(t) = &predictor.meta().training else {
        return false;
    };
    let same = |p: &Path| std::fs::canonicalize(p).ok();
    t["test"]["validated_on_test"] == true
        && t["data"]
            .as_str()
            .is_some_and(|d| same(Path::new(d)).is_some() && same(Path::new(d)) == same(data))
}

/// The report of the model at `model` on the chosen split (predictions at argmax).
fn report_of(
    a: &EvalArgs,
    model: &Path,
    device: &candle_core::Device,
) -> anyhow::Result<(Predictor, EvalReport)> {
    let predictor = Predictor::load(model, device)
        .with_context(|| format!("cannot load model {}", shown(model)))?
        .in_precision(a.precision);
    let split_seed = super::args::held_out_seed(a.split_seed, predictor.meta());
    let samples =
        a.dataset
            .split_samples(&a.data, split_seed, &predictor.meta().class_names, a.split)?;
    let bar = indicatif::ProgressBar::new(samples.len() as u64);
    let opts = EvalOptions {
        batch_size: a.batch_size,
        bootstrap: a.bootstrap,
        seed: a.seed,
    };
    let set = EvalSet::with_cache(samples, a.cache.settings().open());
    let mut report = set.evaluate(&predictor, &opts, |d, _| bar.set_position(d as u64))?;
    bar.finish_and_clear();
    report.record_source(model, predictor.meta(), &a.data, a.split.name());
    if a.split == SplitKind::Valid {
        report
            .info
            .insert("validation split seed".into(), split_seed.to_string());
    }
    report.validated_on_test = a.split == SplitKind::Test && validated_here(&predictor, &a.data);
    Ok((predictor, report))
}

/// The operating point asked for: `--threshold`, `--target-sensitivity` (found on these
/// images), else the model file's.
fn operating_point(
    a: &EvalArgs,
    predictor: &Predictor,
    report: &EvalReport,
) -> anyhow::Result<Option<OperatingPoint>> {
    let classes = &report.classes;
    if let Some(t) = &a.threshold {
        return OperatingPoint::parse(t, classes)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--threshold {e}"));
    }
    if let Some(t) = &a.target_sensitivity {
        let (class, target) = parse_class_value(t, classes)
            .map_err(|e| anyhow::anyhow!("--target-sensitivity {e}"))?;
        let threshold = report
            .threshold_for_sensitivity(class, target)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--target-sensitivity {t}: the {} split has no {} images",
                    a.split.name(),
                    classes[class]
                )
            })?;
        eprintln!(
            "sensitivity {:.1} % for {} is reached at p ≥ {} on these images \
             (chosen on the images it is measured on: an optimistic figure)",
            100.0 * target,
            classes[class],
            crate::fmt::number(threshold)
        );
        return Ok(Some(OperatingPoint { class, threshold }));
    }
    Ok(predictor.operating_point())
}

/// Runs `eval` (in `--precision`).
pub fn eval(a: &EvalArgs, device: DeviceChoice) -> anyhow::Result<ExitCode> {
    let device = device.open()?;
    if a.batch_size == 0 {
        anyhow::bail!("--batch-size 0: must be at least 1");
    }
    if let Some(pair) = &a.compare {
        return run_compare(a, &pair[0], &pair[1], &device);
    }
    let model = super::model_or_shipped(a.model.as_deref())?;
    if crate::model::io::model_file::read_meta(&model)
        .map(|m| m.findings.is_some())
        .unwrap_or(false)
    {
        return super::eval_findings::run(a, &model, &device);
    }
    let (predictor, mut report) = report_of(a, &model, &device)?;
    if let Some(op) = operating_point(a, &predictor, &report)? {
        report.set_operating_point(Some(op));
    }
    let out = a.out.clone().unwrap_or_else(|| {
        if a.model.is_none() {
            // Not beside the shipped model: into the working folder.
            PathBuf::from(".")
        } else {
            model.parent().map(Path::to_path_buf).unwrap_or_default()
        }
    });
    let paths = report.write_all(&out, &format!("eval-{}", a.split.name()))?;
    print!("{}", report.markdown());
    let names: Vec<String> = paths.iter().map(|p| shown(p).to_string()).collect();
    println!("written: {}", names.join(", "));
    Ok(ExitCode::SUCCESS)
}

fn run_compare(
    a: &EvalArgs,
    ma: &Path,
    mb: &Path,
    device: &candle_core::Device,
) -> anyhow::Result<ExitCode> {
    if a.split == SplitKind::Valid && a.split_seed.is_none() {
        let seed = |m: &Path| -> anyhow::Result<Option<u64>> {
            Ok(crate::model::io::model_file::read_meta(m)?.split_seed())
        };
        let (sa, sb) = (seed(ma)?, seed(mb)?);
        if sa != sb {
            anyhow::bail!(
                "{} and {} held out different validation images (split seeds {} and {}): on \
                 either split one model would be scored on images it trained on; give \
                 --split-seed to compare on one split anyway",
                shown(ma),
                shown(mb),
                sa.map_or("none".into(), |s| s.to_string()),
                sb.map_or("none".into(), |s| s.to_string())
            );
        }
    }
    // Each model predicts as its file says (its own operating point, else argmax).
    let of = |m: &Path| -> anyhow::Result<EvalReport> {
        let (p, mut r) = report_of(a, m, device)?;
        if let Some(op) = p.operating_point() {
            r.set_operating_point(Some(op));
        }
        Ok(r)
    };
    let (ra, rb) = (of(ma)?, of(mb)?);
    let c = compare(
        (&shown(ma).to_string(), &ra),
        (&shown(mb).to_string(), &rb),
        a.bootstrap,
        a.seed,
    )
    .map_err(|e| anyhow::anyhow!("cannot compare: {e}"))?;
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", shown(&out)))?;
    let stem = format!("compare-{}", a.split.name());
    let json = serde_json::to_string_pretty(&c)?;
    let (pj, pm) = (
        out.join(format!("{stem}.json")),
        out.join(format!("{stem}.md")),
    );
    crate::files::write_atomic(&pj, json.as_bytes())?;
    crate::files::write_atomic(&pm, c.markdown().as_bytes())?;
    print!("{}", c.markdown());
    println!("written: {}, {}", shown(&pj), shown(&pm));
    Ok(ExitCode::SUCCESS)
}

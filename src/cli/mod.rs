//! The headless command line: `covid-resnet info | predict | bench ...`.
pub mod args;
pub mod bench;
mod bench_decode;
pub mod data;
pub mod eval;
pub mod eval_findings;
pub mod model;
pub mod predict;
pub mod predict_findings;
pub mod progress;
pub mod train;
pub mod weights;

use crate::device::{describe, DeviceChoice};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "covid-resnet",
    version = crate::build_info::VERSION,
    long_version = crate::build_info::VERSION_LINE,
    about = "Fine-tune ResNet-50 to screen chest radiographs (COVID-ResNet). Research use only, not for diagnosis.",
    after_help = "Without a command, the desktop app opens."
)]
pub struct Cli {
    /// Compute device: auto, cpu, cuda[:N] or metal[:N] [default: auto; for the window, its
    /// saved setting].
    #[arg(long, global = true)]
    pub device: Option<DeviceChoice>,
    /// The command; none opens the desktop app.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Version, compiled-in backends and the device that would be used.
    Info,
    /// Class probabilities for image files.
    Predict(predict::PredictArgs),
    /// Time training steps, inference or the data loader.
    Bench(bench::BenchArgs),
    /// Inspect a dataset folder.
    Data(data::DataArgs),
    /// Train with a staged plan (paper, quick or a TOML file); Ctrl-C stops with a checkpoint.
    Train(Box<train::TrainArgs>),
    /// Learning-rate range test: prints suggestions, writes the curve as CSV.
    LrFind(Box<train::LrFindArgs>),
    /// Evaluate a model on a split: metrics with confidence intervals, misclassified cases.
    Eval(eval::EvalArgs),
    /// Open the desktop app's Viewer with these images (and a model).
    Open(OpenArgs),
    /// ImageNet ResNet weights from torchvision: list, fetch.
    Weights(weights::WeightsArgs),
    /// Model files: what one says, a half-size copy.
    Model(model::ModelArgs),
}

/// Arguments of `open`.
#[derive(Debug, Clone, clap::Args)]
pub struct OpenArgs {
    /// Model file to load in the Viewer (default: the one used last time).
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
    /// Dataset folder for the Viewer's test-set review.
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
    /// A report written by `eval`, by training or by a review export, opened in the review.
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// Images to open (PNG, JPEG, BMP, TIFF, DICOM).
    pub files: Vec<std::path::PathBuf>,
}

/// Runs a parsed command of the command line. No command and `open` open the window, which
/// is main.rs's to decide (the command line does not depend on the app): here they are an
/// error.
pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let device = cli.device.unwrap_or(DeviceChoice::Auto);
    match &cli.command {
        None | Some(Command::Open(_)) => {
            anyhow::bail!("no command-line command: the window opens from main")
        }
        Some(Command::Info) => info(device),
        Some(Command::Predict(a)) => predict::run(a, device),
        Some(Command::Bench(a)) => bench::run(a, device),
        Some(Command::Data(a)) => data::run(a),
        Some(Command::Train(a)) => train::train(a, device),
        Some(Command::LrFind(a)) => train::lr_find(a, device),
        Some(Command::Eval(a)) => eval::eval(a, device),
        Some(Command::Weights(a)) => weights::run(a),
        Some(Command::Model(a)) => model::run(a),
    }
}

/// The model file given, or the shipped one (said on stderr).
pub fn model_or_shipped(given: Option<&std::path::Path>) -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let p = crate::model::io::shipped::model_path().ok_or_else(|| {
        anyhow::anyhow!(
            "no --model given, and the shipped model ({}) was not found beside the program",
            crate::model::io::shipped::MODEL_FILE
        )
    })?;
    let about = crate::model::io::model_file::read_meta(&p)
        .map(|m| crate::model::io::shipped::describe(&m))
        .unwrap_or_default();
    eprintln!(
        "no --model: using the shipped model {} ({about})",
        crate::files::shown(&p)
    );
    Ok(p)
}

fn info(choice: DeviceChoice) -> anyhow::Result<ExitCode> {
    println!("covid-resnet {}", crate::build_info::VERSION_LINE);
    println!("backends compiled in: {}", crate::build_info::BACKENDS);
    match choice.open() {
        Ok(d) => println!("device ({choice}): {}", describe(&d)),
        Err(e) => println!("device ({choice}): unavailable: {e}"),
    }
    let caps = |has: bool| if has { "yes" } else { "no" };
    println!(
        "CPU: {} (AVX512_BF16: {}; AMX tiles: {})",
        crate::model::ops::conv::bf16_choice::cpu_model(),
        caps(crate::model::ops::conv::bf16_native()),
        caps(crate::model::ops::conv::Bf16Kernel::Amx.available()),
    );
    println!(
        "float32 products (CPU): {}",
        if crate::model::ops::conv::f32_direct() {
            "the gemm crate, and stride-1 3x3 convolutions direct on AVX-512 (input gradient, \
             weight gradient of small images, inference forward from 28x28)"
        } else {
            "the gemm crate"
        }
    );
    crate::model::ops::conv::bf16_choice::ensure();
    println!(
        "bf16 products (--precision bf16, CPU): {}",
        crate::model::ops::precision::bf16_kernels()
    );
    let cache = crate::data::cache::CacheSettings::user_default();
    match &cache.dir {
        Some(dir) => {
            let used = crate::data::disk_cache::usage(dir)
                .map(|u| format!("{} entries, {:.1} MB", u.entries, u.bytes as f64 / 1e6))
                .unwrap_or_else(|e| format!("unreadable: {e}"));
            println!(
                "image cache on disk: {} ({used} of a {:.0} MB cap; images past the memory \
                 budget only)",
                crate::files::shown(dir),
                cache.disk_cap() as f64 / 1e6
            );
        }
        None => println!("image cache on disk: none (no cache folder is known)"),
    }
    println!("{}", crate::RESEARCH_NOTICE);
    Ok(ExitCode::SUCCESS)
}

//! `covid-resnet model info FILE | f16 IN OUT`: what a model file says, and a half-size copy.
use crate::files::shown;
use crate::model::checkpoint::{load_model, read_meta, save_model_as};
use crate::model::shipped::describe;
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
}

/// Runs `model`.
pub fn run(a: &ModelArgs) -> anyhow::Result<ExitCode> {
    match &a.command {
        ModelCommand::Info { file } => {
            let p = super::model_or_shipped(file.as_deref())?;
            let meta = read_meta(&p)?;
            println!("{}", shown(&p));
            println!("{}", describe(&meta));
            if let Some(t) = &meta.training {
                println!("{}", serde_json::to_string_pretty(t)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::F16 { input, output } => {
            let (model, meta) = load_model(input, &Device::Cpu)?;
            save_model_as(output, &model, &meta, DType::F16)?;
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
    }
}

//! `covid-resnet data check --data DIR [--json]`
use crate::data::check::{check_dataset, format_report};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `data`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// `data` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Per split and class: images, patients, unreadable or missing files, leakage, sizes.
    Check {
        /// Dataset folder (split files + train/ test/, or class folders); default: $COVID_RESNET_DATA.
        #[arg(long, env = "COVID_RESNET_DATA")]
        data: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `data`; exit code 1 when files are missing or unreadable or patients leak.
pub fn run(a: &DataArgs) -> anyhow::Result<ExitCode> {
    match &a.command {
        DataCommand::Check { data, json } => {
            let r = check_dataset(data)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", format_report(&r));
            }
            Ok(if r.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

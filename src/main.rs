//! Thin entry point: no subcommand opens the app, otherwise the CLI runs.
use clap::Parser;
use covid_resnet::cli::{self, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Cli::parse();
    let result = match &args.command {
        None => covid_resnet::app::run(Default::default()).map(|()| ExitCode::SUCCESS),
        Some(cli::Command::Open(o)) => covid_resnet::app::run(covid_resnet::app::Startup {
            files: o.files.clone(),
            model: o.model.clone(),
            data: o.data.clone(),
        })
        .map(|()| ExitCode::SUCCESS),
        Some(_) => cli::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! Thin entry point: no subcommand opens the app, otherwise the CLI runs.
use clap::Parser;
use covid_resnet::cli::{self, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Cli::parse();
    let result = if args.command.is_none() {
        covid_resnet::app::run().map(|()| ExitCode::SUCCESS)
    } else {
        cli::run(&args)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! Thin entry point: no command, or `open`, opens the window; any other command runs on the
//! command line (as ripgrep's main decides between its modes).
use clap::Parser;
use covid_resnet::app::{self, Startup};
use covid_resnet::cli::{self, Cli, Command};
use std::process::ExitCode;

/// mimalloc, which keeps freed pages for reuse, with zeroed blocks cleared in place
/// (`covid_resnet::allocator`).
#[global_allocator]
static GLOBAL: covid_resnet::allocator::Allocator = covid_resnet::allocator::Allocator;

fn main() -> ExitCode {
    // Before any other thread starts.
    covid_resnet::allocator::keep_freed_pages();
    quiet_on_closed_pipe();
    // The convolution kernel of every model this process builds, read once here.
    match covid_resnet::model::ops::pass::kernel_from_env() {
        Ok(Some(k)) => covid_resnet::model::ops::pass::set_startup_kernel(k),
        Ok(None) => {}
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    // The bf16 products' kernel: named, or measured once per CPU and kept in the cache folder.
    match covid_resnet::model::ops::conv::bf16_choice::named_by_env() {
        Ok(named) => covid_resnet::model::ops::conv::bf16_choice::enable(
            covid_resnet::files::user_folder(covid_resnet::files::UserFolder::Cache)
                .map(|d| d.join("kernels.json")),
            named,
        ),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let parsed = Cli::parse();
    let window = match &parsed.command {
        None => Some(Startup {
            device: parsed.device,
            ..Default::default()
        }),
        Some(Command::Open(o)) => Some(Startup {
            files: o.files.clone(),
            model: o.model.clone(),
            data: o.data.clone(),
            report: o.report.clone(),
            device: parsed.device,
        }),
        Some(_) => None,
    };
    let result = match window {
        Some(startup) => app::run(startup).map(|()| ExitCode::SUCCESS),
        None => cli::run(&parsed),
    };
    match result {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A reader that stops reading (`predict ... | head`) is no error: the output it wanted has
/// gone through. As ripgrep does, end quietly with status 0, where `println!` would panic.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}

/// Whether an error comes from writing to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

//! `covid-resnet weights list | fetch NAME`: torchvision's ImageNet ResNet weights.
use crate::fetch::{fetch, manual_hint, Download};
use crate::files::shown;
use crate::model::io::zoo::{find, names, stored_in, weights_dir, DEFAULT_BASE_URL, ZOO};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

/// Arguments of `weights`.
#[derive(Debug, clap::Args)]
pub struct WeightsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WeightsCommand,
}

/// `weights` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WeightsCommand {
    /// The weights this program can fetch, and which are here.
    List {
        /// Where fetched weights are kept (default: the user's data folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Download ImageNet weights from torchvision's model zoo over HTTPS, resumably, and
    /// check them against their SHA-256; then `train --weights NAME` starts from them.
    Fetch {
        /// resnet18, resnet34, resnet50 (IMAGENET1K_V1) or resnet50-v2 (IMAGENET1K_V2).
        name: String,
        /// Where to keep them (default: the user's data folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where the files are published.
        #[arg(long, env = "COVID_RESNET_WEIGHTS_URL", default_value = DEFAULT_BASE_URL)]
        base_url: String,
        /// Give up when the server sends nothing for this many seconds (what arrived is kept:
        /// fetch again to continue).
        #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
        stall_timeout: f64,
    },
}

fn dir_or_default(dir: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match dir {
        Some(d) => d.clone(),
        None => weights_dir()?,
    })
}

/// Runs `weights`.
pub fn run(a: &WeightsArgs) -> anyhow::Result<ExitCode> {
    match &a.command {
        WeightsCommand::List { dir } => {
            let dir = dir_or_default(dir)?;
            println!("{:<12} {:<14} {:>8}  file", "name", "weights", "MB");
            for e in ZOO {
                let here = stored_in(&dir, e)
                    .map(|p| shown(&p).to_string())
                    .unwrap_or_else(|| "(not fetched)".into());
                println!(
                    "{:<12} {:<14} {:>8.1}  {here}",
                    e.name,
                    e.variant,
                    e.size_mb()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WeightsCommand::Fetch {
            name,
            dir,
            base_url,
            stall_timeout,
        } => {
            if !(stall_timeout.is_finite() && *stall_timeout > 0.0) {
                anyhow::bail!(
                    "--stall-timeout {stall_timeout}: expected a number of seconds above 0"
                );
            }
            let e = find(name).ok_or_else(|| {
                anyhow::anyhow!("unknown weights {name:?}: expected one of {}", names())
            })?;
            let dir = dir_or_default(dir)?;
            let dest = dir.join(e.file);
            let url = format!("{}/{}", base_url.trim_end_matches('/'), e.file);
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let manual = manual_hint(&url, &dest, "pass the file itself to --weights");
            let r = fetch(
                &Download {
                    url: &url,
                    dest: &dest,
                    sha256: e.sha256,
                    len: e.bytes,
                    manual: &manual,
                    stall: std::time::Duration::from_secs_f64(*stall_timeout),
                },
                &AtomicBool::new(false),
                |done, total| {
                    if let Some(t) = total {
                        bar.set_length(t);
                    }
                    bar.set_position(done);
                },
            );
            bar.finish_and_clear();
            let got = r?;
            if got.downloaded == 0 && got.reused > 0 {
                eprintln!("already here, SHA-256 checked: {}", shown(&got.path));
            } else {
                eprintln!(
                    "fetched {} ({} {}, SHA-256 checked{})",
                    shown(&got.path),
                    e.name,
                    e.variant,
                    if got.reused > 0 {
                        format!("; resumed after {} bytes", got.reused)
                    } else {
                        String::new()
                    }
                );
            }
            eprintln!(
                "train from it with: covid-resnet train --backbone {} --weights {} ...",
                e.backbone.name(),
                e.name
            );
            println!("{}", shown(&got.path));
            Ok(ExitCode::SUCCESS)
        }
    }
}

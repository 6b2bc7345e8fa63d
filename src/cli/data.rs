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
        /// How the data set is read.
        #[command(flatten)]
        dataset: crate::cli::args::DataSetArgs,
        /// Seed of a drawn validation split (as `train --seed`).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// A multi-label data set (NIH ChestX-ray14, CheXpert, MIMIC-CXR-JPG or findings.csv):
    /// images per split, and per finding the positive, negative, uncertain and blank marks
    /// and what the uncertain-label policy trains them as (exit code 1 when files are
    /// missing).
    Findings {
        /// Dataset folder; default: $COVID_RESNET_DATA.
        #[arg(long, env = "COVID_RESNET_DATA")]
        data: PathBuf,
        /// Keep only these views, e.g. `PA,AP` (frontal images).
        #[arg(long, value_delimiter = ',')]
        views: Vec<String>,
        /// Uncertain labels: ignore (masked), zeros or ones, for all and per label, e.g.
        /// `ignore,Edema=ones,Atelectasis=ones`.
        #[arg(long, default_value = "ignore")]
        uncertain: crate::data::findings::Policies,
    },
    /// Decode image files and print what the program sees: size, bit depth, format, DICOM
    /// facts and input warnings (exit code 1 when a file cannot be read).
    Inspect {
        /// Image files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a generated data set for scale tests: small grayscale PNGs in split-file layout,
    /// three classes, two images a patient, every tenth patient in the test split.
    Synth {
        /// Folder to write into (created).
        #[arg(long)]
        out: PathBuf,
        /// Number of images.
        #[arg(long, default_value_t = 10_000)]
        images: usize,
        /// Side of the images in pixels.
        #[arg(long, default_value_t = 96)]
        side: u32,
        /// Seed of the pixel noise.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A multi-label set in NIH ChestX-ray14's layout instead (Data_Entry_2017.csv, the
        /// official lists, images_001/images/...), findings drawn as shapes.
        #[arg(long)]
        nih: bool,
        /// A multi-label set in CheXpert's layout instead (train.csv and valid.csv with the 14
        /// observations, some uncertain; train/patientNNNNN/study1/viewK_frontal.jpg).
        #[arg(long, conflicts_with_all = ["nih", "mimic"])]
        chexpert: bool,
        /// A multi-label set in MIMIC-CXR-JPG's layout instead (its three tables and
        /// files/pNN/p<subject>/s<study>/<dicom_id>.jpg).
        #[arg(long, conflicts_with = "nih")]
        mimic: bool,
    },
}

/// Runs `data`; exit code 1 when files are missing or unreadable or patients leak.
pub fn run(a: &DataArgs) -> anyhow::Result<ExitCode> {
    match &a.command {
        DataCommand::Check {
            data,
            json,
            dataset,
            seed,
        } => {
            let opts = dataset.options(*seed)?;
            let r = check_dataset(data, &opts)?;
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
        DataCommand::Findings {
            data,
            views,
            uncertain,
        } => {
            let mut set = crate::data::findings::read(data, None)?;
            uncertain.check(&set.labels)?;
            if !views.is_empty() {
                set.keep_views(views);
            }
            print!(
                "{}",
                crate::data::findings::summary::summary(&set, uncertain)
            );
            Ok(if set.missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DataCommand::Synth {
            out,
            images,
            side,
            seed,
            nih,
            chexpert,
            mimic,
        } => {
            let spec = crate::data::synth::SynthSpec {
                images: *images,
                side: *side,
                seed: *seed,
            };
            use crate::data::findings::synth as findings;
            let s = if *nih {
                findings::write_nih_synth(out, spec)?
            } else if *chexpert {
                findings::write_chexpert_synth(out, spec)?
            } else if *mimic {
                findings::write_mimic_synth(out, spec)?
            } else {
                crate::data::synth::write_synth(out, spec)?
            };
            println!(
                "wrote {} train and {} test images ({:.1} MB) into {}",
                s.train,
                s.test,
                s.bytes as f64 / 1e6,
                crate::files::shown(out)
            );
            if *chexpert {
                println!(
                    "valid.csv holds the other {} images; CheXpert publishes no test split, so \
                     the readers draw one from the training patients (the same every run)",
                    spec.images - s.train
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Inspect { files } => {
            let mut failed = false;
            for f in files {
                match crate::data::decode::decode_file(f) {
                    Ok(img) => {
                        let (lo, hi) = img
                            .data
                            .iter()
                            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                        println!(
                            "{}: {}x{} px, {}-bit {}{}, intensities {lo:.3}..{hi:.3}",
                            crate::files::shown(f),
                            img.width,
                            img.height,
                            img.bit_depth,
                            img.format,
                            if img.was_color { ", colour" } else { "" }
                        );
                        if let Some(d) = &img.dicom {
                            println!(
                                "  DICOM: {} ({}){}",
                                d.transfer_syntax_name,
                                d.transfer_syntax,
                                if d.meta_header {
                                    ""
                                } else {
                                    ", no File Meta header"
                                }
                            );
                            println!(
                                "  modality {}, {}, view {}, {} of {} bits, {}, windowed {}",
                                d.modality.as_deref().unwrap_or("-"),
                                d.photometric,
                                d.view_position.as_deref().unwrap_or("-"),
                                d.bits_stored,
                                d.bits_allocated,
                                d.frames_note().unwrap_or_else(|| "1 frame".into()),
                                d.windowed
                            );
                            if let Some(n) = &d.header_note {
                                println!("  header: {n}");
                            }
                        }
                        for w in crate::infer::sanity::check(&img, 224) {
                            println!("  warning (for a 224 px model): {w}");
                        }
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

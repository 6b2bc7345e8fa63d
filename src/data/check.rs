//! `data check`: what a dataset folder holds, per split and class, and what is wrong with it.
use super::decode::decode_file;
use super::split::{Dataset, Layout, Split};
use crate::{Result, CLASS_NAMES};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Figures of one split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitReport {
    /// Images per class, in class order.
    pub images: [usize; 4],
    /// Distinct patients per class.
    pub patients: [usize; 4],
    /// Distinct patients in the split.
    pub patients_total: usize,
    /// Files listed but absent.
    pub missing: Vec<String>,
    /// Files that exist but cannot be decoded, with the reason.
    pub unreadable: Vec<(String, String)>,
    /// Entries not used (broken links, links out of the data folder), with the reason.
    pub skipped: Vec<(String, String)>,
    /// "WxH" -> count.
    pub sizes: BTreeMap<String, usize>,
    /// Bits per sample -> count.
    pub bit_depths: BTreeMap<u8, usize>,
    /// Images with colour content.
    pub color_images: usize,
    /// Images per source tag (4th split-file column).
    pub sources: BTreeMap<String, usize>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DataReport {
    /// The folder.
    pub root: String,
    /// How it is organised.
    pub layout: String,
    /// Class names in order.
    pub classes: Vec<String>,
    /// Training split.
    pub train: SplitReport,
    /// Test split.
    pub test: SplitReport,
    /// Patients in both splits.
    pub leaked_patients: Vec<String>,
}

impl DataReport {
    /// True when nothing is missing, unreadable or leaked.
    pub fn is_clean(&self) -> bool {
        self.leaked_patients.is_empty()
            && [&self.train, &self.test]
                .iter()
                .all(|s| s.missing.is_empty() && s.unreadable.is_empty() && s.skipped.is_empty())
    }
}

fn split_report(split: &Split) -> SplitReport {
    let decoded: Vec<_> = split
        .samples
        .par_iter()
        .map(|s| (s, decode_file(&s.path)))
        .collect();
    let mut r = SplitReport {
        images: split.class_counts(),
        patients: split.patient_counts(),
        patients_total: split.patients().len(),
        missing: split
            .missing
            .iter()
            .map(|p| crate::files::shown(p).to_string())
            .collect(),
        unreadable: Vec::new(),
        skipped: split
            .skipped
            .iter()
            .map(|(p, why)| (crate::files::path_text(p), why.clone()))
            .collect(),
        sizes: BTreeMap::new(),
        bit_depths: BTreeMap::new(),
        color_images: 0,
        sources: BTreeMap::new(),
    };
    for (s, d) in decoded {
        if let Some(src) = &s.source {
            *r.sources.entry(src.clone()).or_default() += 1;
        }
        match d {
            Ok(img) => {
                *r.sizes
                    .entry(format!("{}x{}", img.width, img.height))
                    .or_default() += 1;
                *r.bit_depths.entry(img.bit_depth).or_default() += 1;
                r.color_images += img.was_color as usize;
            }
            Err(e) => r
                .unreadable
                .push((crate::files::shown(&s.path).to_string(), e.to_string())),
        }
    }
    r
}

/// What a dataset folder holds, from its listing alone (nothing decoded): quick enough to
/// show while the user types a folder name.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    /// Images per class, train.
    pub train: [usize; 4],
    /// Images per class, test.
    pub test: [usize; 4],
    /// How the folder is organised.
    pub layout: String,
    /// Listed files that are absent (train + test).
    pub missing: usize,
    /// Patients in both splits.
    pub leaked: usize,
}

fn layout_name(l: &Layout) -> String {
    match l {
        Layout::SplitFiles { train, test } => format!(
            "split files {} / {}",
            train.file_name().unwrap_or_default().to_string_lossy(),
            test.file_name().unwrap_or_default().to_string_lossy()
        ),
        Layout::ClassFolders => "class folders train/<class>, test/<class>".into(),
    }
}

/// What stops training on a data set, and what its user should be told before it starts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readiness {
    /// Problems that make training pointless or impossible.
    pub errors: Vec<String>,
    /// Things to look at (training still starts).
    pub warnings: Vec<String>,
}

/// Fewer training images than this in a class earns a warning.
pub const FEW_IMAGES: usize = 10;

/// Checks a data set before training on it: missing files, an empty split, empty or tiny
/// classes, patients in both splits, entries that were skipped while listing.
pub fn readiness(ds: &Dataset) -> Readiness {
    let mut r = Readiness::default();
    for (name, split) in [("train", &ds.train), ("test", &ds.test)] {
        if let Err(e) = split.check_complete(name) {
            r.errors.push(e.to_string());
        }
        // A class folder's odd entry is left out; a file a split file lists must be used.
        let listed = matches!(ds.layout, super::split::Layout::SplitFiles { .. });
        for (p, why) in &split.skipped {
            let line = format!("{name}: {} is not used: {why}", crate::files::shown(p));
            if listed {
                r.errors.push(line);
            } else {
                r.warnings.push(line);
            }
        }
    }
    if ds.train.samples.is_empty() {
        r.errors.push("the training split has no images".into());
    }
    if ds.test.samples.is_empty() {
        r.errors.push(
            "the test split has no images: there is nothing to validate or evaluate on".into(),
        );
    }
    let counts = ds.train.class_counts();
    for (c, &n) in CLASS_NAMES.iter().zip(&counts) {
        if n == 0 {
            r.warnings.push(format!(
                "class {c} has no training images: the model cannot learn it"
            ));
        } else if n < FEW_IMAGES {
            r.warnings
                .push(format!("class {c} has only {n} training image(s)"));
        }
    }
    let leaked = ds.leaked_patients();
    if !leaked.is_empty() {
        r.warnings.push(format!(
            "{} patient(s) are in both train and test",
            leaked.len()
        ));
    }
    r
}

/// Lists the dataset at `root` without decoding it.
pub fn summarize(root: &Path) -> Result<DatasetSummary> {
    let ds = Dataset::open(root)?;
    Ok(DatasetSummary {
        train: ds.train.class_counts(),
        test: ds.test.class_counts(),
        layout: layout_name(&ds.layout),
        missing: ds.train.missing.len() + ds.test.missing.len(),
        leaked: ds.leaked_patients().len(),
    })
}

/// Opens the dataset at `root` and decodes every image.
pub fn check_dataset(root: &Path, opts: &super::split::DataOptions) -> Result<DataReport> {
    let ds = Dataset::open_with(root, opts)?;
    Ok(DataReport {
        root: crate::files::shown(root).to_string(),
        layout: layout_name(&ds.layout),
        classes: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        train: split_report(&ds.train),
        test: split_report(&ds.test),
        leaked_patients: ds.leaked_patients(),
    })
}

/// The report as the terminal shows it.
pub fn format_report(r: &DataReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "dataset {} ({})", r.root, r.layout);
    let _ = writeln!(
        o,
        "{:<6} {:<10} {:>7} {:>9}",
        "split", "class", "images", "patients"
    );
    for (name, s) in [("train", &r.train), ("test", &r.test)] {
        for (i, c) in r.classes.iter().enumerate() {
            let _ = writeln!(
                o,
                "{name:<6} {c:<10} {:>7} {:>9}",
                s.images[i], s.patients[i]
            );
        }
        let _ = writeln!(
            o,
            "{name:<6} {:<10} {:>7} {:>9}",
            "total",
            s.images.iter().sum::<usize>(),
            s.patients_total
        );
    }
    for (name, s) in [("train", &r.train), ("test", &r.test)] {
        let list = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(o, "{name}: sizes {}", list(&s.sizes));
        let depths: BTreeMap<String, usize> = s
            .bit_depths
            .iter()
            .map(|(k, v)| (format!("{k}-bit"), *v))
            .collect();
        let _ = writeln!(
            o,
            "{name}: bit depths {}; colour images {}",
            list(&depths),
            s.color_images
        );
        if !s.sources.is_empty() {
            let _ = writeln!(o, "{name}: sources {}", list(&s.sources));
        }
        for m in &s.missing {
            let _ = writeln!(o, "{name}: MISSING {m}");
        }
        for (f, e) in &s.unreadable {
            let _ = writeln!(o, "{name}: UNREADABLE {f}: {e}");
        }
        for (f, why) in &s.skipped {
            let _ = writeln!(o, "{name}: SKIPPED {f}: {why}");
        }
    }
    if r.leaked_patients.is_empty() {
        let _ = writeln!(
            o,
            "patient leakage: none (no patient is in both train and test)"
        );
    } else {
        let _ = writeln!(
            o,
            "patient leakage: {} patient(s) in both train and test: {}",
            r.leaked_patients.len(),
            r.leaked_patients.join(", ")
        );
    }
    o
}

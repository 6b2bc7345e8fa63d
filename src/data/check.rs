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
                .all(|s| s.missing.is_empty() && s.unreadable.is_empty())
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
            .map(|p| p.display().to_string())
            .collect(),
        unreadable: Vec::new(),
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
                .push((s.path.display().to_string(), e.to_string())),
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
pub fn check_dataset(root: &Path) -> Result<DataReport> {
    let ds = Dataset::open(root)?;
    Ok(DataReport {
        root: root.display().to_string(),
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

//! `data check`: what a dataset folder holds, per split and class, and what is wrong with it;
//! a quick summary for the Training tab; what stops a run before it starts.
use super::decode::decode_file;
use super::split::{DataOptions, Dataset, Layout, Split, ValidSource};
use crate::files::shown;
use crate::Result;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Figures of one split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitReport {
    /// The split's name.
    pub name: String,
    /// Images per class, in class order (a multi-label set: images showing each finding).
    pub images: Vec<usize>,
    /// Images in the split.
    #[serde(default)]
    pub images_total: usize,
    /// Distinct patients per class.
    pub patients: Vec<usize>,
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
    /// Images per source tag.
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
    /// Where the validation images come from.
    pub valid_source: String,
    /// Train, valid and test.
    pub splits: Vec<SplitReport>,
    /// Patients in more than one split.
    pub leaked_patients: Vec<String>,
    /// Each pair of splits that shares patients: (split, split, patients).
    pub leaks: Vec<(String, String, Vec<String>)>,
    /// Each pair of splits that holds the same images (the same file, or the same bytes
    /// under another name): (split, split, images).
    pub shared_images: Vec<(String, String, Vec<String>)>,
}

impl DataReport {
    /// True when nothing is missing, unreadable, skipped or leaked.
    pub fn is_clean(&self) -> bool {
        self.leaked_patients.is_empty()
            && self.shared_images.is_empty()
            && self
                .splits
                .iter()
                .all(|s| s.missing.is_empty() && s.unreadable.is_empty() && s.skipped.is_empty())
    }
}

fn split_report(name: &str, split: &Split, k: usize, decode: bool) -> SplitReport {
    let mut r = SplitReport {
        name: name.into(),
        images: split.class_counts(k),
        images_total: split.samples.len(),
        patients: split.patient_counts(k),
        patients_total: split.patients().len(),
        missing: split.missing.iter().map(|p| shown(p).to_string()).collect(),
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
    for s in &split.samples {
        if let Some(src) = &s.source {
            *r.sources.entry(src.clone()).or_default() += 1;
        }
    }
    if !decode {
        return r;
    }
    // Only each image's facts are kept, never its pixels: memory stays flat at any size.
    let decoded: Vec<_> = split
        .samples
        .par_iter()
        .map(|s| {
            let facts = decode_file(&s.path)
                .map(|img| (img.width, img.height, img.bit_depth, img.was_color));
            (s, facts)
        })
        .collect();
    for (s, d) in decoded {
        match d {
            Ok((width, height, bit_depth, was_color)) => {
                *r.sizes.entry(format!("{width}x{height}")).or_default() += 1;
                *r.bit_depths.entry(bit_depth).or_default() += 1;
                r.color_images += was_color as usize;
            }
            Err(e) => r
                .unreadable
                .push((shown(&s.path).to_string(), e.to_string())),
        }
    }
    r
}

/// What a dataset folder holds, from its listing alone (nothing decoded): quick enough to
/// show while the user types a folder name.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    /// Class names in order.
    pub classes: Vec<String>,
    /// Images per class of train, valid and test (a multi-label set's: images showing each
    /// finding).
    pub counts: [Vec<usize>; 3],
    /// A multi-label set's images per finding of train, valid and test as `[present, absent,
    /// not counted]` (None: a single-label set).
    pub findings: Option<[Vec<[usize; 3]>; 3]>,
    /// How the folder is organised.
    pub layout: String,
    /// Where the validation images come from.
    pub valid_source: String,
    /// What stops training, and what to look at.
    pub readiness: Readiness,
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
/// Fewer validation images than this in a class earns a warning: its figures then move by
/// whole images from epoch to epoch.
pub const FEW_VALID: usize = 5;

/// Checks a data set before training on it: missing files, an empty split, empty or tiny
/// classes, patients in more than one split, entries set aside while listing.
pub fn readiness(ds: &Dataset) -> Readiness {
    let mut r = Readiness::default();
    let listed = matches!(ds.layout, Layout::SplitFiles { .. } | Layout::Csv { .. });
    for (name, split) in [
        ("train", &ds.train),
        ("valid", &ds.valid),
        ("test", &ds.test),
    ] {
        if let Err(e) = split.check_complete(name) {
            r.errors.push(e.to_string());
        }
        // A class folder's odd entry is left out; a file a list names must be used.
        for (p, why) in &split.skipped {
            let line = format!("{name}: {} is not used: {why}", shown(p));
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
        r.errors
            .push("the test split has no images: there is nothing to evaluate on".into());
    }
    if ds.valid.samples.is_empty() && ds.valid_source != ValidSource::Test {
        r.errors.push(
            "the validation split has no images: add some, draw more (--valid-pct), or \
             validate on the test split (--valid test)"
                .into(),
        );
    }
    if ds.classes.len() < 2 {
        r.errors.push(format!(
            "one class only ({}): a classifier needs two or more",
            ds.classes.join(", ")
        ));
    }
    // A multi-label set counts the images showing each finding.
    let (what, whats, images) = if ds.is_findings() {
        ("finding", "findings", "positive ")
    } else {
        ("class", "classes", "")
    };
    let counts = ds.train.class_counts(ds.classes.len());
    let mut none = Vec::new();
    for (c, &n) in ds.classes.iter().zip(&counts) {
        if n == 0 {
            none.push(c.as_str());
        } else if n < FEW_IMAGES {
            r.warnings
                .push(format!("{what} {c} has only {n} {images}training image(s)"));
        }
    }
    match none.as_slice() {
        [] => {}
        [c] => r.warnings.push(format!(
            "{what} {c} has no {images}training images: the model cannot learn it"
        )),
        many => r.warnings.push(format!(
            "{} {whats} have no {images}training images: the model cannot learn them: {}",
            many.len(),
            many.join(", ")
        )),
    }
    if ds.valid_source != ValidSource::Test && !ds.valid.samples.is_empty() {
        let valid = ds.valid.class_counts(ds.classes.len());
        let few: Vec<(&str, usize)> = ds
            .classes
            .iter()
            .zip(&valid)
            .filter(|(_, &n)| n < FEW_VALID)
            .map(|(c, &n)| (c.as_str(), n))
            .collect();
        match few.as_slice() {
            [] => {}
            [(c, n)] => r.warnings.push(format!(
                "{what} {c} has {} {images}validation image(s): its validation figures move \
                 by whole images (draw more with a larger validation percentage)",
                if *n == 0 {
                    "no".to_string()
                } else {
                    format!("only {n}")
                }
            )),
            many => r.warnings.push(format!(
                "{} {whats} have fewer than {FEW_VALID} {images}validation images ({}): their \
                 validation figures move by whole images (draw more with a larger validation \
                 percentage)",
                many.len(),
                many.iter()
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    let leaked = ds.leaked_patients();
    if !leaked.is_empty() {
        r.warnings.push(format!(
            "{} patient(s) are in more than one split",
            leaked.len()
        ));
    }
    for (a, b, files) in ds.shared_files() {
        r.warnings.push(format!(
            "{} image(s) are in both {} and {}, e.g. {}",
            files.len(),
            a.name(),
            b.name(),
            shown(&files[0])
        ));
    }
    r
}

/// Lists the dataset at `root` without decoding it.
pub fn summarize(root: &Path, opts: &DataOptions) -> Result<DatasetSummary> {
    let ds = crate::data::findings::dataset::open_any(root, opts)?;
    let k = ds.classes.len();
    Ok(DatasetSummary {
        findings: ds.is_findings().then(|| {
            [
                ds.train.finding_counts(k),
                ds.valid.finding_counts(k),
                ds.test.finding_counts(k),
            ]
        }),
        counts: [
            ds.train.class_counts(k),
            ds.valid.class_counts(k),
            ds.test.class_counts(k),
        ],
        layout: ds.layout.describe(),
        valid_source: ds.valid_source.describe(),
        readiness: readiness(&ds),
        classes: ds.classes,
    })
}

/// Opens the dataset at `root` and decodes every image.
pub fn check_dataset(root: &Path, opts: &DataOptions) -> Result<DataReport> {
    let ds = crate::data::findings::dataset::open_any(root, opts)?;
    let k = ds.classes.len();
    let mut splits = vec![split_report("train", &ds.train, k, true)];
    if ds.valid_source != ValidSource::Test {
        splits.push(split_report("valid", &ds.valid, k, true));
    }
    splits.push(split_report("test", &ds.test, k, true));
    Ok(DataReport {
        root: shown(root).to_string(),
        layout: ds.layout.describe(),
        valid_source: ds.valid_source.describe(),
        leaked_patients: ds.leaked_patients(),
        leaks: ds
            .leaks()
            .into_iter()
            .map(|(a, b, p)| (a.name().to_string(), b.name().to_string(), p))
            .collect(),
        shared_images: ds
            .shared_content()
            .into_iter()
            .map(|(a, b, p)| (a.name().to_string(), b.name().to_string(), p))
            .collect(),
        classes: ds.classes,
        splits,
    })
}

/// The report as the terminal shows it.
pub fn format_report(r: &DataReport) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "dataset {} ({})", r.root, r.layout);
    let _ = writeln!(o, "classes: {}", r.classes.join(", "));
    let _ = writeln!(o, "validation: {}", r.valid_source);
    let width = r.classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        o,
        "{:<6} {:<width$} {:>7} {:>9}",
        "split", "class", "images", "patients"
    );
    for s in &r.splits {
        for (i, c) in r.classes.iter().enumerate() {
            let _ = writeln!(
                o,
                "{:<6} {c:<width$} {:>7} {:>9}",
                s.name, s.images[i], s.patients[i]
            );
        }
        let _ = writeln!(
            o,
            "{:<6} {:<width$} {:>7} {:>9}",
            s.name, "total", s.images_total, s.patients_total
        );
    }
    let list = |m: &BTreeMap<String, usize>| {
        if m.is_empty() {
            return "none (no image decoded)".to_string();
        }
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for s in &r.splits {
        let name = &s.name;
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
        let _ = writeln!(o, "patient leakage: none (no patient is in two splits)");
    }
    for (a, b, p) in &r.leaks {
        let _ = writeln!(
            o,
            "patient leakage: {} patient(s) in both {a} and {b}: {}",
            p.len(),
            p.join(", ")
        );
    }
    if r.shared_images.is_empty() {
        let _ = writeln!(
            o,
            "image leakage: none (no file, and no copy of one, is in two splits)"
        );
    }
    for (a, b, p) in &r.shared_images {
        let _ = writeln!(
            o,
            "image leakage: {} image(s) in both {a} and {b}: {}",
            p.len(),
            p.join(", ")
        );
    }
    o
}

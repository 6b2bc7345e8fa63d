//! Data sets as researchers have them: COVID-Net split files, one folder per class,
//! Kermany's pediatric layout, or a CSV; classes from the data; a validation split of the
//! data set's own, drawn by patient from the training images, or the test split (the
//! paper's way); links checked; the patient-leakage check.
pub mod draw;
pub mod folders;
pub mod labels;
pub mod leaks;
pub mod options;
pub mod split_files;
pub mod table;

pub use folders::IMAGE_EXTENSIONS;
pub use labels::{canonical, paper_index, PAPER_CLASSES};
pub use leaks::leaked_patients;
pub use options::{DataOptions, Manifest, ValidChoice, ValidSource};
pub use split_files::{parse_split_text, read_split_file};
pub use table::CsvColumns;

use crate::files::shown;
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Fewest and most classes a data set (and so a model) may have.
pub const CLASS_COUNT_RANGE: std::ops::RangeInclusive<usize> = 2..=64;

/// A listed image before the classes are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Where the image is.
    pub path: PathBuf,
    /// The label as the data set writes it.
    pub label: String,
    /// Patient identifier.
    pub patient: String,
    /// Source tag, if any.
    pub source: Option<String>,
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Where the image is.
    pub path: PathBuf,
    /// Class index into the data set's classes.
    pub label: usize,
    /// Patient identifier.
    pub patient: String,
    /// Source tag, if any.
    pub source: Option<String>,
    /// A multi-label data set's findings: per label [`crate::data::findings::ABSENT`],
    /// `PRESENT` or `NOT_COUNTED` (an uncertain mark masked out); `label` is then 0 and
    /// unused. None for a single-label data set.
    pub findings: Option<std::sync::Arc<[u8]>>,
}

/// The samples of one split, plus what could not be used.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// Samples whose file exists.
    pub samples: Vec<Sample>,
    /// Files listed but not found (reported, never silently dropped).
    pub missing: Vec<PathBuf>,
    /// Entries not used, with the reason (a dangling or looping link, a link that leaves
    /// the data folder).
    pub skipped: Vec<(PathBuf, String)>,
}

impl Split {
    /// The classes sample `s` counts for: its class, or a multi-label sample's findings
    /// present.
    fn classes_of(s: &Sample) -> Vec<usize> {
        match &s.findings {
            Some(codes) => (0..codes.len())
                .filter(|&l| codes[l] == crate::data::findings::PRESENT)
                .collect(),
            None => vec![s.label],
        }
    }

    /// Images per class, for `k` classes (multi-label: images showing each finding).
    pub fn class_counts(&self, k: usize) -> Vec<usize> {
        let mut c = vec![0; k];
        for s in &self.samples {
            for l in Self::classes_of(s) {
                if let Some(n) = c.get_mut(l) {
                    *n += 1;
                }
            }
        }
        c
    }

    /// A multi-label split's images per finding as `[present, absent, not counted]` (not
    /// counted: uncertain under the policy "ignore"); empty for a single-label split.
    pub fn finding_counts(&self, k: usize) -> Vec<[usize; 3]> {
        let mut c = vec![[0usize; 3]; k];
        let mut any = false;
        for codes in self.samples.iter().filter_map(|s| s.findings.as_deref()) {
            any = true;
            for (n, &code) in c.iter_mut().zip(codes) {
                match code {
                    crate::data::findings::PRESENT => n[0] += 1,
                    crate::data::findings::ABSENT => n[1] += 1,
                    _ => n[2] += 1,
                }
            }
        }
        if any {
            c
        } else {
            Vec::new()
        }
    }

    /// Distinct patients per class (a patient with two classes counts in both).
    pub fn patient_counts(&self, k: usize) -> Vec<usize> {
        let mut sets: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); k];
        for s in &self.samples {
            for l in Self::classes_of(s) {
                if let Some(set) = sets.get_mut(l) {
                    set.insert(&s.patient);
                }
            }
        }
        sets.iter().map(BTreeSet::len).collect()
    }

    /// Distinct patients.
    pub fn patients(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.patient.as_str()).collect()
    }

    /// An error naming the missing files, if any.
    pub fn check_complete(&self, what: &str) -> Result<()> {
        if self.missing.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = self
            .missing
            .iter()
            .take(5)
            .map(|p| shown(p).to_string())
            .collect();
        Err(Error::invalid(
            format!("{what} split"),
            format!(
                "{} listed image(s) do not exist: {}{}",
                self.missing.len(),
                listed.join(", "),
                if self.missing.len() > 5 { ", ..." } else { "" }
            ),
        ))
    }
}

/// How the data set folder is organised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `train_*.txt`, `test_*.txt` (and perhaps `val_*.txt`) with image folders.
    SplitFiles {
        /// The training split file.
        train: PathBuf,
        /// The validation split file, if any.
        valid: Option<PathBuf>,
        /// The test split file.
        test: PathBuf,
    },
    /// Kermany's `NORMAL` / `PNEUMONIA` folders.
    Kermany {
        /// Pneumonia split into bacterial and viral by file name.
        split_pneumonia: bool,
    },
    /// `train/<class>/`, `test/<class>/` (and perhaps `valid/<class>/`) folders.
    ClassFolders,
    /// `<class>/` folders alone: the test split is drawn from them by patient.
    ClassesOnly,
    /// One CSV file listing every image.
    Csv {
        /// The CSV file.
        file: PathBuf,
    },
    /// A multi-label data set (`data::findings`).
    Findings(crate::data::findings::Layout),
}

impl Layout {
    /// The layout in words (`data check`, the Training tab).
    pub fn describe(&self) -> String {
        let name = |p: &Path| {
            p.file_name()
                .map(|n| shown(Path::new(n)).to_string())
                .unwrap_or_default()
        };
        match self {
            Self::SplitFiles { train, valid, test } => format!(
                "split files {} / {}{}",
                name(train),
                name(test),
                valid
                    .as_ref()
                    .map(|v| format!(" / {}", name(v)))
                    .unwrap_or_default()
            ),
            Self::Kermany { split_pneumonia } => format!(
                "Kermany's NORMAL/PNEUMONIA folders{}",
                if *split_pneumonia {
                    ", pneumonia split into bacterial and viral by file name"
                } else {
                    ""
                }
            ),
            Self::ClassFolders => "class folders train/<class>, test/<class>".into(),
            Self::ClassesOnly => format!(
                "class folders <class>/ without a test split: {} % of the patients drawn as the \
                 test split (seed {}, the same for every run)",
                draw::TEST_PERCENT,
                draw::TEST_SEED
            ),
            Self::Csv { file } => format!("the CSV {}", name(file)),
            Self::Findings(l) => format!("{l} (multi-label findings)"),
        }
    }
}

/// Which split of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SplitKind {
    /// Training images.
    Train,
    /// Validation images (per-epoch metrics, the LR finder's and any fitting's data).
    Valid,
    /// Test images (evaluated once, at the end).
    Test,
}

impl SplitKind {
    /// The split's name in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Valid => "valid",
            Self::Test => "test",
        }
    }
}

/// A data set with its splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder the user chose.
    pub root: PathBuf,
    /// How it is organised.
    pub layout: Layout,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Training images.
    pub train: Split,
    /// Validation images.
    pub valid: Split,
    /// Test images.
    pub test: Split,
    /// Where the validation images came from.
    pub valid_source: ValidSource,
    /// A multi-label data set's uncertain-label policies (its samples carry `findings`);
    /// None for a single-label one.
    pub uncertain: Option<crate::data::findings::Policies>,
}

/// Why the file at `path` cannot be used: a link that is dangling or loops, one that leads
/// outside the data folder `root` (canonical) when that is not allowed, or no file at all.
fn link_problem(path: &Path, root: &Path, allow_outside: bool) -> Option<String> {
    match path.canonicalize() {
        Err(e) => Some(format!(
            "a link that leads nowhere (dangling or looping: {e})"
        )),
        Ok(t) if !t.starts_with(root) && !allow_outside => Some(format!(
            "a link to {}, outside the data folder (allow with --allow-outside-links)",
            shown(&t)
        )),
        Ok(t) if !t.is_file() => Some("not a file".into()),
        Ok(_) => None,
    }
}

/// Rows of each split as the layout lists them.
type Listed = BTreeMap<&'static str, Vec<Row>>;

/// The CSV file named by the user or `dataset.toml`, checked, if either names one.
fn named_csv(root: &Path, m: &Manifest, opts: &DataOptions) -> Result<Option<PathBuf>> {
    let named = match (&opts.csv_file, m.csv.as_ref().and_then(|c| c.file.as_ref())) {
        (Some(f), _) => (f, "--data-csv"),
        (None, Some(f)) => (f, "dataset.toml's [csv] file"),
        (None, None) => return Ok(None),
    };
    table::named_csv(root, named.0, named.1, opts.allow_outside_links).map(Some)
}

fn csv_layout(file: PathBuf, m: &Manifest) -> Result<(Layout, Listed)> {
    let mut out: Listed = BTreeMap::new();
    for (kind, row) in table::read_csv(&file, &m.csv.clone().unwrap_or_default())? {
        out.entry(match kind {
            SplitKind::Train => "train",
            SplitKind::Valid => "valid",
            SplitKind::Test => "test",
        })
        .or_default()
        .push(row);
    }
    Ok((Layout::Csv { file }, out))
}

fn list(root: &Path, m: &Manifest, opts: &DataOptions) -> Result<(Layout, Listed)> {
    let named = named_csv(root, m, opts)?;
    if let Some(f) = &opts.csv_file.as_ref().and(named.clone()) {
        return csv_layout(f.clone(), m);
    }
    let mut out: Listed = BTreeMap::new();
    if let Some((tr, va, te)) = split_files::find_split_files(root)? {
        out.insert("train", read_split_file(&tr, &root.join("train"))?);
        out.insert("test", read_split_file(&te, &root.join("test"))?);
        if let Some(v) = &va {
            let dir = ["valid", "val", "validation"]
                .iter()
                .map(|d| root.join(d))
                .find(|d| d.is_dir())
                .unwrap_or_else(|| root.join("valid"));
            out.insert("valid", read_split_file(v, &dir)?);
        }
        return Ok((
            Layout::SplitFiles {
                train: tr,
                valid: va,
                test: te,
            },
            out,
        ));
    }
    let valid_dir = ["valid", "val", "validation"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir());
    if folders::is_kermany(root) {
        let split = opts.split_pneumonia.or(m.split_pneumonia).unwrap_or(false);
        for (name, dir) in [
            ("train", Some(root.join("train"))),
            ("test", Some(root.join("test"))),
            ("valid", valid_dir),
        ] {
            if let Some(d) = dir {
                out.insert(name, folders::read_kermany(&d, split)?);
            }
        }
        return Ok((
            Layout::Kermany {
                split_pneumonia: split,
            },
            out,
        ));
    }
    if root.join("train").is_dir() && root.join("test").is_dir() {
        out.insert("train", folders::read_class_folders(&root.join("train"))?);
        out.insert("test", folders::read_class_folders(&root.join("test"))?);
        if let Some(d) = valid_dir {
            out.insert("valid", folders::read_class_folders(&d)?);
        }
        return Ok((Layout::ClassFolders, out));
    }
    if let Some(file) = named.or_else(|| table::find_csv(root)) {
        return csv_layout(file, m);
    }
    if folders::is_classes_only(root) {
        out.insert("all", folders::read_class_folders(root)?);
        return Ok((Layout::ClassesOnly, out));
    }
    Err(Error::invalid(
        "dataset",
        format!(
            "{}: found neither train_*.txt/test_*.txt split files, nor train/ and test/ class \
             folders, nor folders of classes, nor one CSV file",
            shown(root)
        ),
    ))
}

/// Rows -> a split: labels to indices, missing files set apart.
fn to_split(rows: Vec<Row>, classes: &[String]) -> Split {
    let mut split = Split::default();
    for r in rows {
        let c = labels::canonical(&r.label);
        let Some(label) = classes.iter().position(|x| *x == c) else {
            continue; // cannot happen: the classes were made from these labels
        };
        let exists = r.path.is_file()
            || std::fs::symlink_metadata(&r.path).is_ok_and(|m| m.file_type().is_symlink());
        if !exists {
            split.missing.push(r.path);
            continue;
        }
        split.samples.push(Sample {
            path: r.path,
            label,
            patient: r.patient,
            source: r.source,
            findings: None,
        });
    }
    split
}

/// Moves `percent` % of the training patients (seeded) into a validation split.
fn draw_valid(train: &mut Split, percent: f64, seed: u64) -> Split {
    draw::draw_patients(train, percent, seed, draw::VALID_SALT)
}

/// The validation split by `choice`: the data set's own (`own`), the test split, or drawn
/// by patient from `train` (moved out of it).
pub(crate) fn settle_valid(
    root: &Path,
    choice: ValidChoice,
    own: Option<Split>,
    train: &mut Split,
    test: &Split,
    seed: u64,
) -> Result<(Split, ValidSource)> {
    Ok(match (choice, own) {
        (ValidChoice::Test, _) => (test.clone(), ValidSource::Test),
        (ValidChoice::Auto, Some(v)) => (v, ValidSource::Own),
        (ValidChoice::Percent(_), Some(_)) => {
            return Err(Error::invalid(
                "validation split",
                format!(
                    "{} has its own validation split: drop the percentage, or validate on \
                     the test split",
                    shown(root)
                ),
            ))
        }
        (ValidChoice::Auto, None) => (
            draw_valid(train, 10.0, seed),
            ValidSource::Drawn {
                percent: 10.0,
                seed,
            },
        ),
        (ValidChoice::Percent(p), None) => (
            draw_valid(train, p, seed),
            ValidSource::Drawn { percent: p, seed },
        ),
    })
}

impl Dataset {
    /// One of the splits.
    pub fn split(&self, kind: SplitKind) -> &Split {
        match kind {
            SplitKind::Train => &self.train,
            SplitKind::Valid => &self.valid,
            SplitKind::Test => &self.test,
        }
    }

    /// Opens `root` with the default options.
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, &DataOptions::default())
    }

    /// Detects the layout of `root`, reads every split, orders the classes, settles the
    /// validation split, and sets aside links that do not lead to a file inside `root`.
    pub fn open_with(root: &Path, opts: &DataOptions) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::invalid(
                "dataset",
                format!("{} is not a folder", shown(root)),
            ));
        }
        if opts.csv_file.is_none() {
            if let Some(l) = crate::data::findings::detect(root) {
                // Commands that read multi-label sets open them with
                // `findings::dataset::open_any`; the rest are single-label only.
                return Err(Error::invalid(
                    "dataset",
                    format!(
                        "{} is a multi-label data set ({l}): this reads single-label data \
                         sets only; `train`, `eval` of a multi-label model, `data check` and \
                         `covid-resnet data findings` read it",
                        shown(root)
                    ),
                ));
            }
        }
        let manifest = Manifest::read(root)?;
        let (layout, mut listed) = list(root, &manifest, opts)?;
        let found: Vec<String> = listed
            .values()
            .flatten()
            .map(|r| labels::canonical(&r.label))
            .collect();
        let explicit = opts.classes.as_deref().or(manifest.classes.as_deref());
        let classes = labels::class_order(&found, explicit)?;
        if classes.len() > *CLASS_COUNT_RANGE.end() {
            return Err(Error::invalid(
                "classes",
                format!("{}: {} classes, more than 64", shown(root), classes.len()),
            ));
        }
        let (mut train, test) = match listed.remove("all") {
            Some(all) => {
                let mut all = to_split(all, &classes);
                let test = draw::draw_patients(
                    &mut all,
                    draw::TEST_PERCENT,
                    draw::TEST_SEED,
                    draw::TEST_SALT,
                );
                (all, test)
            }
            None => (
                to_split(listed.remove("train").unwrap_or_default(), &classes),
                to_split(listed.remove("test").unwrap_or_default(), &classes),
            ),
        };
        let own = listed.remove("valid").map(|v| to_split(v, &classes));
        let choice = match opts.valid {
            Some(c) => c,
            None => match &manifest.valid {
                Some(v) => v.parse()?,
                None => ValidChoice::Auto,
            },
        };
        let (valid, valid_source) = settle_valid(root, choice, own, &mut train, &test, opts.seed)?;
        let mut ds = Self {
            root: root.to_path_buf(),
            layout,
            classes,
            train,
            valid,
            test,
            valid_source,
            uncertain: None,
        };
        ds.set_aside_links(opts)?;
        Ok(ds)
    }

    /// Moves samples whose file is a link that leads nowhere, or outside the data folder
    /// when that is not allowed, to their split's `skipped`.
    pub(crate) fn set_aside_links(&mut self, opts: &DataOptions) -> Result<()> {
        let root = &self.root;
        let canon = root.canonicalize().map_err(|e| Error::io(root, e))?;
        for split in [&mut self.train, &mut self.valid, &mut self.test] {
            let (keep, set_aside): (Vec<Sample>, Vec<Sample>) = std::mem::take(&mut split.samples)
                .into_iter()
                .partition(|s| link_problem(&s.path, &canon, opts.allow_outside_links).is_none());
            for s in set_aside {
                let why =
                    link_problem(&s.path, &canon, opts.allow_outside_links).unwrap_or_default();
                split.skipped.push((s.path, why));
            }
            split.samples = keep;
        }
        Ok(())
    }

    /// Relabels the samples for a model with `classes` (in its output order). Refused, with
    /// both lists, when the data set has a class the model does not know; a model class the
    /// data set lacks is fine (its row of the confusion matrix stays empty).
    pub fn align_to_model(&mut self, classes: &[String]) -> Result<()> {
        if self.classes == classes {
            return Ok(());
        }
        let map: Option<Vec<usize>> = self
            .classes
            .iter()
            .map(|c| classes.iter().position(|m| m == c))
            .collect();
        let Some(map) = map else {
            return Err(Error::invalid(
                "classes",
                format!(
                    "the model's classes ({}) differ from the data set's ({}): the data set has \
                     a class the model does not know",
                    classes.join(", "),
                    self.classes.join(", ")
                ),
            ));
        };
        for split in [&mut self.train, &mut self.valid, &mut self.test] {
            for s in &mut split.samples {
                s.label = map[s.label];
            }
        }
        self.classes = classes.to_vec();
        Ok(())
    }
}

#[cfg(test)]
mod tests;

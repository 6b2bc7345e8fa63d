//! Multi-label data sets: an image shows any number of findings (Effusion and Cardiomegaly
//! and Atelectasis at once, or none). Read from the layouts researchers have them in:
//! NIH ChestX-ray14 (`nih.rs`), CheXpert (`chexpert.rs`), MIMIC-CXR-JPG (`mimic.rs`) and a
//! generic CSV (`generic.rs`); each image keeps what the data set says of each finding
//! ([`Mark`]: positive, negative, uncertain, or not mentioned), and the targets a model trains
//! on come from those by the uncertain-label policies of the CheXpert paper ([`Policies`]).
pub mod chexpert;
pub mod dataset;
pub mod generic;
pub mod mimic;
pub mod nih;
pub mod summary;
pub mod synth;
mod table;
#[cfg(test)]
mod tests;

use super::split::SplitKind;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What a data set says of one finding in one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Present (1).
    Positive,
    /// Absent (0).
    Negative,
    /// Uncertain (-1: "possible", "cannot exclude" in the report).
    Uncertain,
    /// Not mentioned (blank).
    Blank,
}

impl Mark {
    /// A cell of a label column: `1`, `0`, `-1` (also `1.0`, `0.0`, `-1.0`) or blank.
    pub fn parse(cell: &str) -> Option<Mark> {
        match cell.trim() {
            "" => Some(Mark::Blank),
            "1" | "1.0" => Some(Mark::Positive),
            "0" | "0.0" => Some(Mark::Negative),
            "-1" | "-1.0" => Some(Mark::Uncertain),
            _ => None,
        }
    }
}

/// A sample's finding code ([`crate::data::split::Sample::findings`]): absent (target 0).
pub const ABSENT: u8 = 0;
/// Present (target 1).
pub const PRESENT: u8 = 1;
/// Not counted (mask 0).
pub const NOT_COUNTED: u8 = 2;

/// The target and mask weight of a finding code.
pub fn target_of(code: u8) -> (f32, f32) {
    match code {
        PRESENT => (1.0, 1.0),
        ABSENT => (0.0, 1.0),
        _ => (0.0, 0.0),
    }
}

/// One image and its findings.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingImage {
    /// Where the image is.
    pub path: PathBuf,
    /// Patient identifier.
    pub patient: String,
    /// View position as the data set writes it (`PA`, `AP`, `LATERAL`, ...), if it says.
    pub view: Option<String>,
    /// The data set's own split, if it has one.
    pub split: Option<SplitKind>,
    /// One mark per label of the set, in its order.
    pub marks: Vec<Mark>,
}

/// How a multi-label data set is organised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// NIH ChestX-ray14.
    Nih,
    /// CheXpert.
    Chexpert,
    /// MIMIC-CXR-JPG.
    Mimic,
    /// A CSV file (path relative to the data folder).
    Csv(PathBuf),
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::Nih => f.write_str("NIH ChestX-ray14"),
            Layout::Chexpert => f.write_str("CheXpert"),
            Layout::Mimic => f.write_str("MIMIC-CXR-JPG"),
            Layout::Csv(p) => write!(f, "CSV {}", crate::files::path_text(p)),
        }
    }
}

/// A multi-label data set.
#[derive(Debug, Clone)]
pub struct FindingSet {
    /// The folder the user chose.
    pub root: PathBuf,
    /// How it is organised.
    pub layout: Layout,
    /// Finding names, in output order.
    pub labels: Vec<String>,
    /// The images whose file exists.
    pub images: Vec<FindingImage>,
    /// Files listed but not found (reported, never silently dropped).
    pub missing: Vec<PathBuf>,
    /// What else a reader left out, and why (one line each).
    pub notes: Vec<String>,
}

/// The generic CSV's default file name, which [`detect`] recognises.
pub const CSV_FILE: &str = "findings.csv";

/// The layout of the data folder `root`, if it is one of the multi-label ones.
pub fn detect(root: &Path) -> Option<Layout> {
    if nih::entry_file(root).is_some() {
        Some(Layout::Nih)
    } else if mimic::table_file(root, mimic::LABELS).is_some() {
        Some(Layout::Mimic)
    } else if chexpert::is_chexpert(root) {
        Some(Layout::Chexpert)
    } else if root.join(CSV_FILE).is_file() {
        Some(Layout::Csv(PathBuf::from(CSV_FILE)))
    } else {
        None
    }
}

/// Reads the data set in `root` (its layout detected unless given).
pub fn read(root: &Path, layout: Option<Layout>) -> Result<FindingSet> {
    let layout = match layout.or_else(|| detect(root)) {
        Some(l) => l,
        None => {
            return Err(Error::invalid(
                "data set",
                format!(
                    "{}: not a multi-label data set (expected NIH's Data_Entry_2017.csv, \
                     CheXpert's train.csv, MIMIC-CXR-JPG's mimic-cxr-2.0.0-chexpert.csv or \
                     {CSV_FILE})",
                    crate::files::shown(root)
                ),
            ))
        }
    };
    let mut set = match &layout {
        Layout::Nih => nih::read(root)?,
        Layout::Chexpert => chexpert::read(root)?,
        Layout::Mimic => mimic::read(root)?,
        Layout::Csv(f) => generic::read(root, f)?,
    };
    set.layout = layout;
    Ok(set)
}

impl FindingSet {
    /// Keeps the images whose view is one of `views` (case-insensitive, e.g. `PA`, `AP`: the
    /// frontal images most papers use); images without a view are left out too. Returns how
    /// many were left out, and notes it.
    pub fn keep_views(&mut self, views: &[String]) -> usize {
        let want: Vec<String> = views
            .iter()
            .map(|v| v.trim().to_ascii_uppercase())
            .collect();
        let before = self.images.len();
        self.images.retain(|im| {
            im.view
                .as_deref()
                .is_some_and(|v| want.contains(&v.trim().to_ascii_uppercase()))
        });
        let dropped = before - self.images.len();
        if dropped > 0 {
            self.notes.push(format!(
                "{dropped} images left out: their view is not one of {} (--views)",
                want.join(", ")
            ));
        }
        dropped
    }

    /// Per label, how the images of `split` (all, with None) mark it.
    pub fn counts(&self, split: Option<SplitKind>) -> Vec<MarkCounts> {
        let mut c = vec![MarkCounts::default(); self.labels.len()];
        for im in self
            .images
            .iter()
            .filter(|im| split.is_none() || im.split == split)
        {
            for (k, m) in c.iter_mut().zip(&im.marks) {
                match m {
                    Mark::Positive => k.positive += 1,
                    Mark::Negative => k.negative += 1,
                    Mark::Uncertain => k.uncertain += 1,
                    Mark::Blank => k.blank += 1,
                }
            }
        }
        c
    }
}

/// How the images mark one label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarkCounts {
    /// Marked present.
    pub positive: usize,
    /// Marked absent.
    pub negative: usize,
    /// Marked uncertain.
    pub uncertain: usize,
    /// Not mentioned.
    pub blank: usize,
}

/// What an uncertain mark becomes (Irvin et al. 2019, CheXpert: U-Ignore, U-Zeros, U-Ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Uncertain {
    /// Left out of the loss and the metrics (masked).
    #[default]
    Ignore,
    /// Negative.
    Zeros,
    /// Positive.
    Ones,
}

impl Uncertain {
    /// Its name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Uncertain::Ignore => "ignore",
            Uncertain::Zeros => "zeros",
            Uncertain::Ones => "ones",
        }
    }
}

impl FromStr for Uncertain {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ignore" | "u-ignore" => Ok(Uncertain::Ignore),
            "zeros" | "u-zeros" => Ok(Uncertain::Zeros),
            "ones" | "u-ones" => Ok(Uncertain::Ones),
            other => Err(format!(
                "uncertain-label policy {other:?}: expected ignore, zeros or ones"
            )),
        }
    }
}

/// The uncertain-label policy of every label: one for all, and any per label. A blank (not
/// mentioned) counts as negative, the CheXpert convention.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policies {
    /// For labels not named in `per_label`.
    pub default: Uncertain,
    /// Per label name.
    pub per_label: BTreeMap<String, Uncertain>,
}

impl Policies {
    /// `label`'s policy.
    pub fn of(&self, label: &str) -> Uncertain {
        self.per_label.get(label).copied().unwrap_or(self.default)
    }

    /// The target and mask weight of `mark` for `label`: positive 1, negative and blank 0,
    /// uncertain by the policy (masked out with `ignore`).
    pub fn target(&self, label: &str, mark: Mark) -> (f32, f32) {
        match mark {
            Mark::Positive => (1.0, 1.0),
            Mark::Negative | Mark::Blank => (0.0, 1.0),
            Mark::Uncertain => match self.of(label) {
                Uncertain::Ignore => (0.0, 0.0),
                Uncertain::Zeros => (0.0, 1.0),
                Uncertain::Ones => (1.0, 1.0),
            },
        }
    }

    /// Targets and mask of an image of `set`.
    pub fn targets(&self, labels: &[String], marks: &[Mark]) -> (Vec<f32>, Vec<f32>) {
        labels
            .iter()
            .zip(marks)
            .map(|(l, m)| self.target(l, *m))
            .unzip()
    }

    /// The finding codes of an image of a set with `labels`.
    pub fn codes(&self, labels: &[String], marks: &[Mark]) -> Vec<u8> {
        labels
            .iter()
            .zip(marks)
            .map(|(l, m)| match self.target(l, *m) {
                (_, 0.0) => NOT_COUNTED,
                (t, _) if t > 0.5 => PRESENT,
                _ => ABSENT,
            })
            .collect()
    }

    /// Checks that every label named has a policy for a label of `labels`.
    pub fn check(&self, labels: &[String]) -> Result<()> {
        for l in self.per_label.keys() {
            if !labels.contains(l) {
                return Err(Error::invalid(
                    "uncertain-label policy",
                    format!(
                        "no label {l:?} in this data set (labels: {})",
                        labels.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl FromStr for Policies {
    type Err = String;
    /// `ones`, or `ignore,Edema=ones,Atelectasis=ones` (a default first, then per label).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut p = Policies::default();
        for (i, part) in s.split(',').map(str::trim).enumerate() {
            match part.split_once('=') {
                Some((label, policy)) => {
                    let label = label.trim();
                    if label.is_empty() {
                        return Err(format!("{part:?}: a label name before '='"));
                    }
                    p.per_label.insert(label.to_string(), policy.parse()?);
                }
                None if i == 0 => p.default = part.parse()?,
                None => {
                    return Err(format!(
                        "{part:?}: after the first, each policy is LABEL=POLICY"
                    ))
                }
            }
        }
        Ok(p)
    }
}

impl fmt::Display for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default.name())?;
        for (l, p) in &self.per_label {
            write!(f, ",{l}={}", p.name())?;
        }
        Ok(())
    }
}

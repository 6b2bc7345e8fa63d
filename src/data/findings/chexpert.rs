//! CheXpert (Irvin et al. 2019) as published: `train.csv` and `valid.csv` in the data folder
//! (`CheXpert-v1.0` or `CheXpert-v1.0-small`) with the columns `Path` (starting with the
//! folder's own name: `CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg`),
//! `Sex`, `Age`, `Frontal/Lateral`, `AP/PA` and one column an observation holding `1.0`,
//! `0.0`, `-1.0` (uncertain) or blank (not mentioned). The patient is the path's
//! `patientNNNNN`; the view `AP`/`PA` for a frontal image (`AP/PA`), `LATERAL` for a lateral
//! one. `valid.csv` is the official validation split; the test set is not published.
use super::table::Table;
use super::{FindingImage, FindingSet, Layout};
use crate::data::split::SplitKind;
use crate::files::shown;
use crate::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// The 14 observations, in the files' order (MIMIC-CXR's labels are the same 14).
pub const OBSERVATIONS: [&str; 14] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
];

/// The five labels of the CheXpert competition.
pub const COMPETITION: [&str; 5] = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Pleural Effusion",
];

/// Columns that are not observations.
const NOT_LABELS: [&str; 5] = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"];

/// Whether `root` holds CheXpert's `train.csv` (told by its `Path` and `Frontal/Lateral`
/// columns).
pub fn is_chexpert(root: &Path) -> bool {
    Table::open(&root.join("train.csv"))
        .is_ok_and(|t| t.column("Path").is_ok() && t.column("Frontal/Lateral").is_ok())
}

/// The image a `Path` cell names: relative to the data folder's parent when it starts with
/// the folder's name (as published; `.` and links resolved to tell it), else to the data
/// folder.
pub fn resolve(root: &Path, name: Option<&std::ffi::OsStr>, cell: &str) -> Option<PathBuf> {
    let p = Path::new(cell);
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut parts = p.components();
    let first = parts.next()?;
    if name == Some(first.as_os_str()) {
        Some(root.join(parts.as_path()))
    } else {
        Some(root.join(p))
    }
}

/// The `patientNNNNN` part of a path.
fn patient(cell: &str) -> Option<&str> {
    cell.split('/').find(|s| {
        s.strip_prefix("patient")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Reads `train.csv` and, if present, `valid.csv`.
pub fn read(root: &Path) -> Result<FindingSet> {
    let mut set = FindingSet {
        root: root.to_path_buf(),
        layout: Layout::Chexpert,
        labels: Vec::new(),
        images: Vec::new(),
        missing: Vec::new(),
        notes: Vec::new(),
    };
    for (name, split) in [
        ("train.csv", SplitKind::Train),
        ("valid.csv", SplitKind::Valid),
    ] {
        let file = root.join(name);
        if split == SplitKind::Valid && !file.is_file() {
            set.notes
                .push("no valid.csv: no official validation split".into());
            continue;
        }
        read_file(root, &file, split, &mut set)?;
    }
    Ok(set)
}

fn read_file(root: &Path, file: &Path, split: SplitKind, set: &mut FindingSet) -> Result<()> {
    let mut t = Table::open(file)?;
    let (c_path, c_fl, c_appa) = (
        t.column("Path")?,
        t.column("Frontal/Lateral")?,
        t.column("AP/PA")?,
    );
    let label_cols: Vec<(usize, String)> = t
        .head
        .iter()
        .enumerate()
        .filter(|(_, h)| !NOT_LABELS.contains(&h.as_str()))
        .map(|(i, h)| (i, h.clone()))
        .collect();
    let names: Vec<String> = label_cols.iter().map(|(_, h)| h.clone()).collect();
    if set.labels.is_empty() {
        set.labels = names;
    } else if set.labels != names {
        return Err(Error::invalid(
            "CSV",
            format!(
                "{}: observation columns {} differ from train.csv's {}",
                shown(file),
                names.join(", "),
                set.labels.join(", ")
            ),
        ));
    }
    let err =
        |line: usize, msg: String| Error::invalid("CSV", format!("{}:{line}: {msg}", shown(file)));
    let real = root.canonicalize().ok();
    let name = real.as_deref().unwrap_or(root).file_name();
    t.each(|line, rec| {
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        let cell = get(c_path);
        let path = resolve(root, name, cell)
            .ok_or_else(|| err(line, format!("Path {cell:?} is not a relative path")))?;
        let patient = patient(cell)
            .ok_or_else(|| err(line, format!("no patientNNNNN in Path {cell:?}")))?
            .to_string();
        let marks = super::table::marks(rec, &label_cols, |m| err(line, m))?;
        let view = match (get(c_fl), get(c_appa)) {
            ("Lateral", _) => Some("LATERAL".to_string()),
            (_, v) if !v.is_empty() => Some(v.to_ascii_uppercase()),
            (f, _) if !f.is_empty() => Some(f.to_ascii_uppercase()),
            _ => None,
        };
        if path.is_file() {
            set.images.push(FindingImage {
                path,
                patient,
                view,
                split: Some(split),
                marks,
            });
        } else {
            set.missing.push(path);
        }
        Ok(())
    })
}

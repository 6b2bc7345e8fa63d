//! MIMIC-CXR-JPG (Johnson et al. 2019) as published: `mimic-cxr-2.0.0-chexpert.csv` (labels
//! per study: `subject_id`, `study_id`, then CheXpert's 14 observations as 1.0, 0.0, -1.0 or
//! blank), `mimic-cxr-2.0.0-metadata.csv` (one row an image: `dicom_id`, `subject_id`,
//! `study_id`, `ViewPosition`) and `mimic-cxr-2.0.0-split.csv` (`dicom_id`, `study_id`,
//! `subject_id`, `split` = train, validate or test), each also as `.csv.gz`; the images at
//! `files/pNN/p<subject_id>/s<study_id>/<dicom_id>.jpg`, `NN` the subject's first two
//! digits. The patient is the subject.
use super::table::Table;
use super::{FindingImage, FindingSet, Layout, Mark};
use crate::data::split::SplitKind;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The labels table's name (without `.csv` / `.csv.gz`).
pub const LABELS: &str = "mimic-cxr-2.0.0-chexpert";
/// The metadata table's name.
pub const METADATA: &str = "mimic-cxr-2.0.0-metadata";
/// The split table's name.
pub const SPLIT: &str = "mimic-cxr-2.0.0-split";

/// `root/<name>.csv`, else `root/<name>.csv.gz`, if either exists.
pub fn table_file(root: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.csv"), format!("{name}.csv.gz")]
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.is_file())
}

fn need(root: &Path, name: &str) -> Result<PathBuf> {
    table_file(root, name).ok_or_else(|| {
        Error::invalid(
            "data set",
            format!(
                "{}: no {name}.csv or {name}.csv.gz",
                crate::files::shown(root)
            ),
        )
    })
}

/// An image's path from its ids.
pub fn image_path(root: &Path, subject: &str, study: &str, dicom: &str) -> PathBuf {
    root.join("files")
        .join(format!("p{}", &subject[..subject.len().min(2)]))
        .join(format!("p{subject}"))
        .join(format!("s{study}"))
        .join(format!("{dicom}.jpg"))
}

/// Reads the three tables.
pub fn read(root: &Path) -> Result<FindingSet> {
    // Labels per study.
    let mut t = Table::open(&need(root, LABELS)?)?;
    let (c_sub, c_study) = (t.column("subject_id")?, t.column("study_id")?);
    let label_cols: Vec<(usize, String)> = t
        .head
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != c_sub && *i != c_study)
        .map(|(i, h)| (i, h.clone()))
        .collect();
    let labels: Vec<String> = label_cols.iter().map(|(_, h)| h.clone()).collect();
    let mut by_study: HashMap<String, Vec<Mark>> = HashMap::new();
    let file = need(root, LABELS)?;
    let err = |f: &Path, line: usize, msg: String| {
        Error::invalid("CSV", format!("{}:{line}: {msg}", crate::files::shown(f)))
    };
    t.each(|line, rec| {
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        let marks = super::table::marks(rec, &label_cols, |m| err(&file, line, m))?;
        by_study.insert(get(c_study).to_string(), marks);
        Ok(())
    })?;
    // The split of each image.
    let mut s = Table::open(&need(root, SPLIT)?)?;
    let (c_dicom, c_split) = (s.column("dicom_id")?, s.column("split")?);
    let split_file = need(root, SPLIT)?;
    let mut split_of: HashMap<String, SplitKind> = HashMap::new();
    s.each(|line, rec| {
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        let kind = match get(c_split) {
            "train" => SplitKind::Train,
            "validate" => SplitKind::Valid,
            "test" => SplitKind::Test,
            other => {
                return Err(err(
                    &split_file,
                    line,
                    format!("split {other:?} (expected train, validate or test)"),
                ))
            }
        };
        split_of.insert(get(c_dicom).to_string(), kind);
        Ok(())
    })?;
    // One image a metadata row.
    let meta_file = need(root, METADATA)?;
    let mut m = Table::open(&meta_file)?;
    let (c_dicom, c_sub, c_study, c_view) = (
        m.column("dicom_id")?,
        m.column("subject_id")?,
        m.column("study_id")?,
        m.column("ViewPosition")?,
    );
    let (mut images, mut missing) = (Vec::new(), Vec::new());
    let (mut unlabelled, mut unsplit) = (0usize, 0usize);
    m.each(|line, rec| {
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        let (dicom, subject, study) = (get(c_dicom), get(c_sub), get(c_study));
        let ok =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok(dicom) || !ok(subject) || !ok(study) {
            return Err(err(
                &meta_file,
                line,
                format!("ids {dicom:?}, {subject:?}, {study:?} are not plain ids"),
            ));
        }
        let Some(marks) = by_study.get(study) else {
            unlabelled += 1;
            return Ok(());
        };
        let Some(split) = split_of.get(dicom).copied() else {
            unsplit += 1;
            return Ok(());
        };
        let path = image_path(root, subject, study, dicom);
        if path.is_file() {
            images.push(FindingImage {
                path,
                patient: subject.to_string(),
                view: Some(get(c_view).to_string()).filter(|v| !v.is_empty()),
                split: Some(split),
                marks: marks.clone(),
            });
        } else {
            missing.push(path);
        }
        Ok(())
    })?;
    let mut notes = Vec::new();
    if unlabelled > 0 {
        notes.push(format!(
            "{unlabelled} images left out: their study has no row in {LABELS}"
        ));
    }
    if unsplit > 0 {
        notes.push(format!("{unsplit} images left out: not in {SPLIT}"));
    }
    Ok(FindingSet {
        root: root.to_path_buf(),
        layout: Layout::Mimic,
        labels,
        images,
        missing,
        notes,
    })
}

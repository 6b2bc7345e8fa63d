//! NIH ChestX-ray14 (Wang et al. 2017) as published: `Data_Entry_2017.csv` (or
//! `Data_Entry_2017_v2020.csv`) with the columns `Image Index`, `Finding Labels` (findings
//! joined by `|`, or `No Finding`), `Patient ID` and `View Position` (`PA` or `AP`); the
//! official `train_val_list.txt` and `test_list.txt` (one image name a line); the images in
//! `images/` or in the release's `images_001/images/` ... `images_012/images/`.
use super::table::Table;
use super::{FindingImage, FindingSet, Layout, Mark};
use crate::data::split::SplitKind;
use crate::files::shown;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The 14 findings, in the order of the NIH paper and torchxrayvision.
pub const FINDINGS: [&str; 14] = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
];

/// What `Finding Labels` holds for an image with none of them.
pub const NO_FINDING: &str = "No Finding";

/// The entries file in `root`, if any.
pub fn entry_file(root: &Path) -> Option<PathBuf> {
    ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"]
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.is_file())
}

/// Every image file under `root/images*/` and `root/images*/images/`, by file name.
fn image_index(root: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut index = HashMap::new();
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let p = e.map_err(|e| Error::io(root, e))?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("images") && p.is_dir() {
            dirs.push(p.join("images"));
            dirs.push(p);
        }
    }
    for d in dirs.into_iter().filter(|d| d.is_dir()) {
        for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let p = e.map_err(|e| Error::io(&d, e))?.path();
            if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                if p.is_file() {
                    index.entry(n.to_string()).or_insert(p);
                }
            }
        }
    }
    Ok(index)
}

/// The image names of an official list, if the file exists.
fn list(root: &Path, name: &str) -> Result<Option<Vec<String>>> {
    let p = root.join(name);
    if !p.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
    ))
}

/// Reads the data set in `root`.
pub fn read(root: &Path) -> Result<FindingSet> {
    let file = entry_file(root).ok_or_else(|| {
        Error::invalid(
            "data set",
            format!("{}: no Data_Entry_2017.csv", shown(root)),
        )
    })?;
    let mut t = Table::open(&file)?;
    let (c_img, c_lab, c_pat, c_view) = (
        t.column("Image Index")?,
        t.column("Finding Labels")?,
        t.column("Patient ID")?,
        t.column("View Position")?,
    );
    let index = image_index(root)?;
    let mut split_of: HashMap<String, SplitKind> = HashMap::new();
    let mut notes = Vec::new();
    match (
        list(root, "train_val_list.txt")?,
        list(root, "test_list.txt")?,
    ) {
        (Some(tv), Some(te)) => {
            split_of.extend(tv.into_iter().map(|n| (n, SplitKind::Train)));
            for n in te {
                if split_of.insert(n.clone(), SplitKind::Test) == Some(SplitKind::Train) {
                    return Err(Error::invalid(
                        "data set",
                        format!("{n} is in both train_val_list.txt and test_list.txt"),
                    ));
                }
            }
        }
        _ => notes.push(
            "no train_val_list.txt and test_list.txt: the images have no official split".into(),
        ),
    }
    let labels: Vec<String> = FINDINGS.iter().map(|s| s.to_string()).collect();
    let (mut images, mut missing) = (Vec::new(), Vec::new());
    let mut unlisted = 0usize;
    let lists = !split_of.is_empty();
    t.each(|line, rec| {
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        let name = get(c_img);
        if name.is_empty() {
            return Err(t_error(&file, line, "empty Image Index"));
        }
        let mut marks = vec![Mark::Negative; FINDINGS.len()];
        for f in get(c_lab).split('|').map(str::trim) {
            if f == NO_FINDING {
                continue;
            }
            match FINDINGS.iter().position(|k| *k == f) {
                Some(i) => marks[i] = Mark::Positive,
                None => {
                    return Err(t_error(
                        &file,
                        line,
                        &format!(
                            "unknown finding {f:?} in {:?} (expected {} or {NO_FINDING:?})",
                            get(c_lab),
                            FINDINGS.join(", ")
                        ),
                    ))
                }
            }
        }
        let split = split_of.get(name).copied();
        if lists && split.is_none() {
            unlisted += 1;
            return Ok(());
        }
        match index.get(name) {
            Some(p) => images.push(FindingImage {
                path: p.clone(),
                patient: get(c_pat).to_string(),
                view: Some(get(c_view).to_string()).filter(|v| !v.is_empty()),
                split,
                marks,
            }),
            None => missing.push(root.join("images").join(name)),
        }
        Ok(())
    })?;
    if unlisted > 0 {
        notes.push(format!(
            "{unlisted} entries in neither train_val_list.txt nor test_list.txt left out"
        ));
    }
    Ok(FindingSet {
        root: root.to_path_buf(),
        layout: Layout::Nih,
        labels,
        images,
        missing,
        notes,
    })
}

fn t_error(file: &Path, line: usize, msg: &str) -> Error {
    Error::invalid("CSV", format!("{}:{line}: {msg}", shown(file)))
}

//! One folder per class (`train/<class>/`, `test/<class>/`, `valid/<class>/`), and Kermany's
//! pediatric set (`NORMAL` and `PNEUMONIA` folders, bacteria or virus in the file name).
use super::Row;
use crate::files::path_text;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Image file extensions picked up from class folders.
pub const IMAGE_EXTENSIONS: [&str; 10] = [
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm", "dicom", "dic", "ima",
];

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// The class folders of `dir`, sorted.
fn class_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The image files of one class folder, sorted; links are kept whatever they lead to (a
/// broken one is reported later, not dropped here).
fn images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            (e.path().is_file() || e.file_type().is_ok_and(|t| t.is_symlink()))
                && has_image_extension(&e.path())
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| path_text(Path::new(n)))
        .unwrap_or_default()
}

/// Rows of `dir/<class>/*`: the label is the folder's name; no patient information exists,
/// so each image is its own patient (`<class>/<stem>`).
pub fn read_class_folders(dir: &Path) -> Result<Vec<Row>> {
    let dirs = class_dirs(dir)?;
    if dirs.is_empty() {
        return Err(Error::invalid(
            "dataset",
            format!("{} has no class folders", crate::files::shown(dir)),
        ));
    }
    let mut rows = Vec::new();
    for d in dirs {
        let class = name_of(&d);
        for f in images(&d)? {
            let stem = f
                .file_stem()
                .map(|s| path_text(Path::new(s)))
                .unwrap_or_default();
            rows.push(Row {
                patient: format!("{class}/{stem}"),
                label: class.clone(),
                path: f,
                source: None,
            });
        }
    }
    Ok(rows)
}

/// Whether `dir` is a folder of classes alone: two or more folders holding images and none
/// named like a split (train, valid, val, validation, test).
pub fn is_classes_only(dir: &Path) -> bool {
    let Ok(dirs) = class_dirs(dir) else {
        return false;
    };
    let split_name = |d: &PathBuf| {
        matches!(
            name_of(d).to_ascii_lowercase().as_str(),
            "train" | "valid" | "val" | "validation" | "test"
        )
    };
    !dirs.iter().any(split_name)
        && dirs
            .iter()
            .filter(|d| images(d).is_ok_and(|f| !f.is_empty()))
            .count()
            >= 2
}

/// Whether `dir` holds exactly Kermany's two class folders.
fn kermany_dir(dir: &Path) -> bool {
    let Ok(dirs) = class_dirs(dir) else {
        return false;
    };
    let mut names: Vec<String> = dirs.iter().map(|d| name_of(d).to_lowercase()).collect();
    names.sort();
    names == ["normal", "pneumonia"]
}

/// Whether `root` is laid out as Kermany's set: `train/` and `test/` with `NORMAL` and
/// `PNEUMONIA` folders (and perhaps `val/`).
pub fn is_kermany(root: &Path) -> bool {
    kermany_dir(&root.join("train")) && kermany_dir(&root.join("test"))
}

/// The patient of a Kermany file name: `person1_virus_12` -> `person1`,
/// `NORMAL2-IM-0173-0001` -> `NORMAL2-IM-0173`, `IM-0001-0001` -> `IM-0001`.
pub fn kermany_patient(stem: &str) -> String {
    if let Some((p, _)) = stem.split_once('_') {
        return p.to_string();
    }
    match stem.find("IM-") {
        Some(i) if stem.len() >= i + 7 => stem[..i + 7].to_string(),
        _ => stem.to_string(),
    }
}

/// Rows of a Kermany split folder. With `split_pneumonia`, a PNEUMONIA image whose name
/// says `bacteria` is Bacterial and one that says `virus` is Viral (one that says neither or
/// both is an error naming it); otherwise it is "Pneumonia".
pub fn read_kermany(dir: &Path, split_pneumonia: bool) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for d in class_dirs(dir)? {
        let class = name_of(&d);
        let pneumonia = class.eq_ignore_ascii_case("pneumonia");
        for f in images(&d)? {
            let stem = f
                .file_stem()
                .map(|s| path_text(Path::new(s)))
                .unwrap_or_default();
            let label = if !pneumonia {
                "Normal".to_string()
            } else if !split_pneumonia {
                "Pneumonia".to_string()
            } else {
                let l = stem.to_lowercase();
                let says = |w: &str| {
                    format!(
                        "{}: a PNEUMONIA image whose name says {w}: it cannot be split into \
                         Bacterial or Viral (rename it, or train without --split-pneumonia)",
                        crate::files::shown(&f)
                    )
                };
                match (l.contains("bacteria"), l.contains("virus")) {
                    (true, false) => "Bacterial".to_string(),
                    (false, true) => "Viral".to_string(),
                    (true, true) => {
                        return Err(Error::invalid("dataset", says("both bacteria and virus")))
                    }
                    (false, false) => {
                        return Err(Error::invalid(
                            "dataset",
                            says("neither bacteria nor virus"),
                        ))
                    }
                }
            };
            rows.push(Row {
                patient: kermany_patient(&stem),
                label,
                path: f,
                source: Some("kermany".into()),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kermany_patients() {
        assert_eq!(kermany_patient("person1_virus_12"), "person1");
        assert_eq!(kermany_patient("person100_bacteria_475"), "person100");
        assert_eq!(kermany_patient("IM-0001-0001"), "IM-0001");
        assert_eq!(
            kermany_patient("NORMAL2-IM-0173-0001-0001"),
            "NORMAL2-IM-0173"
        );
    }
}

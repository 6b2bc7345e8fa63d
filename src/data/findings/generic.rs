//! A multi-label data set in one CSV file: a `path` column (relative to the data folder),
//! optional `patient_id`, `view` and `split` (`train`, `valid`/`val`/`validation`, `test`)
//! columns, and the findings either as one `labels` column (names joined by `|`, empty or
//! `No Finding` for none) or as one column a label holding 1, 0, -1 (uncertain) or blank.
use super::table::Table;
use super::{FindingImage, FindingSet, Layout, Mark};
use crate::data::split::SplitKind;
use crate::files::shown;
use crate::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Component, Path};

/// Columns that are not labels.
const NOT_LABELS: [&str; 5] = ["path", "patient_id", "view", "split", "source"];

/// Reads `root/file`.
pub fn read(root: &Path, file: &Path) -> Result<FindingSet> {
    let full = root.join(file);
    let mut t = Table::open(&full)?;
    let c_path = t.column("path")?;
    let col = |n: &str| t.head.iter().position(|h| h == n);
    let (c_pat, c_view, c_split) = (col("patient_id"), col("view"), col("split"));
    let c_labels = col("labels");
    let label_cols: Vec<(usize, String)> = t
        .head
        .iter()
        .enumerate()
        .filter(|(_, h)| !NOT_LABELS.contains(&h.as_str()) && h.as_str() != "labels")
        .map(|(i, h)| (i, h.clone()))
        .collect();
    if c_labels.is_some() != label_cols.is_empty() {
        return Err(Error::invalid(
            "CSV",
            format!(
                "{}: give the findings either in one \"labels\" column or in one column a \
                 label (columns: {})",
                shown(&full),
                t.head.join(", ")
            ),
        ));
    }
    let err =
        |line: usize, msg: String| Error::invalid("CSV", format!("{}:{line}: {msg}", shown(&full)));
    // Rows first: with a "labels" column the label set is known only at the end.
    let mut rows: Vec<(FindingImage, Vec<String>)> = Vec::new();
    t.each(|line, rec| {
        let get = |c: usize| rec.get(c).unwrap_or("").trim();
        let rel = get(c_path);
        let p = Path::new(rel);
        if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(err(
                line,
                format!("path {rel:?} is not a path inside the data folder"),
            ));
        }
        let split = match c_split.map(get).unwrap_or("") {
            "" => None,
            "train" => Some(SplitKind::Train),
            "valid" | "val" | "validation" => Some(SplitKind::Valid),
            "test" => Some(SplitKind::Test),
            other => {
                return Err(err(
                    line,
                    format!("split {other:?} (expected train, valid or test)"),
                ))
            }
        };
        let patient = c_pat
            .map(get)
            .filter(|s| !s.is_empty())
            .unwrap_or(rel)
            .to_string();
        let view = c_view
            .map(get)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let (names, marks) = match c_labels {
            Some(c) => (
                get(c)
                    .split('|')
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != super::nih::NO_FINDING)
                    .map(str::to_string)
                    .collect(),
                Vec::new(),
            ),
            None => {
                let marks = super::table::marks(rec, &label_cols, |m| err(line, m))?;
                (Vec::new(), marks)
            }
        };
        let image = FindingImage {
            path: root.join(p),
            patient,
            view,
            split,
            marks,
        };
        rows.push((image, names));
        Ok(())
    })?;
    let labels: Vec<String> = match c_labels {
        Some(_) => rows
            .iter()
            .flat_map(|r| r.1.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        None => label_cols.into_iter().map(|(_, h)| h).collect(),
    };
    let (mut images, mut missing) = (Vec::new(), Vec::new());
    for (mut image, names) in rows {
        if c_labels.is_some() {
            image.marks = labels
                .iter()
                .map(|l| {
                    if names.contains(l) {
                        Mark::Positive
                    } else {
                        Mark::Negative
                    }
                })
                .collect();
        }
        if image.path.is_file() {
            images.push(image);
        } else {
            missing.push(image.path);
        }
    }
    Ok(FindingSet {
        root: root.to_path_buf(),
        layout: Layout::Csv(file.to_path_buf()),
        labels,
        images,
        missing,
        notes: Vec::new(),
    })
}

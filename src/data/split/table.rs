//! A data set described by one CSV file: `path,label[,patient_id][,source][,split]` (the
//! column names can be changed in `dataset.toml`), paths relative to the CSV's folder, the
//! split `train`, `valid` (or `val`, `validation`) or `test`.
use super::{Row, SplitKind};
use crate::files::shown;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// Which CSV columns hold what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvColumns {
    /// The CSV file, relative to the data folder (default: the folder's only `.csv`).
    pub file: Option<PathBuf>,
    /// Image path column.
    pub path: String,
    /// Label column.
    pub label: String,
    /// Patient column (optional in the file: each image is then its own patient).
    pub patient: String,
    /// Source column (optional).
    pub source: String,
    /// Split column (optional: every row is then a training image).
    pub split: String,
}

impl Default for CsvColumns {
    fn default() -> Self {
        Self {
            file: None,
            path: "path".into(),
            label: "label".into(),
            patient: "patient_id".into(),
            source: "source".into(),
            split: "split".into(),
        }
    }
}

/// The CSV file `named` (by `origin`: "dataset.toml's [csv] file" or "--data-csv"), which
/// must be a file inside the data folder `root` unless `allow_outside`, as images must.
pub fn named_csv(root: &Path, named: &Path, origin: &str, allow_outside: bool) -> Result<PathBuf> {
    let p = root.join(named);
    let bad = |why: String| {
        Error::invalid(
            "CSV",
            format!("{origin} {:?}: {why}", crate::files::path_text(named)),
        )
    };
    let real = p
        .canonicalize()
        .map_err(|e| bad(format!("cannot be opened in {} ({e})", shown(root))))?;
    let root_real = root.canonicalize().map_err(|e| Error::io(root, e))?;
    if !real.starts_with(&root_real) && !allow_outside {
        return Err(bad(format!(
            "outside the data folder {} (allow with --allow-outside-links)",
            shown(root)
        )));
    }
    if !real.is_file() {
        return Err(bad("not a file".into()));
    }
    Ok(p)
}

/// The CSV file of a data folder, if it has one: the only `.csv` in it.
pub fn find_csv(root: &Path) -> Option<PathBuf> {
    let mut csvs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
        .collect();
    (csvs.len() == 1).then(|| csvs.remove(0))
}

fn split_of(v: &str) -> Option<SplitKind> {
    match v.trim().to_ascii_lowercase().as_str() {
        "train" | "training" => Some(SplitKind::Train),
        "valid" | "val" | "validation" => Some(SplitKind::Valid),
        "test" | "testing" => Some(SplitKind::Test),
        _ => None,
    }
}

/// Rows of the CSV at `file`, with their split.
pub fn read_csv(file: &Path, cols: &CsvColumns) -> Result<Vec<(SplitKind, Row)>> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut rd = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_path(file)
        .map_err(|e| Error::invalid("CSV", format!("{}: {e}", shown(file))))?;
    let head: Vec<String> = rd
        .headers()
        .map_err(|e| Error::invalid("CSV", format!("{}: {e}", shown(file))))?
        .iter()
        .map(str::to_string)
        .collect();
    let col = |name: &str| head.iter().position(|h| h == name);
    let need = |name: &str| {
        col(name).ok_or_else(|| {
            Error::invalid(
                "CSV",
                format!(
                    "{}: no column {name:?} (columns: {}); name the columns in dataset.toml's \
                     [csv] table",
                    shown(file),
                    head.join(", ")
                ),
            )
        })
    };
    let (p_col, l_col) = (need(&cols.path)?, need(&cols.label)?);
    let (pat_col, src_col, split_col) = (col(&cols.patient), col(&cols.source), col(&cols.split));
    let mut out = Vec::new();
    // Each path's first line, label and split: a path listed twice is an error unless it is
    // the same image in two splits (leakage, which `data check` reports).
    let mut first: std::collections::HashMap<PathBuf, (usize, String, SplitKind)> =
        std::collections::HashMap::new();
    for (i, rec) in rd.records().enumerate() {
        let line = i + 2;
        let err = |msg: String| Error::invalid("CSV", format!("{}:{line}: {msg}", shown(file)));
        let rec = rec.map_err(|e| err(e.to_string()))?;
        let get = |c: usize| rec.get(c).unwrap_or("").to_string();
        let rel = get(p_col);
        let p = Path::new(&rel);
        if rel.is_empty()
            || !p
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(err(format!("path {rel:?} leaves the data folder")));
        }
        let label = get(l_col);
        if label.is_empty() {
            return Err(err("an empty label".into()));
        }
        let kind = match split_col {
            Some(c) => split_of(&get(c))
                .ok_or_else(|| err(format!("split {:?}: expected train, valid or test", get(c))))?,
            None => SplitKind::Train,
        };
        let key: PathBuf = p
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        let canon = super::labels::canonical(&label);
        if let Some((n, l, k)) = first.get(&key) {
            if *l != canon {
                return Err(err(format!(
                    "{rel:?} is labelled {label:?} here but {l:?} on line {n}: one image, one \
                     label"
                )));
            }
            if *k == kind {
                return Err(err(format!(
                    "{rel:?} is listed again (first on line {n}); list each image once"
                )));
            }
        } else {
            first.insert(key, (line, canon, kind));
        }
        let patient = pat_col
            .map(get)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| rel.clone());
        out.push((
            kind,
            Row {
                path: dir.join(p),
                label,
                patient,
                source: src_col.map(get).filter(|s| !s.is_empty()),
            },
        ));
    }
    Ok(out)
}

//! COVID-Net split files: one image a line, `patient_id filename label [source]`, separated
//! by spaces or tabs; blank lines and `#` comments ignored; any labels.
use super::Row;
use crate::files::shown;
use crate::{Error, Result};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// A relative path without `..`, root or prefix components, or None.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    let ok = p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (ok && !name.is_empty()).then(|| p.to_path_buf())
}

/// Parses split-file text. `image_dir` is where its filenames live; `path` names the file in
/// errors. Files that do not exist are returned too (the caller reports them as missing).
pub fn parse_split_text(text: &str, path: &Path, image_dir: &Path) -> Result<Vec<Row>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |msg: String| Error::invalid("split file", format!("{}:{n}: {msg}", shown(path)));
        let cols: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&cols.len()) {
            return Err(err(format!(
                "expected 'patient_id filename label [source]', found {} column(s): {line:?}",
                cols.len()
            )));
        }
        let rel = safe_relative(cols[1])
            .ok_or_else(|| err(format!("file name {:?} leaves the image folder", cols[1])))?;
        if !seen.insert(rel.clone()) {
            return Err(err(format!("{:?} is listed twice", cols[1])));
        }
        rows.push(Row {
            path: image_dir.join(&rel),
            label: cols[2].to_string(),
            patient: cols[0].to_string(),
            source: cols.get(3).map(|s| s.to_string()),
        });
    }
    Ok(rows)
}

/// Reads and parses a split file.
pub fn read_split_file(path: &Path, image_dir: &Path) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::invalid(
            "split file",
            format!("{}: not UTF-8 text: {e}", shown(path)),
        )
    })?;
    parse_split_text(&text, path, image_dir)
}

/// The split files of a folder: (train, valid, test) by their names (`train_*.txt`,
/// `val_*.txt`/`valid_*.txt`, `test_*.txt`). Where several match (COVIDx ships
/// `train_extra*.txt` beside its list) the one naming COVIDx wins, else the shortest name.
pub fn find_split_files(root: &Path) -> Result<Option<(PathBuf, Option<PathBuf>, PathBuf)>> {
    let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for e in std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_lowercase();
        if !name.ends_with(".txt") || !e.path().is_file() {
            continue;
        }
        let stem = name.trim_end_matches(".txt");
        let is = |w: &str| stem == w || stem.starts_with(&format!("{w}_"));
        if is("train") {
            train.push(e.path());
        } else if is("test") {
            test.push(e.path());
        } else if is("valid") || is("val") || is("validation") {
            valid.push(e.path());
        }
    }
    let pick = |mut v: Vec<PathBuf>| -> Option<PathBuf> {
        v.sort();
        v.iter()
            .find(|p| p.to_string_lossy().to_lowercase().contains("covidx"))
            .or_else(|| v.iter().min_by_key(|p| p.as_os_str().len()))
            .cloned()
    };
    Ok(match (pick(train), pick(test)) {
        (Some(tr), Some(te)) => Some((tr, pick(valid), te)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_three_and_four_columns_crlf_bom_tabs_and_mistakes() {
        let dir = Path::new("/data/train");
        let text =
            "\u{feff}1 a.png normal cohen\r\n\n# comment\n2\tb.jpg\tCOVID-19\r\n3 c.png positive\n";
        let rows = parse_split_text(text, Path::new("t.txt"), dir).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].source.as_deref(), Some("cohen"));
        assert_eq!(rows[2].label, "positive");
        assert_eq!(rows[1].path, dir.join("b.jpg"));
        for (text, want) in [
            ("1 a.png normal\n2 a.png\n", "t.txt:2: expected"),
            ("1 a.png normal x y\n", "t.txt:1: expected"),
            (
                "1 ../../etc/passwd normal\n",
                "t.txt:1: file name \"../../etc/passwd\" leaves",
            ),
            ("1 /etc/passwd normal\n", "leaves the image folder"),
            (
                "1 a.png normal\n1 a.png normal\n",
                "t.txt:2: \"a.png\" is listed twice",
            ),
        ] {
            let e = parse_split_text(text, Path::new("t.txt"), dir)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
